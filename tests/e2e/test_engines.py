"""Engines on demand (docs/engines.md): real PySpark through sparkgate to Spark Connect
servers that the gateway starts itself (launcher: local, share: user).

One gateway for the module, max_engines 2, a short idle_timeout; the cases run in file
order and share engines where they can (each engine start costs a JVM): alice's engine is
started by concurrent first sessions and reused, bob's is the second, carol hits
max_engines, a direct connection to an engine without its token is refused, alice's
engine is killed and replaced, bob's stops when idle. A second gateway runs the tested
command launcher (deploy/engines/local-launcher.sh) with share: cluster."""

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import REPO, SERVER_VENV, Gateway

IDLE_TIMEOUT_S = 6
DRAIN = "drain:\n  timeout: 2s\n"  # the gateway's stop (and its engines') stays short
START_TIMEOUT_S = 150

_site = sorted((SERVER_VENV / "lib").glob("python*/site-packages/pyspark"))
SPARK_HOME = _site[0] if _site else None

ENGINE_CONF = ('{spark.driver.memory: 512m, spark.sql.shuffle.partitions: "2", '
               'spark.ui.enabled: "false"}')

_BOB: List = []  # bob's session, stopped by the idle case
START_TIMES: Dict[str, float] = {}  # case -> seconds from the first RPC to the first result


def routing(engines_yaml: str) -> str:
    return ("clusters:\n"
            "  - name: eng\n"
            "    engines:\n"
            f"{engines_yaml}"
            "routes:\n"
            "  - cluster: eng\n")


@pytest.fixture(scope="module")
def eng_gw(tmp_path_factory):
    if SPARK_HOME is None:
        pytest.fail(f"no pyspark under {SERVER_VENV}; run deploy/install-deps.sh", pytrace=False)
    gw = Gateway(tmp_path_factory.mktemp("gateway-engines"), routing=routing(
        "      share: user\n"
        "      launcher: local\n"
        "      local:\n"
        f"        spark_home: {json.dumps(str(SPARK_HOME))}\n"
        "        master: local[1]\n"
        f"        conf: {ENGINE_CONF}\n"
        "      max_engines: 2\n"
        f"      idle_timeout: {IDLE_TIMEOUT_S}s\n"
        f"      start_timeout: {START_TIMEOUT_S}s\n"
        "      stop_grace: 5s\n"), extra_yaml=DRAIN)
    try:
        yield gw.start()
    finally:
        gw.stop()
        # The gateway takes its engines with it.
        time.sleep(0.5)
        assert _engine_pids_alive(gw) == [], "engines outlived the gateway"


_ALL_PIDS: List[int] = []


def _engine_pids_alive(gw) -> List[int]:
    alive = []
    for pid in _ALL_PIDS:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def engines(gw) -> List[dict]:
    code, body = gw.admin("GET", "/v1/engines")
    assert code == 200, body
    out = json.loads(body)["engines"]
    for e in out:
        if e["pid"] and e["pid"] not in _ALL_PIDS:
            _ALL_PIDS.append(e["pid"])
    return out


def engine_of(gw, key: str) -> dict:
    found = [e for e in engines(gw) if e["key"] == key]
    assert len(found) == 1, engines(gw)
    return found[0]


def access_events(gw, event: str, key: str) -> List[dict]:
    out = []
    for line in gw.access_log.read_text(errors="replace").splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("type") == event and o.get("key") == key:
            out.append(o)
    return out


def wait_events(gw, event: str, key: str, n: int = 1, timeout_s: float = 5) -> List[dict]:
    """The access log's `event` lines of `key`, once there are n (it is flushed every second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = access_events(gw, event, key)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def session(new_session, gw, user: str):
    return new_session(f"{gw.url}/;user_id={user}")


def timed_first_result(s) -> float:
    t0 = time.monotonic()
    assert [r.id for r in s.range(3).collect()] == [0, 1, 2]
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def held():
    """Sessions kept open across cases, so that their engines stay (not idle)."""
    from conftest import SessionFactory
    f = SessionFactory()
    yield f
    f.close()


def test_concurrent_first_sessions_start_one_engine(eng_gw, held):
    sessions = [session(held, eng_gw, "alice") for _ in range(3)]
    results, errors = {}, []

    def run(i):
        try:
            results[i] = timed_first_result(sessions[i])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(START_TIMEOUT_S + 30)
    assert not errors, errors
    START_TIMES["first session (3 concurrent), first RPC to first result"] = max(results.values())
    e = engine_of(eng_gw, "user:alice")
    assert e["state"] == "ready" and e["cluster"] == "eng"
    assert e["address"].startswith("127.0.0.1:")
    assert len(wait_events(eng_gw, "engine_start", "user:alice")) == 1
    ready = wait_events(eng_gw, "engine_ready", "user:alice")
    assert len(ready) == 1 and ready[0]["start_ms"] > 0
    START_TIMES["engine launch to ready (gateway's own measure)"] = ready[0]["start_ms"] / 1000


def test_second_session_of_a_user_reuses_its_engine(eng_gw, held):
    before = engine_of(eng_gw, "user:alice")
    s = session(held, eng_gw, "alice")
    START_TIMES["a user's next session, first RPC to first result"] = timed_first_result(s)
    after = engine_of(eng_gw, "user:alice")
    assert after["address"] == before["address"] and after["pid"] == before["pid"]
    assert len(access_events(eng_gw, "engine_start", "user:alice")) == 1
    time.sleep(0.3)
    assert engine_of(eng_gw, "user:alice")["sessions"] == 4


def test_two_users_get_two_engines(eng_gw, held):
    s = session(held, eng_gw, "bob")
    _BOB.append(s)
    START_TIMES["second user's first session, first RPC to first result"] = timed_first_result(s)
    a, b = engine_of(eng_gw, "user:alice"), engine_of(eng_gw, "user:bob")
    assert a["address"] != b["address"] and a["pid"] != b["pid"]
    assert len(engines(eng_gw)) == 2


def test_max_engines_is_resource_exhausted(eng_gw, new_session):
    s = session(new_session, eng_gw, "carol")
    with pytest.raises(Exception) as ei:
        s.range(1).collect()
    text = str(ei.value)
    assert "RESOURCE_EXHAUSTED" in text or "max_engines" in text, text
    assert "engines.max_engines (2) of cluster 'eng' reached" in text, text
    assert len(engines(eng_gw)) == 2


def test_engine_refuses_a_direct_connection_without_its_token(eng_gw, new_session):
    address = engine_of(eng_gw, "user:alice")["address"]
    s = new_session(f"sc://{address}/;user_id=alice")
    with pytest.raises(Exception) as ei:
        s.range(1).collect()
    text = str(ei.value)
    assert "UNAUTHENTICATED" in text or "Invalid authentication token" in text, text
    # The access log names engines but never their tokens.
    log = eng_gw.access_log.read_text(errors="replace") + eng_gw.log.read_text(errors="replace")
    assert "spark.connect.authenticate.token=" not in log


def test_a_crashed_engine_is_replaced_by_the_next_session(eng_gw, held, new_session):
    old = engine_of(eng_gw, "user:alice")
    os.killpg(old["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(e["key"] == "user:alice" for e in engines(eng_gw)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(e["key"] == "user:alice" for e in engines(eng_gw))
    stale = held.sessions[0]
    stale.release_session_on_close = False
    with pytest.raises(Exception) as ei:
        stale.range(1).collect()
    text = str(ei.value)
    assert "engine" in text and "start a new Spark session" in text, text
    s = session(held, eng_gw, "alice")
    START_TIMES["after a crash: next session, first RPC to first result"] = timed_first_result(s)
    new = engine_of(eng_gw, "user:alice")
    assert new["pid"] != old["pid"] and new["state"] == "ready"
    stops = wait_events(eng_gw, "engine_stop", "user:alice")
    assert stops and stops[0]["reason"].startswith("crashed"), stops


def test_an_idle_engine_stops(eng_gw, held):
    # Stop bob's session (ReleaseSession): his engine has no session left.
    assert _BOB, "test_two_users_get_two_engines did not run"
    _BOB[0].stop()
    held.sessions.remove(_BOB[0])
    t0 = time.monotonic()
    deadline = t0 + IDLE_TIMEOUT_S + 20
    while any(e["key"] == "user:bob" for e in engines(eng_gw)) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not any(e["key"] == "user:bob" for e in engines(eng_gw)), engines(eng_gw)
    assert time.monotonic() - t0 >= IDLE_TIMEOUT_S - 1
    stops = wait_events(eng_gw, "engine_stop", "user:bob")
    assert stops and stops[-1]["reason"].startswith("idle"), stops
    # alice's engine has live sessions: it stays.
    assert engine_of(eng_gw, "user:alice")["state"] == "ready"


def test_admin_delete_stops_an_engine_and_metrics_count_it(eng_gw):
    code, body = eng_gw.admin("DELETE", "/v1/engines/user:alice")
    assert code == 200, body
    deadline = time.monotonic() + 15
    while engines(eng_gw) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engines(eng_gw) == []
    code, body = eng_gw.admin("DELETE", "/v1/engines/user:nobody")
    assert code == 404, body
    code, metrics = eng_gw.admin("GET", "/metrics")
    assert 'sparkgate_engine_starts_total{result="ok"} 3' in metrics, metrics
    assert 'sparkgate_engines{state="ready"} 0' in metrics
    assert "sparkgate_engine_start_seconds_count 3" in metrics


def test_command_launcher_share_cluster(tmp_path_factory, new_session):
    launcher = REPO / "deploy" / "engines" / "local-launcher.sh"
    gw = Gateway(tmp_path_factory.mktemp("gateway-engines-cmd"), routing=routing(
        "      share: cluster\n"
        "      launcher: command\n"
        f"      command: {{argv: [{json.dumps(str(launcher))}]}}\n"
        f"      start_timeout: {START_TIMEOUT_S}s\n"
        "      stop_grace: 5s\n"), extra_yaml=DRAIN)
    os.environ["SPARK_HOME"] = str(SPARK_HOME)
    try:
        gw.start()
        a = session(new_session, gw, "dave")
        START_TIMES["command launcher: first session, first RPC to first result"] = timed_first_result(a)
        b = session(new_session, gw, "erin")
        assert b.range(2).count() == 2
        es = engines(gw)
        assert len(es) == 1 and es[0]["key"] == "cluster", es
        pid = es[0]["pid"]
    finally:
        os.environ.pop("SPARK_HOME", None)
        for s in new_session.sessions:
            s.release_session_on_close = False
            try:
                s.stop()
            except Exception:
                pass
        new_session.sessions.clear()
        gw.stop()
    # The gateway's stop took the launcher's whole process group (Spark too) with it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def _redis_server(workdir: Path):
    import shutil
    import socket
    import subprocess
    from conftest import free_port
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server not found (apt-get install redis-server, or deploy/install-deps.sh)",
                    pytrace=False)
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start", pytrace=False)


def _engine_processes_under(*gateway_pids: int) -> Dict[int, int]:
    """SparkConnectServer processes descended from the given gateways: pid -> gateway pid."""
    def ppid(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0
        return int(stat.rsplit(")", 1)[1].split()[1])

    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"SparkConnectServer" not in cmd or b"java" not in cmd:
            continue
        p = int(d.name)
        while p > 1:
            if p in gateway_pids:
                out[int(d.name)] = p
                break
            p = ppid(p)
    return out


def test_two_replicas_share_one_engine_through_redis(tmp_path_factory, new_session):
    """sessions.store: redis: the engine of (cluster, key) is claimed in Redis, so a second
    replica routes alice's new session to the engine the first one started."""
    work = tmp_path_factory.mktemp("engines-redis")
    redis_proc, redis_port = _redis_server(work)
    store = ("sessions:\n  store: redis\n"
             f"  redis: {{address: 127.0.0.1:{redis_port}, key_prefix: \"e2e-eng:\"}}\n")
    spec = routing(
        "      share: user\n"
        "      launcher: local\n"
        "      local:\n"
        f"        spark_home: {json.dumps(str(SPARK_HOME))}\n"
        "        master: local[1]\n"
        f"        conf: {ENGINE_CONF}\n"
        f"      start_timeout: {START_TIMEOUT_S}s\n"
        "      stop_grace: 5s\n")
    a = Gateway(work / "a", routing=spec, extra_yaml=DRAIN + store)
    b = Gateway(work / "b", routing=spec, extra_yaml=DRAIN + store)
    try:
        a.start()
        b.start()
        sa = session(new_session, a, "alice")
        START_TIMES["two replicas: first session through A, first RPC to first result"] = timed_first_result(sa)
        ea = engine_of(a, "user:alice")
        assert ea["state"] == "ready" and ea["owner"] == "this replica" and ea["pid"] > 0
        sb = session(new_session, b, "alice")
        START_TIMES["two replicas: alice's next session through B, first RPC to first result"] = \
            timed_first_result(sb)
        eb = engine_of(b, "user:alice")
        assert eb["address"] == ea["address"], (ea, eb)
        assert eb["owner"] == "another replica" and eb["pid"] == 0 and eb["state"] == "ready"
        # Both sessions keep working, each through its own replica.
        assert sa.range(5).count() == 5 and sb.range(4).count() == 4
        procs = _engine_processes_under(a.proc.pid, b.proc.pid)
        assert list(procs.values()) == [a.proc.pid], procs
        assert len(wait_events(a, "engine_start", "user:alice")) == 1
        assert access_events(b, "engine_start", "user:alice") == []
        # B's session is counted by A (B's use lease in Redis, renewed every 2 s), so A's
        # idle stop sees it.
        time.sleep(2.5)
        assert engine_of(a, "user:alice")["sessions"] >= 2
        # The owner's engine dies: A deletes the Redis key, B treats its view as a crash.
        os.killpg(ea["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(e["key"] == "user:alice" for e in engines(b)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(e["key"] == "user:alice" for e in engines(b)), engines(b)
        stops = wait_events(b, "engine_stop", "user:alice")
        assert stops and stops[0]["reason"].startswith("crashed"), stops
    finally:
        for s in new_session.sessions:
            s.release_session_on_close = False
            try:
                s.stop()
            except Exception:
                pass
        new_session.sessions.clear()
        b.stop()
        a.stop()
        redis_proc.kill()
        redis_proc.wait()


@pytest.fixture(scope="module", autouse=True)
def report_start_times():
    """Prints the measured start times once the module's cases have run (see them with -s or -rP)."""
    yield
    for k, v in START_TIMES.items():
        print(f"ENGINE-TIME {k}: {v:.1f} s")
