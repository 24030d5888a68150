"""The gateway's view messages (proto/spark_view.proto) must agree with Spark's own
messages, as shipped in PyPI pyspark-client (pyspark.sql.connect.proto.base_pb2): every
view field must exist in the same-named Spark message (nested messages too) with the same
number, the same wire type and the same cardinality. A Spark release that renumbers or
retypes a field the gateway reads fails here, naming the field."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from pyspark.sql.connect.proto import base_pb2

REPO = Path(__file__).resolve().parents[2]
VIEW_PROTO = REPO / "proto" / "spark_view.proto"
VIEW_PACKAGE = "sparkgate.view"

# FieldDescriptorProto.Type → the FieldDescriptor.TYPE_* constant with the same number.
_TYPE_NAMES = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}


def _compile_view_proto(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    protoc = shutil.which("protoc")
    if protoc is None:
        pytest.fail("protoc is not on PATH (Debian protobuf-compiler; deploy/install-deps.sh installs it)",
                    pytrace=False)
    out = tmp_path / "spark_view.desc"
    subprocess.run([protoc, f"--proto_path={VIEW_PROTO.parent}", f"--descriptor_set_out={out}", VIEW_PROTO.name],
                   check=True, capture_output=True, text=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert len(fds.file) == 1
    assert fds.file[0].package == VIEW_PACKAGE
    return fds.file[0]


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5 has is_repeated and deprecates label.
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    return field.label == FieldDescriptor.LABEL_REPEATED


def _type_name(t: int) -> str:
    return _TYPE_NAMES.get(t, str(t))


def _compare(view: descriptor_pb2.DescriptorProto, spark, view_path: str, view_index: dict,
             problems: list, seen: set) -> None:
    """Appends to problems every field of `view` that does not match `spark` (a
    google.protobuf Descriptor), recursing into message-typed fields."""
    key = (view_path, spark.full_name)
    if key in seen:
        return
    seen.add(key)
    for field in view.field:
        where = f"{view_path}.{field.name} = {field.number} (Spark message {spark.full_name})"
        spark_field = spark.fields_by_name.get(field.name)
        if spark_field is None:
            problems.append(f"{where}: Spark has no field named {field.name!r}"
                            f" (its fields: {sorted(spark.fields_by_name)})")
            continue
        if spark_field.number != field.number:
            problems.append(f"{where}: Spark numbers it {spark_field.number}")
        if spark_field.type != field.type:
            problems.append(f"{where}: view type {_type_name(field.type)}, "
                            f"Spark type {_type_name(spark_field.type)}")
        view_repeated = field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        spark_repeated = _is_repeated(spark_field)
        if view_repeated != spark_repeated:
            problems.append(f"{where}: view {'repeated' if view_repeated else 'singular'}, "
                            f"Spark {'repeated' if spark_repeated else 'singular'}")
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE and spark_field.message_type is not None:
            nested_name = field.type_name.lstrip(".")
            nested_view = view_index.get(nested_name)
            if nested_view is None:
                problems.append(f"{where}: view type {field.type_name} not found in {VIEW_PROTO.name}")
                continue
            _compare(nested_view, spark_field.message_type, nested_name.removeprefix(VIEW_PACKAGE + "."),
                     view_index, problems, seen)


def _index(messages, prefix: str, out: dict) -> dict:
    for m in messages:
        name = f"{prefix}.{m.name}"
        out[name] = m
        _index(m.nested_type, name, out)
    return out


def _spark_message(path: str):
    """The Spark Descriptor for a dotted view path such as 'ExecutePlanResponse.ArrowBatch'."""
    parts = path.split(".")
    desc = base_pb2.DESCRIPTOR.message_types_by_name.get(parts[0])
    for p in parts[1:]:
        if desc is None:
            return None
        desc = desc.nested_types_by_name.get(p)
    return desc


def test_view_messages_match_spark(tmp_path):
    view_file = _compile_view_proto(tmp_path)
    view_index = _index(view_file.message_type, VIEW_PACKAGE, {})
    assert view_index, f"no messages in {VIEW_PROTO}"
    problems: list = []
    seen: set = set()
    for full_name, view in sorted(view_index.items()):
        path = full_name.removeprefix(VIEW_PACKAGE + ".")
        spark = _spark_message(path)
        if spark is None:
            problems.append(f"view message {path}: Spark has no message spark.connect.{path}")
            continue
        _compare(view, spark, path, view_index, problems, seen)
    assert not problems, (f"{VIEW_PROTO.relative_to(REPO)} disagrees with pyspark-client's base.proto:\n  "
                          + "\n  ".join(problems))


def test_view_covers_every_rpc_request():
    # Every RPC of the service whose request carries a session has a view request message,
    # so the inspector can route it.
    view_src = VIEW_PROTO.read_text()
    service = base_pb2.DESCRIPTOR.services_by_name["SparkConnectService"]
    missing = [m.input_type.name for m in service.methods
               if f"message {m.input_type.name} {{" not in view_src]
    assert not missing, f"{VIEW_PROTO.name} has no view message for: {missing}"
