"""OTLP trace export against a real Jaeger (all-in-one v1.76.0, built from the Go module
proxy by tests/e2e/jaeger_setup.sh into .tools/bin/): real PySpark sends its own
traceparent (an extra sc:// parameter becomes gRPC metadata) through sparkgate to the real
Spark Connect server; the trace is read back from Jaeger's query API and its span names,
attributes and parentage are checked: client → gateway SERVER span → gateway CLIENT span.
"""
import json
import os
import secrets
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Gateway, free_port, port_accepts, spawn, stop_process_group, tail

REPO = Path(__file__).resolve().parents[2]
SERVICE = "spark.connect.SparkConnectService"


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory):
    setup = subprocess.run([str(REPO / "tests/e2e/jaeger_setup.sh")], capture_output=True, text=True, timeout=1800)
    if setup.returncode != 0:
        pytest.fail(f"building Jaeger failed:\n{setup.stderr[-3000:]}", pytrace=False)
    binary = setup.stdout.strip().splitlines()[-1]
    workdir = tmp_path_factory.mktemp("jaeger")
    log = workdir / "jaeger.log"
    for _ in range(3):
        otlp, query, ports = free_port(), free_port(), [free_port() for _ in range(5)]
        cmd = [binary,
               f"--collector.otlp.http.host-port=127.0.0.1:{otlp}",
               f"--collector.otlp.grpc.host-port=127.0.0.1:{ports[0]}",
               f"--query.http-server.host-port=127.0.0.1:{query}",
               f"--query.grpc-server.host-port=127.0.0.1:{ports[1]}",
               f"--admin.http.host-port=127.0.0.1:{ports[2]}",
               f"--collector.http-server.host-port=127.0.0.1:{ports[3]}",
               f"--collector.grpc-server.host-port=127.0.0.1:{ports[4]}"]
        with open(log, "ab") as out:
            proc = spawn(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                         env={**os.environ, "SPAN_STORAGE_TYPE": "memory"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if port_accepts(otlp) and port_accepts(query):
                break
            time.sleep(0.1)
        if proc.poll() is None and port_accepts(otlp):
            yield {"otlp": f"http://127.0.0.1:{otlp}", "query": f"http://127.0.0.1:{query}"}
            stop_process_group(proc, grace_s=5)
            return
        stop_process_group(proc, grace_s=5)
    pytest.fail(f"Jaeger did not start; log {log}:\n{tail(log)}", pytrace=False)


def _trace(jaeger, trace_id: str, ready, timeout_s: float = 30):
    """Jaeger's view of the trace once `ready(trace)` holds."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{jaeger['query']}/api/traces/{trace_id}", timeout=5) as r:
                body = json.loads(r.read())
            data = body.get("data") or []
            if data and ready(data[0]):
                return data[0]
            last = body
        except Exception as e:  # 404 until the first span arrives
            last = e
        time.sleep(0.2)
    pytest.fail(f"trace {trace_id} did not become complete in Jaeger: {last}", pytrace=False)


def _tags(span) -> dict:
    return {t["key"]: t["value"] for t in span["tags"]}


def _parent(span):
    refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def test_pyspark_trace_in_jaeger(spark_server, jaeger, new_session, tmp_path):
    gw = Gateway(tmp_path / "gateway", spark_server.port,
                 extra_yaml=("tracing:\n"
                             "  otlp:\n"
                             f"    endpoint: {jaeger['otlp']}\n"
                             "    timeout: 5s\n"
                             "  sample_ratio: 0\n"  # only the client's sampled trace is recorded
                             "  service_name: sparkgate-e2e\n"
                             "  flush_interval: 200ms\n")).start()
    try:
        trace_id = secrets.token_hex(16)
        client_span = secrets.token_hex(8)
        spark = new_session(f"{gw.url}/;user_id=alice;traceparent=00-{trace_id}-{client_span}-01")
        assert spark.range(10).selectExpr("sum(id) as s").collect()[0]["s"] == 45
        # Released while the gateway runs (a session left to the fixture would retry
        # ReleaseSession against a stopped gateway for minutes).
        new_session.close()

        def complete(trace):
            names = {(s["operationName"], _tags(s).get("span.kind")) for s in trace["spans"]}
            return {(f"{SERVICE}/ExecutePlan", "server"), (f"{SERVICE}/ExecutePlan", "client")} <= names

        trace = _trace(jaeger, trace_id, complete)
        spans = trace["spans"]
        by_id = {s["spanID"]: s for s in spans}
        services = {p["serviceName"] for p in trace["processes"].values()}
        assert services == {"sparkgate-e2e"}

        servers = [s for s in spans if _tags(s).get("span.kind") == "server"]
        clients = [s for s in spans if _tags(s).get("span.kind") == "client"]
        assert servers and clients
        # Every RPC of the session carried the same traceparent: each SERVER span is a child
        # of the client's span, each CLIENT span a child of a SERVER span.
        for s in servers:
            assert _parent(s) == client_span, s
            assert s["operationName"].startswith(SERVICE + "/")
        for c in clients:
            assert _parent(c) in by_id and _tags(by_id[_parent(c)]).get("span.kind") == "server", c

        execute = [s for s in servers if s["operationName"] == f"{SERVICE}/ExecutePlan"]
        assert execute, sorted(s["operationName"] for s in servers)
        tags = _tags(execute[0])
        assert tags["rpc.system"] == "grpc"
        assert tags["rpc.service"] == SERVICE
        assert tags["rpc.method"] == "ExecutePlan"
        assert tags["rpc.grpc.status_code"] == 0
        assert tags["spark.session_id"] == spark.client._session_id
        assert tags["spark.operation_id"]
        assert tags["sparkgate.cluster"] == "e2e"
        assert tags["sparkgate.backend"].endswith(f"127.0.0.1:{spark_server.port}")
        assert tags["client.address"] == "127.0.0.1"
        assert "error" not in tags
        child = [c for c in clients if _parent(c) == execute[0]["spanID"]]
        assert len(child) == 1
        ctags = _tags(child[0])
        assert child[0]["operationName"] == f"{SERVICE}/ExecutePlan"
        assert ctags["server.address"] == "127.0.0.1"
        assert ctags["server.port"] == spark_server.port
        # The CLIENT span lies within its SERVER span. The gateway ends both at the same
        # nanosecond; Jaeger truncates start and duration to microseconds separately, so an
        # end can come out 1 µs later.
        assert child[0]["startTime"] >= execute[0]["startTime"]
        assert child[0]["startTime"] + child[0]["duration"] <= execute[0]["startTime"] + execute[0]["duration"] + 1

        # The access log's traceparent is the one Spark received: the CLIENT span's (the log
        # is flushed every second).
        deadline = time.monotonic() + 5
        while True:
            lines = [json.loads(l) for l in gw.access_log.read_text().splitlines() if l.strip()]
            rpc_lines = [l for l in lines if l.get("type") == "rpc" and l.get("rpc") == "ExecutePlan"]
            if rpc_lines or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rpc_lines
        assert rpc_lines[0]["traceparent"].split("-")[2] in {c["spanID"] for c in clients}
    finally:
        gw.stop()
