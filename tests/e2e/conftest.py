"""Fixtures for the end-to-end suite: real PySpark against a real Spark Connect server,
once directly and once through the real sparkgate binary.

Processes started here listen on 127.0.0.1 only, on ports the kernel chose, log into
pytest's temporary directory, and are stopped (whole process group) at the end.

Environment:
  SPARKGATE_BIN          the gateway binary (default <repo>/build/gateway/sparkgate)
  SPARKGATE_SERVER_VENV  the virtualenv holding PyPI pyspark (default <repo>/.venv/server)
  SPARKGATE_E2E_LOG_LEVEL  --log-level for the main gateway (e.g. debug; default: its own)
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_VENV = Path(os.environ.get("SPARKGATE_SERVER_VENV", REPO / ".venv" / "server"))
GATEWAY_BIN = Path(os.environ.get("SPARKGATE_BIN", REPO / "build" / "gateway" / "sparkgate"))

SPARK_START_TIMEOUT_S = 180
GATEWAY_START_TIMEOUT_S = 30

# Settings for the reattach server: its result streams end after this long / this many
# bytes, so that any non-trivial query needs ReattachExecute to finish.
REATTACH_SERVER_CONF = {
    "spark.connect.execute.reattachable.senderMaxStreamDuration": "1s",
    "spark.connect.execute.reattachable.senderMaxStreamSize": "1m",
}

_STARTED_RE = re.compile(r"Spark Connect server started at: (\S+):(\d+)")


def free_port() -> int:
    """A port the kernel reports free on 127.0.0.1 (for programs that cannot be told
    to bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


# Every process group started here, so that they can be killed even if pytest itself is
# terminated (SIGTERM from a CI timeout) and the fixtures' teardown never runs.
_STARTED: List[subprocess.Popen] = []


def _kill_all_started() -> None:
    for proc in _STARTED:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _on_sigterm(signum, frame):
    _kill_all_started()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config):
    atexit.register(_kill_all_started)
    signal.signal(signal.SIGTERM, _on_sigterm)


def spawn(cmd: List[str], **kwargs) -> subprocess.Popen:
    """Popen in a new session (so its whole process group can be stopped), remembered
    for the emergency cleanup above."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)
    _STARTED.append(proc)
    return proc


def stop_process_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM the process group led by proc, then SIGKILL what is left after grace_s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children (Python UDF workers) may outlive the leader; take the whole group down.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class SparkServer:
    """A Spark Connect server from PyPI pyspark, on 127.0.0.1 and a kernel-chosen port."""

    def __init__(self, workdir: Path, conf: Optional[dict] = None):
        self.workdir = workdir
        self.conf = conf or {}
        self.log = workdir / "spark.log"
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    def start(self) -> "SparkServer":
        spark_submit = SERVER_VENV / "bin" / "spark-submit"
        python = SERVER_VENV / "bin" / "python"
        if not spark_submit.exists():
            pytest.fail(f"{spark_submit} is missing; run deploy/install-deps.sh", pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "conf").mkdir(exist_ok=True)
        (self.workdir / "local").mkdir(exist_ok=True)
        conf = {
            # Port 0: the kernel picks; the server logs the port it got.
            "spark.connect.grpc.binding.port": "0",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.local.dir": str(self.workdir / "local"),
            "spark.sql.warehouse.dir": str(self.workdir / "warehouse"),
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
        }
        conf.update(self.conf)
        cmd = [str(spark_submit), "--master", "local[2]",
               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
        for k, v in conf.items():
            cmd += ["--conf", f"{k}={v}"]
        env = dict(os.environ)
        env.pop("SPARK_HOME", None)  # use the pyspark of SERVER_VENV, nothing else
        env.pop("PYSPARK_DRIVER_PYTHON", None)
        env.update({
            "PYSPARK_PYTHON": str(python),  # Python UDF workers run in the server venv
            "SPARK_CONF_DIR": str(self.workdir / "conf"),  # no stray spark-defaults/log4j2
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.workdir / "local"),
        })
        with open(self.log, "wb") as log:
            self.proc = spawn(cmd, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SPARK_START_TIMEOUT_S
        while self.port is None:
            m = _STARTED_RE.search(self.log.read_text(errors="replace"))
            if m:
                self.port = int(m.group(2))
                break
            self._check_alive("while starting")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Spark Connect server did not start within {SPARK_START_TIMEOUT_S}s; "
                            f"log {self.log}:\n{tail(self.log)}", pytrace=False)
            time.sleep(0.5)
        while not port_accepts(self.port):
            self._check_alive("before accepting connections")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Spark Connect server does not accept on {self.port}; log {self.log}",
                            pytrace=False)
            time.sleep(0.2)
        # Ready means a trivial query works, not just an open port.
        from pyspark.sql import SparkSession
        s = SparkSession.builder.remote(self.url).create()
        try:
            rows = s.range(3).collect()
            assert [r.id for r in rows] == [0, 1, 2]
        finally:
            s.stop()
        return self

    def _check_alive(self, when: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"Spark Connect server exited with {self.proc.returncode} {when}; "
                        f"log {self.log}:\n{tail(self.log)}", pytrace=False)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


class Gateway:
    """The sparkgate binary in front of one Spark Connect server, or, with `routing` (the
    YAML of the `clusters:` and `routes:` sections), in front of whatever that names."""

    def __init__(self, workdir: Path, backend_port: Optional[int] = None, log_level: Optional[str] = None,
                 routing: Optional[str] = None):
        assert (backend_port is None) != (routing is None), "give backend_port or routing"
        self.workdir = workdir
        self.backend_port = backend_port
        self.routing = routing
        self.log_level = log_level
        self.log = workdir / "gateway.stderr.log"
        self.access_log = workdir / "gateway.stdout.log"
        self.config = workdir / "sparkgate.yaml"
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.admin_port: Optional[int] = None
        self.stopped = False

    def start(self) -> "Gateway":
        if not GATEWAY_BIN.exists():
            pytest.fail(f"gateway binary {GATEWAY_BIN} is missing (build it, or set SPARKGATE_BIN)",
                        pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The free ports are found by binding and closing; another process may grab one in
        # between, so a failed start is retried on fresh ports.
        for attempt in range(3):
            self.port, self.admin_port = free_port(), free_port()
            if self.port == self.admin_port:
                continue
            routing = self.routing or (
                "clusters:\n"
                "  - name: e2e\n"
                "    backends:\n"
                f"      - address: 127.0.0.1:{self.backend_port}\n"
                "routes:\n"
                "  - cluster: e2e\n")
            self.config.write_text(
                "listeners:\n"
                f"  - address: 127.0.0.1:{self.port}\n"
                f"{routing}"
                "admin:\n"
                f"  address: 127.0.0.1:{self.admin_port}\n")
            cmd = [str(GATEWAY_BIN), "--config", str(self.config), "--workers", "2"]
            if self.log_level:
                cmd += ["--log-level", self.log_level]
            with open(self.log, "ab") as err, open(self.access_log, "ab") as out:
                self.proc = spawn(cmd, cwd=self.workdir, stdout=out, stderr=err)
            deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if port_accepts(self.port):
                    return self
                time.sleep(0.1)
            exited = self.proc.poll() is not None
            stop_process_group(self.proc, grace_s=5)
            if not exited or "in use" not in tail(self.log, 5).lower():
                break
        pytest.fail(f"gateway did not start (exit code {self.proc.returncode}); "
                    f"stderr {self.log}:\n{tail(self.log)}", pytrace=False)

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def crashed(self) -> Optional[str]:
        """A description of how the gateway died, if it died before stop()."""
        if self.stopped or self.proc is None or self.proc.poll() is None:
            return None
        return f"gateway exited unexpectedly with {self.proc.returncode}; stderr {self.log}:\n{tail(self.log)}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.stopped = True
        if self.proc is not None:
            stop_process_group(self.proc, grace_s=15)


# ----------------------------------------------------------------------------------------
# Servers and gateways (session scope)
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def spark_server(tmp_path_factory) -> Iterator[SparkServer]:
    server = SparkServer(tmp_path_factory.mktemp("spark"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway_proc(spark_server, tmp_path_factory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("gateway"), spark_server.port,
                 log_level=os.environ.get("SPARKGATE_E2E_LOG_LEVEL") or None)
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="session")
def reattach_server(tmp_path_factory) -> Iterator[SparkServer]:
    """A second server whose result streams end after 1 s or 1 MiB."""
    server = SparkServer(tmp_path_factory.mktemp("spark-reattach"), REATTACH_SERVER_CONF)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def reattach_gateway_proc(reattach_server, tmp_path_factory) -> Iterator[Gateway]:
    """A gateway in front of reattach_server, logging every RPC (debug level)."""
    gw = Gateway(tmp_path_factory.mktemp("gateway-reattach"), reattach_server.port, log_level="debug")
    try:
        yield gw.start()
    finally:
        gw.stop()


# ----------------------------------------------------------------------------------------
# Client sessions (one fresh pair per test, released at the end)
# ----------------------------------------------------------------------------------------

class SessionFactory:
    """Creates distinct SparkSessions (builder.create(), never the cached default) and
    stops them all at the end."""

    def __init__(self):
        self.sessions: List = []

    def __call__(self, url: str):
        from pyspark.sql import SparkSession
        s = SparkSession.builder.remote(url).create()
        self.sessions.append(s)
        return s

    def close(self, release: bool = True):
        for s in self.sessions:
            if not release:
                # A dead server would make ReleaseSession retry for minutes.
                s.release_session_on_close = False
            try:
                s.stop()
            except Exception as e:  # a test may have stopped it already
                print(f"stopping session failed: {e}", file=sys.stderr)


def _dead_servers(request) -> List[str]:
    """Descriptions of the Spark servers used by this test that are no longer running."""
    dead = []
    for name in ("spark_server", "reattach_server"):
        server = getattr(request.node, "funcargs", {}).get(name)
        if isinstance(server, SparkServer) and server.proc is not None and server.proc.poll() is not None:
            dead.append(f"{name} exited with {server.proc.returncode}; log {server.log}:\n{tail(server.log)}")
    return dead


@pytest.fixture
def new_session(request) -> Iterator[SessionFactory]:
    factory = SessionFactory()
    yield factory
    dead = _dead_servers(request)
    factory.close(release=not dead)
    if dead:
        pytest.fail("\n".join(dead), pytrace=False)


@pytest.fixture
def direct(spark_server, new_session):
    """A SparkSession connected straight to the Spark Connect server."""
    return new_session(spark_server.url)


@pytest.fixture
def gateway(gateway_proc, new_session):
    """A SparkSession connected to the same server through sparkgate."""
    return new_session(gateway_proc.url)


# ----------------------------------------------------------------------------------------
# Gateway health around every test that used one, and its log on failure
# ----------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" and not (report.when == "setup" and report.failed):
        return
    # funcargs holds every fixture in the test's closure (`gateway` brings gateway_proc),
    # including Gateway fixtures that test modules define themselves.
    for name, gw in list(getattr(item, "funcargs", {}).items()):
        if not isinstance(gw, Gateway):
            continue
        crash = gw.crashed()
        if crash and report.passed:
            # The test passed but the gateway died under it: that is a failure.
            report.outcome = "failed"
            report.longrepr = crash
        if report.failed:
            report.sections.append((f"{name} stderr (tail)", tail(gw.log, 80)))

