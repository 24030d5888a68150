"""Queries and data transfer: each test runs the same operation straight against the Spark
Connect server and through sparkgate, and the two results must be identical."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from pyspark.sql import functions as F


def test_range_filter_groupby_join(direct, gateway):
    def run(spark):
        left = (spark.range(0, 10_000)
                .where(F.col("id") % 3 != 0)
                .withColumn("k", F.col("id") % 17)
                .groupBy("k")
                .agg(F.count("*").alias("n"), F.sum("id").alias("s"), F.max("id").alias("mx")))
        right = spark.range(0, 17).withColumnRenamed("id", "k").withColumn("name", F.concat(F.lit("k"), F.col("k")))
        rows = left.join(right, "k").orderBy("k").collect()
        return [r.asDict() for r in rows]

    expected = run(direct)
    assert len(expected) == 17
    assert sum(r["n"] for r in expected) == 10_000 - 3334
    assert run(gateway) == expected


def test_sql(direct, gateway):
    query = """
        SELECT id % 5 AS bucket, count(*) AS n, sum(id) AS total, collect_list(id)[0] AS first_id,
               array_join(transform(sequence(1, 3), x -> cast(x * id AS STRING)), ',') AS seq
        FROM range(0, 1000)
        GROUP BY id % 5, array_join(transform(sequence(1, 3), x -> cast(x * id AS STRING)), ',')
        ORDER BY total DESC
        LIMIT 20
    """
    expected = [r.asDict() for r in direct.sql(query).collect()]
    assert len(expected) == 20
    assert [r.asDict() for r in gateway.sql(query).collect()] == expected


def test_temp_view_across_calls(direct, gateway):
    # Each call below is a separate RPC; the view lives in the server-side session, so
    # every call must land on the same backend session.
    def run(spark):
        spark.range(0, 100).selectExpr("id", "id * id AS sq").createOrReplaceTempView("e2e_squares")
        spark.sql("CREATE OR REPLACE TEMP VIEW e2e_big AS SELECT * FROM e2e_squares WHERE sq > 2500")
        assert "e2e_big" in [t.name for t in spark.catalog.listTables()]
        n = spark.sql("SELECT count(*) AS n FROM e2e_big").collect()[0].n
        top = [r.asDict() for r in spark.table("e2e_big").orderBy(F.desc("sq")).limit(3).collect()]
        return n, top

    expected = run(direct)
    assert expected[0] == 49
    assert run(gateway) == expected


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "x": rng.standard_normal(rows),
        "label": [f"row-{i:07d}" for i in range(rows)],
        "flag": (np.arange(rows) % 2 == 0),
    })


@pytest.mark.parametrize("upload", ["inline", "cached_artifacts"])
def test_create_dataframe_from_pandas_100k(direct, gateway, upload):
    # inline: the Arrow data is inside the ExecutePlan message (several MiB, bigger than the
    # gateway's stream window). cached_artifacts: a low threshold makes the client upload
    # the data as chunked artifacts through AddArtifacts and reference it in the plan.
    pdf = _frame(100_000)

    def run(spark):
        if upload == "cached_artifacts":
            spark.conf.set("spark.sql.session.localRelationCacheThreshold", str(256 * 1024))
        df = spark.createDataFrame(pdf)
        agg = df.agg(F.count("*").alias("n"), F.sum("id").alias("s"), F.sum("x").alias("sx"),
                     F.countDistinct("label").alias("labels"), F.sum(F.col("flag").cast("int")).alias("flags"))
        back = df.orderBy("id").toPandas()
        return agg.collect()[0].asDict(), back

    d_agg, d_back = run(direct)
    g_agg, g_back = run(gateway)
    assert d_agg["n"] == 100_000 and d_agg["labels"] == 100_000 and d_agg["flags"] == 50_000
    pdt.assert_frame_equal(d_back, pdf)
    assert g_agg == d_agg
    pdt.assert_frame_equal(g_back, d_back)


def test_to_pandas_2m_rows(direct, gateway):
    def run(spark):
        return (spark.range(0, 2_000_000)
                .selectExpr("id", "id * 2 AS twice", "cast(id AS STRING) AS s", "id % 7 = 0 AS sevens")
                .toPandas())

    expected = run(direct)
    assert len(expected) == 2_000_000
    assert int(expected["id"].sum()) == 2_000_000 * 1_999_999 // 2
    got = run(gateway)
    pdt.assert_frame_equal(got, expected)


def test_python_udf(direct, gateway):
    @F.udf("string")
    def describe(n):
        import math
        return f"{n}:{math.isqrt(n)}:{'even' if n % 2 == 0 else 'odd'}"

    def run(spark):
        rows = spark.range(0, 2000, 1, 4).select("id", describe("id").alias("d")).orderBy("id").collect()
        return [(r.id, r.d) for r in rows]

    expected = run(direct)
    assert expected[9] == (9, "9:3:odd")
    assert run(gateway) == expected
