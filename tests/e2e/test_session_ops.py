"""Session-level RPCs (errors, Config, Interrupt, AddArtifacts, ReleaseSession): each
test does the same thing directly and through sparkgate and compares what came back."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from pyspark.errors import AnalysisException
from pyspark.errors.exceptions.connect import SparkConnectException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def _error_of(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


def test_analysis_exception_keeps_error_class(direct, gateway):
    def run(spark):
        e = _error_of(lambda: spark.range(3).select("no_such_column").collect())
        assert isinstance(e, AnalysisException), repr(e)
        return {
            "type": type(e).__name__,
            "condition": e.getCondition(),
            "sql_state": e.getSqlState(),
            "parameters": e.getMessageParameters(),
        }

    expected = run(direct)
    assert expected["condition"] == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert expected["sql_state"] == "42703"
    assert run(gateway) == expected


def test_sql_error_keeps_error_class(direct, gateway):
    def run(spark):
        e = _error_of(lambda: spark.sql("SELECT * FROM e2e_table_that_does_not_exist").collect())
        return type(e).__name__, e.getCondition(), e.getSqlState(), e.getMessageParameters()

    expected = run(direct)
    assert expected[1] == "TABLE_OR_VIEW_NOT_FOUND"
    assert run(gateway) == expected


def test_conf_set_get(direct, gateway):
    def run(spark):
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        spark.conf.set("spark.e2e.custom.key", "value-\u00e9")
        got = {
            "partitions": spark.conf.get("spark.sql.shuffle.partitions"),
            "custom": spark.conf.get("spark.e2e.custom.key"),
            "missing_default": spark.conf.get("spark.e2e.never.set", "fallback"),
            "modifiable": spark.conf.isModifiable("spark.sql.shuffle.partitions"),
        }
        # The setting must be what SQL in the same session sees.
        got["used"] = spark.sql("SET spark.sql.shuffle.partitions").collect()[0].value
        spark.conf.unset("spark.e2e.custom.key")
        got["after_unset"] = spark.conf.get("spark.e2e.custom.key", None)
        return got

    expected = run(direct)
    assert expected == {"partitions": "7", "custom": "value-\u00e9", "missing_default": "fallback",
                        "modifiable": True, "used": "7", "after_unset": None}
    assert run(gateway) == expected


def test_interrupt_all_cancels_running_query(direct, gateway):
    @F.udf("long")
    def slow(n):
        import time as t
        t.sleep(300)
        return n

    def run(spark):
        outcome = {}

        def query():
            try:
                outcome["rows"] = spark.range(0, 4, 1, 2).select(slow("id")).collect()
            except BaseException as e:  # noqa: BLE001 - the error is what we assert on
                outcome["error"] = e

        worker = threading.Thread(target=query, daemon=True)
        worker.start()
        interrupted = []
        deadline = time.monotonic() + 60
        # The operation is registered shortly after ExecutePlan reaches the server.
        while not interrupted and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.5)
            interrupted = spark.interruptAll()
        worker.join(timeout=120)
        assert not worker.is_alive(), "the interrupted query is still running"
        assert "rows" not in outcome, "the query finished instead of being interrupted"
        error = outcome.get("error")
        assert error is not None
        return interrupted, error

    d_ids, d_error = run(direct)
    g_ids, g_error = run(gateway)
    for ids in (d_ids, g_ids):
        assert len(ids) == 1 and uuid.UUID(ids[0]), ids
    assert d_error.getCondition() == "OPERATION_CANCELED", repr(d_error)
    assert type(g_error) is type(d_error), repr(g_error)
    assert g_error.getCondition() == d_error.getCondition(), repr(g_error)
    assert g_error.getSqlState() == d_error.getSqlState()
    # The session stays usable after the interrupt.
    assert gateway.range(5).count() == 5


def test_add_artifacts_pyfile_used_by_udf(direct, gateway, tmp_path):
    def run(spark, side):
        module = f"e2e_helper_{side}_{uuid.uuid4().hex[:8]}"
        path = Path(tmp_path) / side / f"{module}.py"
        path.parent.mkdir()
        path.write_text("def shout(s):\n    return s.upper() + '!' * len(s)\n")
        spark.addArtifacts(str(path), pyfile=True)

        def use(s):
            import importlib
            return importlib.import_module(module).shout(s)

        shout = F.udf(use, "string")
        rows = spark.createDataFrame([("a",), ("spark",), ("gateway",)], ["w"]).select(shout("w").alias("o")).collect()
        return [r.o for r in rows]

    expected = run(direct, "direct")
    assert expected == ["A!", "SPARK!!!!!", "GATEWAY!!!!!!!"]
    assert run(gateway, "gateway") == expected


def test_stop_releases_session_and_new_session_works(spark_server, gateway_proc):
    def run(url):
        session_id = str(uuid.uuid4())
        with_id = f"{url}/;session_id={session_id}"
        s = SparkSession.builder.remote(with_id).create()
        assert s.range(10).count() == 10
        s.stop()  # sends ReleaseSession; the server tombstones the session id
        assert s.is_stopped

        # The released id is closed on the server: reusing it fails with SESSION_CLOSED.
        # That is only so if ReleaseSession really reached the backend.
        reuse = SparkSession.builder.remote(with_id).create()
        try:
            e = _error_of(lambda: reuse.range(1).collect())
        finally:
            reuse.release_session_on_close = False
            reuse.stop()
        assert isinstance(e, SparkConnectException), repr(e)

        fresh = SparkSession.builder.remote(url).create()
        try:
            assert fresh.range(0, 5).selectExpr("sum(id) AS s").collect()[0].s == 10
        finally:
            fresh.stop()
        return type(e).__name__, e.getCondition()

    expected = run(spark_server.url)
    assert expected[1] == "INVALID_HANDLE.SESSION_CLOSED", expected
    assert run(gateway_proc.url) == expected
