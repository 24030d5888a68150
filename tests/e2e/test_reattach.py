"""Reattachable execution through the gateway.

The server here ends every result stream after 1 s or 1 MiB
(spark.connect.execute.reattachable.senderMaxStreamDuration / senderMaxStreamSize), so
the client must continue each of these queries with ReattachExecute (and acknowledge with
ReleaseExecute). Through the gateway those RPCs must reach the backend that owns the
operation and the result must be complete and identical to the direct one. The gateway
runs at debug level, where it logs each RPC as `rpc=<Method>`; the log proves that
ReattachExecute really went through it."""

from __future__ import annotations

import re

import pandas.testing as pdt
import pytest
from pyspark.sql import functions as F

REATTACH_LINE = re.compile(r"\brpc=ReattachExecute\b")


@pytest.fixture
def rdirect(reattach_server, new_session):
    return new_session(reattach_server.url)


@pytest.fixture
def rgateway(reattach_gateway_proc, new_session):
    return new_session(reattach_gateway_proc.url)


def _reattaches(gw) -> int:
    return len(REATTACH_LINE.findall(gw.log_text()))


def test_reattach_big_result(rdirect, rgateway, reattach_gateway_proc):
    # ~1M rows as Arrow: many times the 1 MiB stream limit.
    def run(spark):
        return spark.range(0, 1_000_000).selectExpr("id", "id * 3 AS x", "uuid() IS NOT NULL AS u",
                                                    "repeat('r', cast(id % 5 AS INT)) AS s").toPandas()

    expected = run(rdirect)
    assert len(expected) == 1_000_000
    before = _reattaches(reattach_gateway_proc)
    got = run(rgateway)
    after = _reattaches(reattach_gateway_proc)
    pdt.assert_frame_equal(got, expected)
    assert after > before, (
        "the result is complete but no ReattachExecute passed the gateway; expected lines "
        f"matching {REATTACH_LINE.pattern!r} in {reattach_gateway_proc.log}")


def test_reattach_slow_stream(rdirect, rgateway, reattach_gateway_proc):
    # The rows arrive over ~3 s, longer than the 1 s stream duration.
    @F.udf("long")
    def slow_square(n):
        import time
        time.sleep(0.75)
        return n * n

    def run(spark):
        # No orderBy: a sort would sample the input and run the slow UDF twice.
        rows = spark.range(0, 8, 1, 8).select("id", slow_square("id").alias("sq")).collect()
        return sorted((r.id, r.sq) for r in rows)

    expected = run(rdirect)
    assert expected == [(i, i * i) for i in range(8)]
    before = _reattaches(reattach_gateway_proc)
    got = run(rgateway)
    after = _reattaches(reattach_gateway_proc)
    assert got == expected
    assert after > before, (
        "the result is complete but no ReattachExecute passed the gateway; expected lines "
        f"matching {REATTACH_LINE.pattern!r} in {reattach_gateway_proc.log}")
