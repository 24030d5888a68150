#!/usr/bin/env python3
"""Regenerates the seed corpora in tests/fuzz/corpus/ from real traffic.

Run with the e2e client virtualenv (PyPI pyspark-client: the real Spark Connect protos,
grpcio and the PySpark client itself):

    .venv/client/bin/python tests/fuzz/make_corpus.py

1. A recording gRPC server (a generic handler that keeps every request message and then
   fails the call with INVALID_ARGUMENT) sits behind a recording TCP relay. A real PySpark
   client runs a list of ordinary operations against it: every request body it sends and
   every byte of each HTTP/2 connection (preface, SETTINGS, HPACK headers, DATA, ...) is
   captured.
2. Responses (for the response scanner) are built with the real Spark Connect response
   classes, the way a Spark 4 server fills them.
3. The captures become seeds in each target's input format (see the header comment of
   tests/fuzz/fuzz_<target>.cc: a few control bytes, then the payload).
Each file is named after what it holds; the total stays at a few KiB per target.
"""

import hashlib
import json
import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

os.environ.setdefault("SPARK_HOME", tempfile.mkdtemp())  # pyspark-client looks for one on import

import grpc  # noqa: E402
import pyspark.sql.connect.proto as pb  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = HERE / "corpus"

# all_rpcs() order in gateway/spark/rpc.cc
RPCS = ["ExecutePlan", "AnalyzePlan", "Config", "AddArtifacts", "ArtifactStatus", "Interrupt",
        "ReattachExecute", "ReleaseExecute", "ReleaseSession", "FetchErrorDetails", "CloneSession",
        "GetStatus"]
MAX_SEED_BYTES = 2048  # keep each seed small; the fuzzer grows inputs itself
MAX_SEED_BYTES_OF = {"config": 4096, "http2_server": 4096}  # whole config files, whole frames


# ----------------------------------------------------------------------------------------
# 1. Capture
# ----------------------------------------------------------------------------------------
class Recorder(grpc.GenericRpcHandler):
    def __init__(self):
        self.requests = []  # (method, [message bytes, ...])
        self.lock = threading.Lock()

    def service(self, details):
        method = details.method.rsplit("/", 1)[-1]

        def handle(request_iterator, context):
            messages = list(request_iterator)
            with self.lock:
                self.requests.append((method, messages))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "recorded by make_corpus.py")

        return grpc.stream_stream_rpc_method_handler(handle)


class Relay:
    """TCP relay that records the bytes each client connection sends."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = []  # bytearray per client connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            record = bytearray()
            self.connections.append(record)
            threading.Thread(target=self._pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(src, dst, record):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def capture():
    recorder = Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([recorder])
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    relay = Relay(grpc_port)

    from pyspark.sql.connect.session import SparkSession

    url = f"sc://127.0.0.1:{relay.port}/;user_id=alice;x-sparkgate-cluster=etl"
    spark = SparkSession.builder.remote(url).create()
    # Fail fast: the recorder answers INVALID_ARGUMENT, which PySpark does not retry.
    ops = [
        ("range_collect", lambda: spark.range(10).filter("id % 2 = 0").collect()),
        ("sql", lambda: spark.sql("SELECT 1 AS one, 'x' AS s").collect()),
        ("schema", lambda: spark.range(3).selectExpr("id * 2 AS twice").schema),
        ("local_relation", lambda: spark.createDataFrame([(1, "a"), (2, "b")], ["n", "s"]).collect()),
        ("conf_get", lambda: spark.conf.get("spark.sql.shuffle.partitions")),
        ("conf_set", lambda: spark.conf.set("spark.sql.ansi.enabled", "true")),
        ("interrupt", lambda: spark.interruptAll()),
        ("interrupt_tag", lambda: spark.interruptTag("nightly")),
        ("add_artifact", lambda: add_artifact(spark)),
        ("version", lambda: spark.version),
    ]
    for name, op in ops:
        try:
            op()
        except Exception as e:  # noqa: BLE001 - every call is meant to fail
            print(f"  {name}: {type(e).__name__}", file=sys.stderr)
    try:
        spark.stop()
    except Exception:  # noqa: BLE001
        pass
    # A second connection from grpc-core itself with a bearer token, as an authenticating
    # client sends it (PySpark sends tokens only over TLS), replaying the recorded bodies.
    with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as channel:
        for method, messages in list(recorder.requests)[:4]:
            rpc = "ArtifactStatus" if method == "ArtifactStatuses" else method
            call = channel.stream_stream(f"/spark.connect.SparkConnectService/{rpc}")
            try:
                for _ in call(iter(messages), metadata=[("authorization", "Bearer fuzz-token"),
                                                        ("x-sparkgate-cluster", "etl")], timeout=5):
                    pass
            except grpc.RpcError:
                pass
    time.sleep(0.5)
    server.stop(0)
    relay.sock.close()
    return recorder.requests, [bytes(c) for c in relay.connections if c]


def add_artifact(spark):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "helper.py")
    with open(path, "w") as f:
        f.write("def double(x):\n    return 2 * x\n")
    try:
        spark.addArtifacts(path, pyfile=True)
    finally:
        shutil.rmtree(d)


# ----------------------------------------------------------------------------------------
# 2. Responses
# ----------------------------------------------------------------------------------------
def responses():
    sid, ssid, op = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    out = []
    r = pb.ExecutePlanResponse(session_id=sid, server_side_session_id=ssid, operation_id=op,
                               response_id=str(uuid.uuid4()))
    r.schema.struct.fields.add(name="id").data_type.long.SetInParent()
    out.append(("ExecutePlan", "schema", r))
    r = pb.ExecutePlanResponse(session_id=sid, server_side_session_id=ssid, operation_id=op,
                               response_id=str(uuid.uuid4()))
    r.arrow_batch.row_count = 5
    r.arrow_batch.data = bytes(range(256)) * 2  # stands in for an Arrow IPC stream
    out.append(("ExecutePlan", "arrow_batch", r))
    r = pb.ExecutePlanResponse(session_id=sid, server_side_session_id=ssid, operation_id=op,
                               response_id=str(uuid.uuid4()))
    r.result_complete.SetInParent()
    out.append(("ReattachExecute", "result_complete", r))
    r = pb.AnalyzePlanResponse(session_id=sid, server_side_session_id=ssid)
    r.spark_version.version = "4.2.0"
    out.append(("AnalyzePlan", "spark_version", r))
    r = pb.ConfigResponse(session_id=sid, server_side_session_id=ssid)
    r.pairs.add(key="spark.sql.shuffle.partitions", value="200")
    out.append(("Config", "pairs", r))
    r = pb.AddArtifactsResponse(session_id=sid, server_side_session_id=ssid)
    r.artifacts.add(name="pyfiles/helper.py", is_crc_successful=True)
    out.append(("AddArtifacts", "summary", r))
    out.append(("ArtifactStatus", "statuses", pb.ArtifactStatusesResponse(session_id=sid, server_side_session_id=ssid)))
    out.append(("Interrupt", "ids", pb.InterruptResponse(session_id=sid, server_side_session_id=ssid,
                                                         interrupted_ids=[op])))
    out.append(("ReleaseExecute", "op", pb.ReleaseExecuteResponse(session_id=sid, server_side_session_id=ssid,
                                                                   operation_id=op)))
    out.append(("ReleaseSession", "plain", pb.ReleaseSessionResponse(session_id=sid, server_side_session_id=ssid)))
    r = pb.FetchErrorDetailsResponse(session_id=sid, server_side_session_id=ssid, root_error_idx=0)
    r.errors.add(error_type_hierarchy=["org.apache.spark.SparkException"], message="boom")
    out.append(("FetchErrorDetails", "error", r))
    out.append(("CloneSession", "clone", pb.CloneSessionResponse(
        session_id=sid, server_side_session_id=ssid, new_session_id=str(uuid.uuid4()),
        new_server_side_session_id=str(uuid.uuid4()))))
    out.append(("GetStatus", "plain", pb.GetStatusResponse(session_id=sid, server_side_session_id=ssid)))
    return [(m, n, x.SerializeToString()) for m, n, x in out]


# ----------------------------------------------------------------------------------------
# 3. Seeds
# ----------------------------------------------------------------------------------------
def grpc_frame(msg, compressed=False):
    return struct.pack(">BI", 1 if compressed else 0, len(msg)) + msg


def rpc_index(method):
    return RPCS.index("ArtifactStatus" if method == "ArtifactStatuses" else method)


class Seeds:
    def __init__(self):
        self.files = {}  # target -> {name: bytes}

    def add(self, target, name, data):
        data = bytes(data)
        if len(data) > MAX_SEED_BYTES_OF.get(target, MAX_SEED_BYTES):
            return
        seeds = self.files.setdefault(target, {})
        if data in seeds.values():
            return
        seeds[f"{name}-{hashlib.sha1(data).hexdigest()[:8]}"] = data

    def write(self):
        for target, seeds in self.files.items():
            d = CORPUS / target
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            for name, data in sorted(seeds.items()):
                (d / name).write_bytes(data)
            print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


def jwt_seeds(seeds):
    import base64
    import hmac

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")

    secret = b"fuzz-secret-0123456789abcdef-0123456789"  # the HS256 secret of fuzz_jwt.cc
    claims = [
        {"iss": "https://hs.example", "sub": "alice", "aud": "sparkgate", "exp": 1795604400,
         "nbf": 1795597200, "groups": ["analysts", "etl"], "tenant": "acme"},
        {"iss": "https://hs.example", "sub": "bob", "aud": ["other", "x"], "iat": 1795600000},
        {"iss": "https://rs.example", "email": "carol@example.com", "exp": 1795600000.5},
        {"iss": "https://es.example", "sub": "dave", "groups": "ops"},
    ]
    headers = [{"alg": "HS256", "typ": "JWT"}, {"alg": "RS256", "kid": "k1"}, {"alg": "ES256"},
               {"alg": "none"}, {"alg": "HS256", "crit": ["exp"]}]
    for i, c in enumerate(claims):
        for j, h in enumerate(headers):
            hj, cj = json.dumps(h).encode(), json.dumps(c).encode()
            signing = b64(hj) + b"." + b64(cj)
            sig = b64(hmac.new(secret, signing, "sha256").digest())
            seeds.add("jwt", f"token-{i}-{j}", b"\x00" + signing + b"." + sig)
            seeds.add("jwt", f"signed-{i}-{j}", b"\x01" + hj + b"\x00" + cj)
    jwks = {"keys": [
        {"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64(secret).decode()},
        {"kty": "EC", "crv": "P-256", "kid": "e1",
         "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
        {"kty": "RSA", "kid": "r1", "use": "sig", "e": "AQAB", "n": b64(b"\xc1" + bytes(255)).decode()},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
    ]}
    seeds.add("jwt", "jwks", b"\x02" + json.dumps(jwks).encode())
    seeds.add("jwt", "jwks-oct", b"\x02" + json.dumps({"keys": jwks["keys"][:1]}).encode())
    for k, v in [("b64-short", b"QQ"), ("b64-pad", b"QUJD"), ("b64-bad", b"QR=="), ("b64-url", b"-_-_")]:
        seeds.add("jwt", k, b"\x03" + v)


def frames_prefix(conn, limit):
    """Length of the longest prefix of a client connection (preface, then frames) that ends
    on a frame boundary and is at most `limit` bytes."""
    pos = 24  # the connection preface
    while pos + 9 <= len(conn):
        end = pos + 9 + int.from_bytes(conn[pos:pos + 3], "big")
        if end > limit or end > len(conn):
            break
        pos = end
    return pos


def main():
    print("capturing PySpark traffic ...", file=sys.stderr)
    requests, connections = capture()
    print(f"  {len(requests)} calls, {len(connections)} connections", file=sys.stderr)
    if not requests or not connections:
        sys.exit("make_corpus.py: nothing was captured")
    seeds = Seeds()
    seed_bytes = b"\x2a\x00"  # chunking seed (any value but 0 gives random chunks)

    for method, messages in requests:
        idx = rpc_index(method)
        first = messages[0] if messages else b""
        body = b"".join(grpc_frame(m) for m in messages)
        seeds.add("framer", f"{method}", bytes([6]) + seed_bytes + body)  # limit 128 MiB
        seeds.add("inspector", f"{method}", bytes([idx]) + seed_bytes + b"\x00" + first)
        seeds.add("user_context", f"{method}",
                  b"\x00" + bytes([idx]) + seed_bytes + b"\x03bob" + b"\x00" + first)
        seeds.add("user_context", f"{method}-name",
                  b"\x00" + bytes([idx]) + b"\x00\x00" + b"\x05carol" + b"\x06Carol!" + first)
    # Out-of-order and repeated envelopes, which real clients do not send but the scanner
    # must handle: user_context after the plan, twice, and framing errors.
    ep = pb.ExecutePlanRequest(session_id=str(uuid.uuid4()), client_type="_SPARK_CONNECT_PYTHON",
                               operation_id=str(uuid.uuid4()))
    ep.plan.root.range.end = 10
    uc = pb.UserContext(user_id="alice", user_name="Alice")
    late = ep.SerializeToString() + b"\x12" + bytes([len(uc.SerializeToString())]) + uc.SerializeToString()
    seeds.add("inspector", "ExecutePlan-late-user_context", b"\x00" + seed_bytes + b"\x00" + late)
    seeds.add("user_context", "ExecutePlan-late-user_context", b"\x00\x00" + seed_bytes + b"\x03bob\x00" + late)
    twice = ep.SerializeToString() + b"\x12\x05\x0a\x03eve"
    seeds.add("inspector", "ExecutePlan-twice", b"\x00" + seed_bytes + b"\x00" + twice)
    seeds.add("user_context", "spans-arbitrary", b"\x01\x00" + seed_bytes + b"\x03bob\x00" + late)
    seeds.add("framer", "bad-flag", b"\x06" + seed_bytes + b"\x02\x00\x00\x00\x01x")
    seeds.add("framer", "too-large", b"\x03" + seed_bytes + grpc_frame(b"x" * 200))
    seeds.add("framer", "compressed", b"\x06" + seed_bytes + grpc_frame(b"\x1f\x8b", compressed=True))

    for method, name, payload in responses():
        seeds.add("response_scanner", f"{method}-{name}", bytes([rpc_index(method)]) + seed_bytes + payload)

    for path in sorted((REPO / "config").glob("*.yaml")):
        seeds.add("config", path.stem, path.read_bytes())
    seeds.add("config", "minimal", b"listeners:\n  - address: 127.0.0.1:15002\nclusters:\n  - name: a\n"
                                   b"    backends: [{address: 127.0.0.1:15003}]\nroutes:\n  - cluster: a\n")
    jwt_seeds(seeds)

    # The downstream HTTP/2 target: [flags: 1 byte][chunking seed: 2 bytes][what the client
    # sent], cut after the last whole frame that fits. Flags bit 0 selects the config with
    # authentication, which the connection with the bearer token is meant for.
    for i, conn in enumerate(connections):
        who, flags = ("pyspark", b"\x00") if i == 0 else (f"grpc-token-{i}", b"\x01")
        for limit in (1024, 4000):
            cut = frames_prefix(conn, limit)
            seeds.add("http2_server", f"{who}-{cut}", flags + seed_bytes + conn[:cut])
        seeds.add("http2_server", f"{who}-bytewise", flags + b"\x00\x00" + conn[:frames_prefix(conn, 700)])
    seeds.add("http2_server", "http1", b"\x00" + seed_bytes + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    seeds.write()


if __name__ == "__main__":
    main()
