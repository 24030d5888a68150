"""Operating sparkgate with real PySpark and a real Spark Connect server: the admin API
shows the session with its user and backend, an operator can close it (the client's next
call fails with a message that says so, and Spark itself released the session), and a
SIGTERM during a long query on one of two replicas sharing a port lets the query finish
through the other replica with ReattachExecute."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import pytest
from pyspark.sql import functions as F

from conftest import Gateway, SparkServer, stop_process_group


def _metric(gw: Gateway, series: str) -> float:
    status, body = gw.admin("GET", "/metrics")
    assert status == 200, body
    for line in body.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics:\n{body}")


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_session_listed_with_user_and_backend(gateway_proc, spark_server, new_session):
    spark = new_session(f"{gateway_proc.url}/;user_id=obs-alice")
    assert spark.range(10).selectExpr("sum(id) AS s").collect()[0].s == 45
    status, body = gateway_proc.admin("GET", "/v1/sessions?user=obs-alice")
    assert status == 200, body
    listing = json.loads(body)
    assert listing["count"] == 1, body
    s = listing["sessions"][0]
    assert s["session_id"] == spark.session_id
    assert s["user"] == "obs-alice"
    assert s["backend"] == f"127.0.0.1:{spark_server.port}"
    assert s["cluster"] == "e2e"
    assert s["server_side_session_id"], body
    assert s["rpcs"].get("ExecutePlan", 0) >= 1, body
    assert s["bytes_in"] > 0 and s["bytes_out"] > 0, body
    assert s["errors"] == {}, body
    status, one = gateway_proc.admin("GET", f"/v1/sessions/{spark.session_id}")
    assert status == 200 and json.loads(one)["user"] == "obs-alice", one
    assert _metric(gateway_proc, 'sparkgate_rpcs_total{cluster="e2e",code="OK",rpc="ExecutePlan"}') >= 1
    assert _metric(gateway_proc, f'sparkgate_sessions{{backend="127.0.0.1:{spark_server.port}",cluster="e2e"}}') >= 1


def test_operator_close(gateway_proc, spark_server, new_session):
    spark = new_session(f"{gateway_proc.url}/;user_id=obs-bob")
    spark.range(3).collect()
    sid = spark.session_id
    status, body = gateway_proc.admin("DELETE", f"/v1/sessions/{sid}")
    assert status == 200, body
    with pytest.raises(Exception) as failure:
        spark.range(1).collect()
    message = str(failure.value)
    assert "closed by an operator" in message, message
    assert sid in message, message
    assert gateway_proc.admin("GET", f"/v1/sessions/{sid}")[0] == 404

    # sparkgate sent ReleaseSession: Spark itself refuses the session now.
    from pyspark.sql import SparkSession
    direct = SparkSession.builder.remote(f"{spark_server.url}/;user_id=obs-bob;session_id={sid}").create()
    direct.release_session_on_close = False
    try:
        def closed_on_backend() -> bool:
            try:
                direct.range(1).collect()
                return False
            except Exception as e:  # the error names the closed session
                return "SESSION_CLOSED" in str(e)
        _wait(closed_on_backend, 15, f"Spark to report session {sid} as closed")
    finally:
        direct.stop()
    def summary():
        # The gateway may be writing as we read: only lines that ended are whole.
        complete = gateway_proc.access_log.read_text().split("\n")[:-1]
        return [json.loads(line) for line in complete
                if '"session_end"' in line and sid in line]
    _wait(lambda: summary(), 5, "the session summary line (flushed every second)")
    lines = summary()
    assert len(lines) == 1 and lines[0]["reason"] == "closed_by_operator", lines


def test_sigterm_during_long_query_completes_through_the_other_replica(spark_server, tmp_path, new_session):
    """Replica A carries the query's ExecutePlan; SIGTERM drains it with a 2 s timeout,
    after which A closes the connection mid-stream. The client reattaches on a new
    connection, which the kernel hands to replica B (same port, SO_REUSEPORT; A no longer
    listens), and B routes ReattachExecute to the backend that runs the operation."""
    drain = "drain:\n  timeout: 2s\n"
    a = Gateway(tmp_path / "a", spark_server.port, log_level="debug", extra_yaml=drain).start()
    b = None
    spark = None
    try:
        spark = new_session(a.url)
        assert spark.range(3).count() == 3  # the client's connection is now to A
        b = Gateway(tmp_path / "b", spark_server.port, log_level="debug", extra_yaml=drain, port=a.port).start()

        @F.udf("long")
        def slow(n):
            import time as t
            t.sleep(3.0)
            return n * 10

        result = {}

        def run():
            try:
                rows = spark.range(0, 4, 1, 2).select(slow("id").alias("x")).collect()
                result["rows"] = sorted(r.x for r in rows)
            except Exception as e:  # reported below
                result["error"] = e

        executes_before = len(re.findall(r"\brpc=ExecutePlan\b", a.log_text()))
        worker = threading.Thread(target=run)
        worker.start()
        _wait(lambda: len(re.findall(r"\brpc=ExecutePlan\b", a.log_text())) > executes_before, 30,
              "the query's ExecutePlan at replica A")
        time.sleep(1.0)
        a.proc.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        a.proc.wait(timeout=20)
        a_exited_after = time.monotonic() - sigterm_at
        worker.join(timeout=120)
        assert not worker.is_alive(), "the query did not finish"
        assert "error" not in result, f"the query failed: {result.get('error')}"
        assert result["rows"] == [0, 10, 20, 30]
        assert a.proc.returncode == 0, a.log_text()[-3000:]
        assert a_exited_after < 6, f"replica A took {a_exited_after:.1f} s to drain (drain.timeout 2s)"
        assert re.search(r"\brpc=ReattachExecute\b", b.log_text()), (
            "the query completed but replica B saw no ReattachExecute; B's log: " + b.log_text()[-3000:])
    finally:
        if spark is not None:
            # Released through B while it runs; never retried against stopped gateways.
            try:
                spark.stop()
            finally:
                spark.release_session_on_close = False
        if b is not None:
            b.stop()
        a.stop()
