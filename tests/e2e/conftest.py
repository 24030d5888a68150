"""Fixtures for the end-to-end suite: real PySpark against a real Spark Connect server,
once directly and once through the real sparkgate binary.

Processes started here listen on 127.0.0.1 only, on ports the kernel chose, log into
pytest's temporary directory, and are stopped (whole process group) at the end.

Environment:
  SPARKGATE_BIN          the gateway binary (default <repo>/build/gateway/sparkgate)
  SPARKGATE_SERVER_VENV  the virtualenv holding PyPI pyspark (default <repo>/.venv/server)
  SPARKGATE_E2E_LOG_LEVEL  --log-level for the main gateway (e.g. debug; default: its own)

TLS and authentication: `CertAuthority` makes a throwaway CA and certificates with the
`openssl` CLI; `Gateway(tls=True)` serves its listener with a certificate for
127.0.0.1/localhost signed by it (`gateway.ca_path`), `Gateway(extra_yaml=...)` appends
top-level YAML (auth:, identity:, quotas:), `token_sha256` gives the `sha256:<hex>` form of a
token for `auth.tokens`, and `tls_session` connects PySpark trusting a given CA.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

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


# ----------------------------------------------------------------------------------------
# TLS: a throwaway certificate authority (openssl CLI), and PySpark clients that trust it
# ----------------------------------------------------------------------------------------

def token_sha256(token: str) -> str:
    """The `sha256:<hex>` form of a bearer token, as `auth.tokens[].sha256` takes it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is missing (Debian package openssl)", pytrace=False)
    done = subprocess.run([openssl, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed ({done.returncode}):\n"
                    f"{done.stdout.decode(errors='replace')}", pytrace=False)


class CertAuthority:
    """A certificate authority made at test time with the openssl CLI (P-256 keys, valid
    for two days), which issues server and client certificates into any directory."""

    _shared: Optional["CertAuthority"] = None

    def __init__(self, directory: Path, name: str = "sparkgate e2e test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        self._serial = 0
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(self.key), "-out", str(self.cert), "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)

    @classmethod
    def shared(cls) -> "CertAuthority":
        """One CA for the whole test process (in a temporary directory removed at exit), so
        that every TLS gateway is trusted through the same CA file."""
        if cls._shared is None:
            directory = Path(tempfile.mkdtemp(prefix="sparkgate-e2e-ca-"))
            atexit.register(shutil.rmtree, directory, True)
            cls._shared = cls(directory)
        return cls._shared

    def issue(self, directory: Path, name: str, subject: str, extensions: Sequence[str]) -> Tuple[Path, Path]:
        """Issues `<directory>/<name>.pem` and `<name>.key` for `subject` ("/CN=x/O=y")
        with the given X.509v3 extension lines; returns (cert, key)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
        ext = directory / f"{name}.ext"
        ext.write_text("".join(line + "\n" for line in extensions))
        self._serial += 1
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", subject, cwd=directory)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(int(time.time() * 1000) * 1000 + self._serial), "-days", "2",
                 "-extfile", str(ext), "-out", str(cert), cwd=directory)
        return cert, key

    def issue_server(self, directory: Path, name: str = "server") -> Tuple[Path, Path]:
        """A server certificate for 127.0.0.1 and localhost."""
        return self.issue(directory, name, "/CN=127.0.0.1", [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])

    def issue_client(self, directory: Path, name: str, common_name: str, org_units: Sequence[str] = (),
                     organization: Optional[str] = None, san: Optional[str] = None) -> Tuple[Path, Path]:
        """A client certificate with CN `common_name` (and OU/O/SAN if given)."""
        subject = (f"/CN={common_name}" + "".join(f"/OU={ou}" for ou in org_units)
                   + (f"/O={organization}" if organization else ""))
        extensions = ["basicConstraints=critical,CA:FALSE",
                      "keyUsage=critical,digitalSignature,keyEncipherment",
                      "extendedKeyUsage=clientAuth"]
        if san:
            extensions.append(f"subjectAltName={san}")
        return self.issue(directory, name, subject, extensions)


def tls_channel_builder(url: str, ca_path: Optional[Path] = None,
                        client_cert: Optional[Tuple[Path, Path]] = None):
    """A PySpark DefaultChannelBuilder for `url` whose TLS channels trust `ca_path` (and
    present `client_cert` = (cert, key) if given) instead of grpc's default roots. Use it
    with SparkSession.builder.channelBuilder(...). Only channels that are secure anyway
    (token= or use_ssl=true in `url`) change; the host must not be `localhost`, for which
    PySpark uses local (non-TLS) credentials when only a token is given."""
    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    root = Path(ca_path).read_bytes() if ca_path else None
    chain = Path(client_cert[0]).read_bytes() if client_cert else None
    private_key = Path(client_cert[1]).read_bytes() if client_cert else None

    class _CATrustingChannelBuilder(DefaultChannelBuilder):
        def toChannel(self) -> grpc.Channel:
            if not self.secure or (not self.use_ssl and self.host == "localhost"):
                return super().toChannel()
            creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=private_key,
                                                 certificate_chain=chain)
            if self.token is not None:
                creds = grpc.composite_channel_credentials(
                    creds, grpc.access_token_call_credentials(self.token))
            return self._secure_channel(self.endpoint, creds)

    return _CATrustingChannelBuilder(url)


def tls_session(url: str, ca_path: Optional[Path] = None, client_cert: Optional[Tuple[Path, Path]] = None):
    """A new SparkSession (builder.create()) for `url` that trusts `ca_path`."""
    from pyspark.sql.connect.session import SparkSession  # channelBuilder() is Connect-only
    return SparkSession.builder.channelBuilder(tls_channel_builder(url, ca_path, client_cert)).create()


class Gateway:
    """The sparkgate binary in front of one Spark Connect server, or, with `routing` (the
    YAML of the `clusters:` and `routes:` sections), in front of whatever that names.

    `tls`: the listener serves TLS with a certificate for 127.0.0.1/localhost issued by
    `ca` (default: the process-wide CertAuthority.shared()); `ca_path` is that CA's PEM.
    `tls_extra`: more entries of the listener's tls mapping, e.g. "client_ca: /x.pem,
    require_client_cert: false". `extra_yaml`: top-level YAML appended to the config
    (auth:, identity:, quotas: ...). `port`: listen there instead of on a free port (a second
    replica on the same port shares it through SO_REUSEPORT, as replicas behind one Service
    do). `admin()` calls the admin listener."""

    def __init__(self, workdir: Path, backend_port: Optional[int] = None, log_level: Optional[str] = None,
                 routing: Optional[str] = None, tls: bool = False, extra_yaml: str = "",
                 ca: Optional[CertAuthority] = None, tls_extra: str = "", port: Optional[int] = None):
        assert (backend_port is None) != (routing is None), "give backend_port or routing"
        self.workdir = workdir
        self.backend_port = backend_port
        self.routing = routing
        self.log_level = log_level
        self.tls = tls
        self.tls_extra = tls_extra
        self.extra_yaml = extra_yaml
        self.ca: Optional[CertAuthority] = (ca or CertAuthority.shared()) if tls else None
        self.cert_path: Optional[Path] = None
        self.key_path: Optional[Path] = None
        self.log = workdir / "gateway.stderr.log"
        self.access_log = workdir / "gateway.stdout.log"
        self.config = workdir / "sparkgate.yaml"
        self.proc: Optional[subprocess.Popen] = None
        self.fixed_port = port
        self.port: Optional[int] = None
        self.admin_port: Optional[int] = None
        self.stopped = False

    def start(self) -> "Gateway":
        if not GATEWAY_BIN.exists():
            pytest.fail(f"gateway binary {GATEWAY_BIN} is missing (build it, or set SPARKGATE_BIN)",
                        pytrace=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        tls_yaml = ""
        if self.ca is not None:
            if self.cert_path is None:
                self.cert_path, self.key_path = self.ca.issue_server(self.workdir / "tls")
            extra = f", {self.tls_extra}" if self.tls_extra else ""
            tls_yaml = (f"    tls: {{cert: {json.dumps(str(self.cert_path))}, "
                        f"key: {json.dumps(str(self.key_path))}{extra}}}\n")
        extra_yaml = self.extra_yaml
        if extra_yaml and not extra_yaml.endswith("\n"):
            extra_yaml += "\n"
        # The free ports are found by binding and closing; another process may grab one in
        # between, so a failed start is retried on fresh ports.
        for attempt in range(3):
            self.port, self.admin_port = self.fixed_port or free_port(), free_port()
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
                f"{tls_yaml}"
                f"{routing}"
                "admin:\n"
                f"  address: 127.0.0.1:{self.admin_port}\n"
                f"{extra_yaml}")
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

    def admin(self, method: str, path: str) -> Tuple[int, str]:
        """An admin API request to http://127.0.0.1:<admin_port><path>: (HTTP status, body)."""
        import urllib.error
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    @property
    def ca_path(self) -> Optional[Path]:
        """The PEM of the CA that issued the listener's certificate (None without tls)."""
        return self.ca.cert if self.ca is not None else None

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

    def __call__(self, url: str, ca_path: Optional[Path] = None):
        from pyspark.sql import SparkSession
        if ca_path is not None:
            s = tls_session(url, ca_path)
        else:
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

