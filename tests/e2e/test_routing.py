"""Routing across clusters, deny rules and failover, with two real Spark Connect servers.

Server A and server B each carry a distinct `spark.sparkgate.test.name` (`A`, `B`) in
their Spark conf. A session reads it back with `spark.conf.get`, so which server really
holds a session is known from the server itself, not from the gateway. One gateway
(debug log) serves three clusters: `etl` (A), `adhoc` (B) and `both` (A and B,
least_sessions), with fast health checks, and these routes:

    header x-sparkgate-cluster: etl -> etl
    user bob                        -> adhoc
    user mallory                    -> deny "mallory may not use Spark"
    everything else                 -> both

The failover test kills server A and restarts it on the same port, so it runs last and
leaves the module's fixtures with the restarted A.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Dict, Iterator, List, Optional

import grpc
import pytest
from pyspark.errors.exceptions.connect import SparkConnectGrpcException
from pyspark.sql import SparkSession
from pyspark.sql.connect.client.retries import DefaultPolicy

from conftest import Gateway, SparkServer, port_accepts, tail

NAME_KEY = "spark.sparkgate.test.name"
DENY_MESSAGE = "mallory may not use Spark"
HEALTH_CHECK = "{interval: 500ms, timeout: 400ms, unhealthy_threshold: 2, healthy_threshold: 1}"
# Every wait in the failover test ends after this long.
FAILOVER_DEADLINE_S = 30


def _quick_retries() -> DefaultPolicy:
    # PySpark retries UNAVAILABLE 15 times over ~10 minutes by default; here a call that
    # keeps failing gives up after ~0.75 s, so an error reaches the test quickly.
    return DefaultPolicy(max_retries=4, initial_backoff=50, backoff_multiplier=2.0, max_backoff=400,
                         jitter=0, min_jitter_threshold=10_000, recognize_server_retry_delay=False)


# ----------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Dict[str, SparkServer]]:
    """{"A": server A, "B": server B}, started in parallel. The failover test replaces
    "A" with the restarted server; whatever is in the dict at the end is stopped."""
    started = {name: SparkServer(tmp_path_factory.mktemp(f"spark-{name}"), {NAME_KEY: name})
               for name in ("A", "B")}
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(s.start) for s in started.values()]
            errors = []
            for f in futures:
                try:
                    f.result()
                except BaseException as e:  # noqa: BLE001 - pytest.fail raises BaseException
                    errors.append(e)
        if errors:
            raise errors[0]
        yield started
    finally:
        for s in started.values():
            s.stop()


def _routing_yaml(port_a: int, port_b: int) -> str:
    return (
        "clusters:\n"
        "  - name: etl\n"
        f"    backends: [{{address: 127.0.0.1:{port_a}}}]\n"
        f"    health_check: {HEALTH_CHECK}\n"
        "  - name: adhoc\n"
        f"    backends: [{{address: 127.0.0.1:{port_b}}}]\n"
        f"    health_check: {HEALTH_CHECK}\n"
        "  - name: both\n"
        f"    backends: [{{address: 127.0.0.1:{port_a}}}, {{address: 127.0.0.1:{port_b}}}]\n"
        f"    health_check: {HEALTH_CHECK}\n"
        "routes:\n"
        "  - match: {headers: {x-sparkgate-cluster: etl}}\n"
        "    cluster: etl\n"
        "  - match: {users: [bob]}\n"
        "    cluster: adhoc\n"
        "  - match: {users: [mallory]}\n"
        f"    deny: \"{DENY_MESSAGE}\"\n"
        "  - cluster: both\n")


@pytest.fixture(scope="module")
def routing_gateway_proc(servers, tmp_path_factory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway-routing"), log_level="debug",
                 routing=_routing_yaml(servers["A"].port, servers["B"].port))
    try:
        yield gw.start()
    finally:
        gw.stop()


class Sessions:
    """Distinct SparkSessions through the routing gateway, each with quick retries;
    stopped at the end of the test (without ReleaseSession when it is known to fail)."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.sessions: List[SparkSession] = []

    def __call__(self, user: str, **params: str) -> SparkSession:
        url = f"{self.gw.url}/;user_id={user}" + "".join(f";{k}={v}" for k, v in params.items())
        s = SparkSession.builder.remote(url).create()
        s.client.set_retry_policies([_quick_retries()])
        self.sessions.append(s)
        return s

    def close(self) -> None:
        for s in self.sessions:
            try:
                s.stop()
            except Exception as e:  # noqa: BLE001 - a session on a dead backend cannot be released
                print(f"stopping session failed: {e}")


@pytest.fixture
def session(routing_gateway_proc, servers) -> Iterator[Sessions]:
    factory = Sessions(routing_gateway_proc)
    yield factory
    factory.close()
    dead = [f"server {name} exited with {s.proc.returncode}; log {s.log}:\n{tail(s.log)}"
            for name, s in servers.items()
            if s.proc is not None and s.proc.poll() is not None and not getattr(s, "killed_by_test", False)]
    if dead:
        pytest.fail("\n".join(dead), pytrace=False)


# ----------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------

def server_of(spark: SparkSession) -> str:
    """The name of the Spark Connect server that holds this session, read from its conf."""
    return spark.conf.get(NAME_KEY)


def error_of(fn) -> SparkConnectGrpcException:
    with pytest.raises(SparkConnectGrpcException) as info:
        fn()
    return info.value


def grpc_message(e: SparkConnectGrpcException) -> str:
    """The grpc-message of an error (PySpark wraps a status without details in the repr
    of the whole RPC error)."""
    m = re.search(r'details = "(.*)"', str(e))
    return m.group(1) if m else str(e)


def describe(e: SparkConnectGrpcException) -> str:
    return f"{e.getGrpcStatusCode().name}: {grpc_message(e)}"


def make_view(spark: SparkSession, name: str, rows: int) -> None:
    spark.range(0, rows).createOrReplaceTempView(name)


def view_count(spark: SparkSession, name: str) -> int:
    return spark.sql(f"SELECT count(*) AS n FROM {name}").collect()[0].n


# ----------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------

def test_header_and_user_rules_pick_the_cluster(session):
    # alice matches no user rule: without the header she would go to `both`.
    alice = session("alice", **{"x-sparkgate-cluster": "etl"})
    assert server_of(alice) == "A"
    bob = session("bob")
    assert server_of(bob) == "B"
    # Routes are tried in order: the header rule comes before bob's user rule.
    bob_etl = session("bob", **{"x-sparkgate-cluster": "etl"})
    assert server_of(bob_etl) == "A"
    # A header value that the rule does not name does not match it.
    bob_other = session("bob", **{"x-sparkgate-cluster": "adhoc"})
    assert server_of(bob_other) == "B"


@pytest.mark.parametrize("user, params, server, rows", [
    ("alice", {"x-sparkgate-cluster": "etl"}, "A", 17),
    ("bob", {}, "B", 23),
])
def test_temp_view_stays_visible_across_calls(session, user, params, server, rows):
    spark = session(user, **params)
    assert server_of(spark) == server
    # A view of local rows: reading it needs no Spark job, so 50 calls stay cheap, and
    # every call must still find the view in this session on this server.
    spark.createDataFrame([(i, f"{server}-{i}") for i in range(rows)], "id INT, tag STRING") \
        .createOrReplaceTempView("routing_v")
    expected = [(i, f"{server}-{i}") for i in range(0, rows, 2)]
    for i in range(50):
        got = spark.sql("SELECT id, tag FROM routing_v WHERE id % 2 = 0").collect()
        assert sorted((r.id, r.tag) for r in got) == expected, f"call {i}"
    assert server_of(spark) == server


def test_deny_rule_refuses_with_permission_denied(session):
    mallory = session("mallory")
    e = error_of(lambda: mallory.range(3).collect())
    assert e.getGrpcStatusCode() == grpc.StatusCode.PERMISSION_DENIED, describe(e)
    assert DENY_MESSAGE in str(e), describe(e)
    # Every RPC is refused, not only ExecutePlan.
    e = error_of(lambda: mallory.conf.get(NAME_KEY))
    assert e.getGrpcStatusCode() == grpc.StatusCode.PERMISSION_DENIED, describe(e)
    assert DENY_MESSAGE in str(e), describe(e)


def _new_session_on(session: Sessions, want: str, deadline: float, notes: List[str]) -> SparkSession:
    """Opens new carol sessions (cluster `both`) until one is held by server `want`;
    the others stay open. Errors are noted and the attempt repeated."""
    while True:
        s = session("carol")
        try:
            if server_of(s) == want:
                return s
        except SparkConnectGrpcException as e:
            notes.append(describe(e))
            s.release_session_on_close = False
        if time.monotonic() > deadline:
            pytest.fail(f"no new session landed on server {want} within the deadline; errors seen: "
                        f"{notes[-5:]}", pytrace=False)
        time.sleep(0.1)


def _ejection_delay(gw: Gateway, backend: str, since: float) -> Optional[float]:
    """Seconds from `since` (wall clock) to the gateway's first log line after it that takes
    `backend` of cluster `both` out of service; None if there is none. For the report only:
    the log's timestamps are local wall-clock time with millisecond resolution."""
    pattern = re.compile(r"^(\S+) warning backend " + re.escape(backend) +
                         r" of cluster both (?:ejected|is unhealthy)", re.M)
    for m in pattern.finditer(gw.log_text()):
        try:
            at = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        except ValueError:
            return None
        if at >= since - 0.01:
            return at - since
    return None


def test_failover_between_backends(session, servers, routing_gateway_proc, tmp_path_factory, capsys):
    a = servers["A"]
    port_a = a.port
    backend_a = f"127.0.0.1:{port_a}"
    notes: List[str] = []

    # One carol session on each server, each with a temp view.
    deadline = time.monotonic() + FAILOVER_DEADLINE_S
    on_a = _new_session_on(session, "A", deadline, notes)
    on_b = _new_session_on(session, "B", deadline, notes)
    assert not notes, notes
    make_view(on_a, "fo_v", 11)
    make_view(on_b, "fo_v", 13)
    assert view_count(on_a, "fo_v") == 11
    assert view_count(on_b, "fo_v") == 13

    # Server A dies.
    a.killed_by_test = True
    os.killpg(a.proc.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    t_kill = time.monotonic()
    wall_kill = time.time()

    # New sessions go to B and work.
    first_b = _new_session_on(session, "B", t_kill + FAILOVER_DEADLINE_S, notes)
    t_first_b = time.monotonic()
    assert first_b.range(0, 4).selectExpr("sum(id) AS s").collect()[0].s == 6
    kill_errors = list(notes)

    # The session on A gets a clear error once the gateway has ejected A, not a new session.
    last: Optional[SparkConnectGrpcException] = None
    deadline = t_kill + FAILOVER_DEADLINE_S
    while True:
        last = error_of(lambda: server_of(on_a))
        assert last.getGrpcStatusCode() == grpc.StatusCode.UNAVAILABLE, describe(last)
        if "is unhealthy" in str(last):
            break
        assert time.monotonic() < deadline, f"A was not reported unhealthy; last error: {describe(last)}"
        time.sleep(0.2)
    t_unhealthy = time.monotonic()
    assert f"backend {backend_a}" in str(last), describe(last)

    # With A ejected, every new session goes to B. A holds on_a and the sessions that
    # failed above; B holds on_b and first_b. Before this loop ends B holds more, so
    # least_sessions would pick A if A were still a candidate.
    for _ in range(len(kill_errors) + 3):
        s = session("carol")
        assert server_of(s) == "B"
    # The session on B keeps working.
    assert view_count(on_b, "fo_v") == 13

    # Server A comes back on the same port. It is started in the background so that new
    # sessions are tried as soon as it listens, not only once start() has run its own
    # readiness query.
    t_restart = time.monotonic()
    restarted = SparkServer(tmp_path_factory.mktemp("spark-A-restarted"),
                            {NAME_KEY: "A", "spark.connect.grpc.binding.port": str(port_a)})
    servers["A"] = restarted
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(restarted.start)
        while not port_accepts(port_a):
            if starting.done():
                starting.result()  # raises if the start failed
                break
            time.sleep(0.05)
        t_listening = time.monotonic()
        notes.clear()
        try:
            back_on_a = _new_session_on(session, "A", t_listening + FAILOVER_DEADLINE_S, notes)
            t_first_a = time.monotonic()
        finally:
            starting.result()
    assert restarted.port == port_a, f"the restarted server took port {restarted.port}, not {port_a}"
    make_view(back_on_a, "fo_v", 5)
    assert view_count(back_on_a, "fo_v") == 5

    # The old session on A is gone with the old process: NOT_FOUND, not a silent new session.
    for _ in range(2):
        e = error_of(lambda: server_of(on_a))
        assert e.getGrpcStatusCode() == grpc.StatusCode.NOT_FOUND, describe(e)
        assert "was lost" in str(e), describe(e)
    # The session on B has worked throughout.
    assert view_count(on_b, "fo_v") == 13
    assert server_of(on_b) == "B"

    ejected = _ejection_delay(routing_gateway_proc, backend_a, wall_kill)
    with capsys.disabled():
        print(f"\n[failover] kill A -> first new session working on B: {t_first_b - t_kill:.2f}s "
              f"(errors on the way: {len(kill_errors)})"
              f"\n[failover] kill A -> gateway log ejects A from cluster both: "
              f"{'n/a' if ejected is None else f'{ejected:.2f}s'}; old A session answered 'is unhealthy' "
              f"by {t_unhealthy - t_kill:.2f}s (polled after the step above)"
              f"\n[failover] restart A -> first new session on A: {t_first_a - t_restart:.2f}s "
              f"(A listening after {t_listening - t_restart:.2f}s, then {t_first_a - t_listening:.2f}s; "
              f"errors on the way: {len(notes)})")
        for n in kill_errors + notes:
            print(f"[failover]   error seen: {n}")
