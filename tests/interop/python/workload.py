"""The interoperability workload for PySpark clients (pyspark-client 4.x and
pyspark[connect] 3.5), run once straight against a Spark Connect server and once through
sparkgate by tests/interop/matrix.py.

    python workload.py --url sc://127.0.0.1:P/;user_id=interop [--tls-url URL --bad-tls-url URL]
                       --workdir DIR

It prints one line per check and nothing else on stdout that starts with these words:

    SESSION <check> <session id>          the Spark session a check used
    RESULT <check> pass <detail>          the check did what it should
    RESULT <check> error <signature>      a clean error from Spark or the gateway:
                                          "<grpc code> <error class>: <message>"
    RESULT <check> fail <detail>          a wrong result, or an unexpected failure
    RESULT <check> na <reason>            this client has no API for the check

The orchestrator compares the direct and the gateway run of each check; see matrix.py.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path

import pyspark

# pyspark 3.5 bundles the classic and the Connect API; its functions (F.col, F.udf) take the
# Connect path only when this is set, as `SparkSession.builder.remote()` does.
os.environ.setdefault("SPARK_CONNECT_MODE_ENABLED", "1")

from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.connect.session import SparkSession  # noqa: E402

CHECKS = ["range_filter_agg_join", "sql", "temp_view", "large_result", "error_class", "config",
          "interrupt", "reattach", "artifacts", "cached_local_relation", "clone_session", "release_session", "tls_token",
          "tls_wrong_token"]


def emit(*words: object) -> None:
    print(" ".join(str(w).replace("\n", " ") for w in words), flush=True)


def grpc_code(e: BaseException) -> str:
    get = getattr(e, "getGrpcStatusCode", None)
    if get is not None:
        try:
            code = get()
            if code is not None:
                return getattr(code, "name", str(code))
        except Exception:  # noqa: BLE001 - older clients
            pass
    m = re.search(r"StatusCode\.([A-Z_]+)", str(e)) or re.search(r"status = StatusCode\.([A-Z_]+)", repr(e))
    if m:
        return m.group(1)
    code = getattr(e, "code", None)
    if callable(code):
        try:
            return code().name
        except Exception:  # noqa: BLE001
            pass
    # pyspark 3.5 converts server errors into exceptions without the grpc code; Spark sends
    # those with INTERNAL (or the status its error maps to).
    return "-"


def error_class(e: BaseException) -> str:
    for name in ("getCondition", "getErrorClass"):
        get = getattr(e, name, None)
        if get is not None:
            try:
                v = get()
                if v:
                    return str(v)
            except Exception:  # noqa: BLE001
                pass
    m = re.search(r"\[([A-Z][A-Z0-9_]+(?:\.[A-Z0-9_]+)*)\]", str(e))
    return m.group(1) if m else "-"


def short(msg: str, n: int = 240) -> str:
    msg = " ".join(msg.split())
    return msg if len(msg) <= n else msg[:n] + "…"


def signature(e: BaseException) -> str:
    return f"{grpc_code(e)} {error_class(e)}: {type(e).__name__}: {short(str(e))}"


def is_clean(e: BaseException) -> bool:
    """A gRPC status or a Spark error, as opposed to a client-side crash."""
    from pyspark.errors.exceptions.base import PySparkException
    try:
        import grpc
        if isinstance(e, grpc.RpcError):
            return True
    except ImportError:
        pass
    return isinstance(e, PySparkException)


class Workload:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(args.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sessions = []

    # -- sessions -------------------------------------------------------------------------
    def session(self, url: str) -> SparkSession:
        s = SparkSession.builder.remote(url).create()
        self.sessions.append(s)
        return s

    @staticmethod
    def session_id(s: SparkSession) -> str:
        return s.client._session_id

    def close(self):
        for s in self.sessions:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass

    # -- the checks ----------------------------------------------------------------------
    def range_filter_agg_join(self, spark):
        a = spark.range(0, 1000).withColumn("k", F.col("id") % 10)
        b = spark.range(0, 10).withColumnRenamed("id", "k").withColumn(
            "name", F.concat(F.lit("k"), F.col("k").cast("string")))
        rows = (a.filter(F.col("id") % 3 == 0).groupBy("k")
                .agg(F.count("*").alias("n"), F.sum("id").alias("s"))
                .join(b, "k").orderBy("k").collect())
        got = [(r.k, r.n, r.s, r.name) for r in rows]
        want = []
        for k in range(10):
            ids = [i for i in range(1000) if i % 3 == 0 and i % 10 == k]
            want.append((k, len(ids), sum(ids), f"k{k}"))
        return self.compare(got, want, "10 groups joined")

    def sql(self, spark):
        rows = spark.sql("SELECT id, id * id AS sq FROM range(10) WHERE id > 6 ORDER BY id").collect()
        return self.compare([(r.id, r.sq) for r in rows], [(7, 49), (8, 64), (9, 81)], "3 rows")

    def temp_view(self, spark):
        spark.range(0, 25).createOrReplaceTempView("interop_view")
        n = spark.sql("SELECT count(*) AS n, sum(id) AS s FROM interop_view").collect()[0]
        return self.compare((n.n, n.s), (25, 300), "view used by a later call")

    def large_result(self, spark):
        n = 600_000
        pdf = spark.range(0, n).selectExpr("id", "id * 2 AS x").toPandas()
        return self.compare((len(pdf), int(pdf["x"].sum())), (n, n * (n - 1)), f"{n} rows")

    def error_class(self, spark):
        try:
            spark.sql("SELECT * FROM interop_no_such_table").collect()
        except Exception as e:  # noqa: BLE001
            cls = error_class(e)
            if cls == "TABLE_OR_VIEW_NOT_FOUND":
                return "pass", f"{type(e).__name__} {cls}"
            return "fail", f"wrong error: {signature(e)}"
        return "fail", "no error for a missing table"

    def config(self, spark):
        spark.conf.set("spark.sql.shuffle.partitions", "7")
        got = spark.conf.get("spark.sql.shuffle.partitions")
        dflt = spark.conf.get("spark.interop.unset.key", "fallback")
        return self.compare((got, dflt), ("7", "fallback"), "set/get/default")

    def interrupt(self, spark):
        outcome = {}

        def run():
            try:
                spark.range(0, 10 ** 12, 1, 2).selectExpr("sum(id % 7)").collect()
                outcome["result"] = "finished"
            except Exception as e:  # noqa: BLE001
                outcome["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        interrupted = []
        deadline = time.monotonic() + 60
        while not interrupted and time.monotonic() < deadline and t.is_alive():
            time.sleep(1)
            interrupted = spark.interruptAll()
        t.join(60)
        if t.is_alive():
            return "fail", "the query still runs 60 s after interruptAll"
        if not interrupted:
            return "fail", f"interruptAll found no operation to interrupt ({outcome})"
        e = outcome.get("error")
        if e is None:
            return "fail", "the interrupted query finished"
        if "OPERATION_CANCELED" in str(e) or "cancel" in str(e).lower():
            return "pass", f"{len(interrupted)} operation(s) interrupted; query failed with {error_class(e)}"
        return "fail", f"the interrupted query failed with {signature(e)}"

    def reattach(self, url):
        # A fresh session, so that the orchestrator can count this session's ReattachExecute
        # calls in the gateway log. The servers end every reattachable result stream after
        # 1 MiB (senderMaxStreamSize): ~20 MB of rows needs many reattaches.
        spark = self.session(url)
        emit("SESSION", "reattach", self.session_id(spark))
        n = 1_000_000
        pdf = spark.range(0, n).selectExpr("id", "repeat('r', 8) AS s").toPandas()
        return self.compare((len(pdf), int(pdf["id"].sum()), int(pdf["s"].str.len().sum())),
                            (n, n * (n - 1) // 2, 8 * n), f"{n} rows")

    def artifacts(self, spark):
        mod = self.workdir / "interop_artifact_mod.py"
        mod.write_text("def plus_forty(x):\n    return x + 40\n")
        spark.addArtifacts(str(mod), pyfile=True)

        @F.udf("long")
        def use_module(x):
            import interop_artifact_mod
            return interop_artifact_mod.plus_forty(x)

        rows = spark.range(0, 3).select(use_module("id").alias("v")).collect()
        return self.compare(sorted(r.v for r in rows), [40, 41, 42], "pyfile used by a UDF")

    def cached_local_relation(self, spark):
        # Local data above spark.sql.session.localRelationCacheThreshold is not inlined in the
        # plan: the client asks ArtifactStatus whether the server has it, uploads it with
        # AddArtifacts (cache/<sha256>) and refers to it by hash. The orchestrator checks that
        # ArtifactStatus passed the gateway.
        import pandas as pd
        spark.conf.set("spark.sql.session.localRelationCacheThreshold", "1024")
        n = 5000
        df = spark.createDataFrame(pd.DataFrame({"a": range(n), "b": [f"v{i}" for i in range(n)]}))
        row = df.selectExpr("count(*) AS n", "sum(a) AS s").collect()[0]
        return self.compare((row.n, row.s), (n, n * (n - 1) // 2), f"{n} local rows sent as a cached artifact")

    def clone_session(self, spark):
        if not hasattr(spark, "cloneSession"):
            return "na", f"pyspark {pyspark.__version__} has no cloneSession (CloneSession RPC, Spark 4.1)"
        spark.sql("SELECT 1").collect()
        spark.range(0, 4).createOrReplaceTempView("interop_clone_view")
        clone = spark.cloneSession()
        self.sessions.append(clone)
        n = clone.sql("SELECT count(*) AS n FROM interop_clone_view").collect()[0].n
        return self.compare((n, self.session_id(clone) != self.session_id(spark)), (4, True),
                            "the clone sees the temp view")

    def release_session(self, url):
        from pyspark.sql.connect.client import SparkConnectClient
        if not hasattr(SparkConnectClient, "release_session"):
            return "na", f"pyspark {pyspark.__version__} never sends ReleaseSession (an RPC of Spark 4.0)"
        spark = self.session(url)
        sid = self.session_id(spark)
        emit("SESSION", "release_session", sid)
        spark.range(0, 3).collect()
        spark.client.release_session()  # raises if the server has no ReleaseSession
        spark.release_session_on_close = False
        spark.stop()
        # Reusing the released session id must fail with SESSION_CLOSED.
        again = self.session(f"{url};session_id={sid}")
        try:
            again.range(0, 3).collect()
        except Exception as e:  # noqa: BLE001
            if "SESSION_CLOSED" in str(e):
                return "pass", "ReleaseSession; the released id is refused with INVALID_HANDLE.SESSION_CLOSED"
            return "fail", f"the released session id was refused with {signature(e)}"
        finally:
            again.release_session_on_close = False
        return "fail", "the released session id still works"

    def tls_token(self, url):
        spark = self.session(url)
        n = spark.range(0, 10).count()
        return self.compare(n, 10, "TLS with a bearer token")

    def tls_wrong_token(self, url):
        spark = self.session(url)
        try:
            spark.range(0, 10).count()
        except Exception as e:  # noqa: BLE001
            if grpc_code(e) == "UNAUTHENTICATED" or "UNAUTHENTICATED" in str(e):
                return "pass", f"refused: UNAUTHENTICATED: {short(str(e), 160)}"
            return "fail", f"refused, but not with UNAUTHENTICATED: {signature(e)}"
        finally:
            spark.release_session_on_close = False
        return "fail", "a wrong token was accepted"

    @staticmethod
    def compare(got, want, what):
        if got == want:
            return "pass", what
        return "fail", f"got {short(repr(got))}, want {short(repr(want))}"

    # -- driver -------------------------------------------------------------------------
    def run(self):
        a = self.args
        main = self.session(a.url)
        emit("SESSION", "main", self.session_id(main))
        for check in CHECKS:
            if check in ("tls_token", "tls_wrong_token") and not a.tls_url:
                emit("RESULT", check, "na", "the server has no TLS listener (checked through the gateway)")
                continue
            try:
                if check == "reattach" or check == "release_session":
                    status, detail = getattr(self, check)(a.url)
                elif check == "tls_token":
                    status, detail = self.tls_token(a.tls_url)
                elif check == "tls_wrong_token":
                    status, detail = self.tls_wrong_token(a.bad_tls_url)
                else:
                    status, detail = getattr(self, check)(main)
            except Exception as e:  # noqa: BLE001
                if is_clean(e):
                    status, detail = "error", signature(e)
                else:
                    status, detail = "fail", f"{type(e).__name__}: {short(str(e))} | {short(traceback.format_exc(), 600)}"
            emit("RESULT", check, status, detail)
        self.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--tls-url")
    p.add_argument("--bad-tls-url")
    p.add_argument("--workdir", required=True)
    args = p.parse_args()
    emit("CLIENT", f"pyspark {pyspark.__version__}")
    Workload(args).run()
    # Every result is out. Leave without the interpreter's shutdown: there, grpc's
    # Channel.close() from SparkSession.__del__ can wait forever (seen with pyspark-client
    # 4.2.0 / grpcio 1.85.3 after interruptAll).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
