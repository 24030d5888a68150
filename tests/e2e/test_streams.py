"""Stream-level behaviour through the gateway: many sessions at once on shared
connections, a request bigger than every flow-control window, and a client that walks
away from a result stream half way."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pandas.testing as pdt
from pyspark.sql import functions as F


def _workload(spark, seed: int):
    df = spark.range(0, 50_000 + seed * 1000).withColumn("k", (F.col("id") * (seed + 1)) % 13)
    agg = [r.asDict() for r in df.groupBy("k").agg(F.sum("id").alias("s"), F.count("*").alias("n"))
           .orderBy("k").collect()]
    spark.createDataFrame([(seed, f"s{seed}")], ["seed", "name"]).createOrReplaceTempView("mine")
    mine = spark.sql("SELECT seed, name FROM mine").collect()[0].asDict()
    arrow = spark.range(0, 200_000).selectExpr(f"id * {seed} AS v").toPandas()
    return agg, mine, int(arrow["v"].sum())


def test_concurrent_sessions(spark_server, gateway_proc, new_session):
    # Eight sessions run at once through one gateway; each must see its own temp view and
    # exactly the results the same work gives directly.
    seeds = list(range(8))
    direct_results = {s: _workload(new_session(spark_server.url), s) for s in seeds[:2]}
    results, errors = {}, {}

    def worker(seed):
        try:
            results[seed] = _workload(new_session(gateway_proc.url), seed)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors[seed] = e

    threads = [threading.Thread(target=worker, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not [t for t in threads if t.is_alive()], "some sessions did not finish"
    assert not errors, errors
    for seed in seeds:
        agg, mine, total = results[seed]
        assert mine == {"seed": seed, "name": f"s{seed}"}
        assert total == seed * (200_000 * 199_999 // 2)
        assert sum(r["n"] for r in agg) == 50_000 + seed * 1000
        if seed in direct_results:
            assert results[seed] == direct_results[seed]


def test_request_larger_than_flow_control_windows(direct, gateway):
    # ~25 MB of Arrow data inline in one ExecutePlan request (below the client's 64 MiB
    # local-relation cache threshold): larger than the gateway's per-stream and
    # per-connection windows, so it only passes if flow control is relayed end to end.
    rows = 400_000
    pdf = pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "payload": [f"{i:08d}-" + "x" * 48 for i in range(rows)],
    })

    def run(spark):
        df = spark.createDataFrame(pdf)
        return df.agg(F.count("*").alias("n"), F.sum("id").alias("s"),
                      F.sum(F.length("payload")).alias("chars")).collect()[0].asDict()

    expected = run(direct)
    assert expected == {"n": rows, "s": rows * (rows - 1) // 2, "chars": rows * 57}
    assert run(gateway) == expected


def test_abandoned_result_stream(direct, gateway):
    # The client reads a few rows of a large result and drops the iterator: the client
    # cancels the stream (and releases the operation). The session must stay healthy.
    def run(spark):
        # ~200 MB in 20 partitions of ~10 MB: far more than is ever buffered in flight.
        it = spark.range(0, 2_000_000, 1, 20).selectExpr("id", "repeat('y', 100) AS pad").toLocalIterator()
        first = [next(it).id for _ in range(5)]
        it.close()
        del it
        after = spark.range(0, 1000).selectExpr("sum(id) AS s").collect()[0].s
        view = spark.range(0, 3).toPandas()
        return first, after, view

    d_first, d_after, d_view = run(direct)
    g_first, g_after, g_view = run(gateway)
    assert d_first == [0, 1, 2, 3, 4] and d_after == 499_500
    assert (g_first, g_after) == (d_first, d_after)
    pdt.assert_frame_equal(g_view, d_view)
