#!/usr/bin/env python3
"""Runs the interoperability matrix: every selected client x server cell, each once
straight against the Spark Connect server and once through sparkgate, and writes
tests/interop/MATRIX.md (from tests/interop/results.json, which keeps the cells of earlier
runs that this run did not select).

Started by tests/interop/run.sh (which sets everything up first); stdlib only.

    matrix.py [--cells a,b,...] [--all]

A cell is CLIENT-SERVER with CLIENT one of pyspark4, pyspark35, go, jvm and SERVER one of
spark4, spark35. Without arguments the CI cells run (DEFAULT_CELLS).

How a check is judged (the workloads print one RESULT line per check, see
python/workload.py):
  pass         pass directly and through the gateway (for `reattach` the gateway's debug
               log must also show ReattachExecute calls of that session)
  unsupported  the pair cannot do it: directly it fails with a clean gRPC/Spark error, and
               through the gateway with the same gRPC code and error class
               ("not supported by this pair", counted as passed: the gateway behaves
               exactly like the server)
  known        the client or server fails the same way directly (not a clean error);
               listed, not counted
  n/a          the client has no API for it (reason given); listed, not counted
  fail         anything else, e.g. direct passes and the gateway does not, or the
               gateway's error differs from the server's
The last line printed is `N passed, N failed` over all checks of the cells run; the exit
status is 0 only with no failure.

Processes listen on 127.0.0.1 only, on kernel-chosen ports, and are stopped (whole process
group) at the end, also on failure, timeout or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENVS = REPO / ".venv"
BUILD = VENVS / "interop-build"


def versions() -> Dict[str, str]:
    out = {}
    for line in (HERE / "versions.sh").read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(\S+)", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


V = versions()

CLIENTS = {
    "pyspark4": f"PySpark {V['PYSPARK4_CLIENT_VERSION']} (pyspark-client)",
    "pyspark35": f"PySpark {V['PYSPARK35_CLIENT_VERSION']} (pyspark[connect])",
    "go": f"Go spark-connect-go {V['GO_CLIENT_VERSION']}",
    "jvm": f"JVM spark-connect-client-jvm_2.13 {V['JVM_CLIENT_VERSION']}",
}
def _installed_pyspark(venv: str) -> str:
    """The pyspark version in .venv/<venv> (the Spark 4.x server comes from install-deps.sh)."""
    meta = sorted((VENVS / venv / "lib").glob("python3*/site-packages/pyspark-*.dist-info"))
    m = re.match(r"pyspark-(.+)\.dist-info", meta[-1].name) if meta else None
    return m.group(1) if m else "4.x"


SERVERS = {
    "spark4": f"Spark {_installed_pyspark('server')} (PyPI pyspark)",
    "spark35": f"Spark {V['SPARK35_VERSION']} (PyPI pyspark + spark-connect_2.12 jar)",
}
CHECKS = ["range_filter_agg_join", "sql", "temp_view", "large_result", "error_class", "config",
          "interrupt", "reattach", "artifacts", "cached_local_relation", "clone_session", "release_session", "tls_token",
          "tls_wrong_token"]
GATEWAY_ONLY = {"tls_token", "tls_wrong_token"}
# What matrix.py runs without arguments (a quick check); --all, which tests/run.sh passes,
# runs every cell.
DEFAULT_CELLS = ["pyspark4-spark4", "pyspark35-spark35"]
ALL_CELLS = [f"{c}-{s}" for c in CLIENTS for s in SERVERS]

SPARK_START_TIMEOUT_S = 240
WORKLOAD_TIMEOUT_S = int(os.environ.get("INTEROP_WORKLOAD_TIMEOUT_S", "900"))
SERVER_CONF = {
    # Every reattachable result stream ends after 1 s or 1 MiB, so that results of any size
    # need ReattachExecute (and ReleaseExecute) to complete.
    "spark.connect.execute.reattachable.senderMaxStreamDuration": "1s",
    "spark.connect.execute.reattachable.senderMaxStreamSize": "1m",
}
TOKEN_USER = "interop"

# ----------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------
_STARTED: List[subprocess.Popen] = []


def _kill_all() -> None:
    for p in _STARTED:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _on_signal(signum, frame):
    _kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_kill_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def spawn(cmd: List[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    _STARTED.append(p)
    return p


def stop(p: Optional[subprocess.Popen], grace_s: float = 20) -> None:
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def log(msg: str) -> None:
    print(f"[interop] {msg}", flush=True)


class SetupError(Exception):
    pass


# ----------------------------------------------------------------------------------------
# Spark servers, TLS material, the gateway
# ----------------------------------------------------------------------------------------
class SparkServer:
    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.workdir = workdir
        self.log = workdir / "spark.log"
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def start(self) -> "SparkServer":
        venv = VENVS / ("server" if self.name == "spark4" else "interop-server35")
        submit = venv / "bin" / "spark-submit"
        if not submit.exists():
            raise SetupError(f"{submit} is missing (tests/interop/setup.sh)")
        for d in ("conf", "local"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = {
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.host": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.local.dir": str(self.workdir / "local"),
            "spark.sql.warehouse.dir": str(self.workdir / "warehouse"),
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
            **SERVER_CONF,
        }
        cmd = [str(submit), "--master", "local[2]",
               "--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
        if self.name == "spark4":
            conf["spark.connect.grpc.binding.address"] = "127.0.0.1"
        else:
            # Spark 3.5 has no binding.address setting and listens on every interface;
            # run.sh runs the matrix in a network namespace of its own with only loopback.
            if not os.environ.get("INTEROP_NETNS") and not os.environ.get("INTEROP_ALLOW_WILDCARD_BIND"):
                raise SetupError("the Spark 3.5 server cannot be limited to 127.0.0.1 (3.5 has no "
                                 "spark.connect.grpc.binding.address) and this run is not in a private "
                                 "network namespace (unshare --net failed; see run.sh)")
            jar = VENVS / "interop-jars" / f"spark-connect_2.12-{V['SPARK35_VERSION']}.jar"
            if not jar.exists():
                raise SetupError(f"{jar} is missing (tests/interop/setup.sh)")
            cmd += ["--jars", str(jar)]
        for k, v in conf.items():
            cmd += ["--conf", f"{k}={v}"]
        env = dict(os.environ)
        for k in ("SPARK_HOME", "PYSPARK_DRIVER_PYTHON"):
            env.pop(k, None)
        env.update({"PYSPARK_PYTHON": str(venv / "bin" / "python"),
                    "SPARK_CONF_DIR": str(self.workdir / "conf"),
                    "SPARK_LOCAL_IP": "127.0.0.1",
                    "SPARK_LOCAL_DIRS": str(self.workdir / "local")})
        log(f"starting {SERVERS[self.name]} on 127.0.0.1:{self.port}")
        with open(self.log, "wb") as out:
            self.proc = spawn(cmd, cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SPARK_START_TIMEOUT_S
        while not ("Spark Connect server started" in self.log.read_text(errors="replace")
                   and accepts(self.port)):
            if self.proc.poll() is not None:
                raise SetupError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise SetupError(f"{self.name} did not start in {SPARK_START_TIMEOUT_S}s:\n{tail(self.log)}")
            time.sleep(0.5)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop(self.proc)


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SetupError(f"openssl {' '.join(args)}: {done.stdout.decode(errors='replace')}")


class Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 (as tests/e2e/conftest.py),
    plus the CA as a PKCS#12 trust store for the JVM client."""

    def __init__(self, d: Path):
        d.mkdir(parents=True, exist_ok=True)
        self.ca, ca_key = d / "ca.pem", d / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(ca_key), "-out", str(self.ca), "-days", "2", "-subj", "/CN=sparkgate interop CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
        self.cert, self.key, csr, ext = d / "server.pem", d / "server.key", d / "server.csr", d / "server.ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(self.key), "-out", str(csr), "-subj", "/CN=127.0.0.1", cwd=d)
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key),
                "-set_serial", str(int(time.time())), "-days", "2", "-extfile", str(ext),
                "-out", str(self.cert), cwd=d)
        self.truststore = d / "ca.p12"
        done = subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "interop-ca", "-file", str(self.ca),
                               "-keystore", str(self.truststore), "-storetype", "PKCS12", "-storepass", "changeit"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise SetupError(f"keytool: {done.stdout.decode(errors='replace')}")


class Gateway:
    """sparkgate in front of one server: an h2c listener (anonymous requests allowed) and a
    TLS listener where a static token authenticates user `interop`; identity enforced; debug
    log (every RPC as `rpc=<Method> session=<id> ...`)."""

    def __init__(self, workdir: Path, backend_port: int, pki: Pki, token: str):
        self.workdir = workdir
        self.backend_port = backend_port
        self.pki = pki
        self.token = token
        self.log = workdir / "gateway.stderr.log"
        self.out = workdir / "gateway.stdout.log"
        self.proc: Optional[subprocess.Popen] = None
        self.port = self.tls_port = 0

    def start(self) -> "Gateway":
        binary = Path(os.environ.get("SPARKGATE_BIN", REPO / "build" / "gateway" / "sparkgate"))
        if not binary.exists():
            raise SetupError(f"gateway binary {binary} is missing")
        self.workdir.mkdir(parents=True, exist_ok=True)
        sha = "sha256:" + hashlib.sha256(self.token.encode()).hexdigest()
        for attempt in range(3):
            self.port, self.tls_port, admin = free_port(), free_port(), free_port()
            if len({self.port, self.tls_port, admin}) < 3:
                continue
            config = self.workdir / "sparkgate.yaml"
            config.write_text(
                "listeners:\n"
                f"  - address: 127.0.0.1:{self.port}\n"
                f"  - address: 127.0.0.1:{self.tls_port}\n"
                f"    tls: {{cert: {json.dumps(str(self.pki.cert))}, key: {json.dumps(str(self.pki.key))}}}\n"
                "clusters:\n"
                "  - name: interop\n"
                "    backends:\n"
                f"      - address: 127.0.0.1:{self.backend_port}\n"
                "routes:\n"
                "  - cluster: interop\n"
                "admin:\n"
                f"  address: 127.0.0.1:{admin}\n"
                "auth:\n"
                "  tokens:\n"
                f"    - {{sha256: \"{sha}\", user: {TOKEN_USER}}}\n"
                "  anonymous: allow\n"
                "identity:\n"
                "  mode: enforce\n")
            with open(self.log, "ab") as err, open(self.out, "ab") as out:
                self.proc = spawn([str(binary), "--config", str(config), "--workers", "2",
                                   "--log-level", "debug"], cwd=self.workdir, stdout=out, stderr=err)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                if accepts(self.port) and accepts(self.tls_port):
                    return self
                time.sleep(0.1)
            exited = self.proc.poll() is not None
            stop(self.proc, 5)
            if not exited or "in use" not in tail(self.log, 5).lower():
                break
        raise SetupError(f"gateway did not start:\n{tail(self.log)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc, 15)


# ----------------------------------------------------------------------------------------
# workloads
# ----------------------------------------------------------------------------------------
def client_command(client: str) -> List[str]:
    if client in ("pyspark4", "pyspark35"):
        py = VENVS / f"interop-{client}" / "bin" / "python"
        return [str(py), str(HERE / "python" / "workload.py")]
    if client == "go":
        return [str(BUILD / "interop-go")]
    if client == "jvm":
        out = BUILD / "jvm"
        return ["java", "-Xmx1g", "--add-opens=java.base/java.nio=ALL-UNNAMED",
                f"-Dinterop.client.version={V['JVM_CLIENT_VERSION']}",
                f"-cp", f"{out / 'interop-jvm.jar'}:{out / 'lib'}/*", "sparkgate.interop.Workload"]
    raise ValueError(client)


def run_workload(client: str, url: str, workdir: Path, env_extra: Dict[str, str], jvm_props: List[str],
                 tls_url: Optional[str] = None, bad_tls_url: Optional[str] = None) -> dict:
    """Runs one workload; returns {"results": {check: (status, detail)}, "sessions": {...},
    "exit": code, "log": path, "seconds": s}."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = client_command(client)
    if client == "jvm":
        cmd = cmd[:1] + jvm_props + cmd[1:]
    cmd += ["--url", url, "--workdir", str(workdir / "scratch")]
    if tls_url:
        cmd += ["--tls-url", tls_url, "--bad-tls-url", bad_tls_url]
    env = dict(os.environ)
    env.update(env_extra)
    out_path = workdir / "stdout.log"
    err_path = workdir / "stderr.log"
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = spawn(cmd, cwd=workdir, env=env, stdout=out, stderr=err)
        deadline = started + WORKLOAD_TIMEOUT_S
        reported_at = None
        code = None
        while code is None:
            try:
                code = p.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                code = f"timeout after {WORKLOAD_TIMEOUT_S}s"
            elif reported_at is None:
                text = out_path.read_text(errors="replace")
                if sum(line.startswith("RESULT ") for line in text.splitlines()) >= len(CHECKS):
                    reported_at = time.monotonic()
            elif time.monotonic() - reported_at > 30:
                # Every result is in; a client that then hangs on shutdown is not a result.
                code = "killed 30 s after its last result"
        stop(p, 5)
    stop(p, 5)  # helper processes the client may have left behind
    results, sessions = {}, {}
    for line in out_path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if parts[0] == "RESULT" and len(parts) >= 3:
            results[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
        elif parts[0] == "SESSION" and len(parts) >= 3:
            sessions[parts[1]] = parts[2]
    return {"results": results, "sessions": sessions, "exit": code, "stderr": str(err_path),
            "seconds": round(time.monotonic() - started, 1)}


def same_error(a: str, b: str) -> bool:
    """Two `error` signatures "<code> <class>: ..." name the same gRPC code and class."""
    return a.split(":", 1)[0].split()[:2] == b.split(":", 1)[0].split()[:2]


def judge(check: str, direct: dict, via: dict, gw_log: str) -> dict:
    d = direct["results"].get(check)
    g = via["results"].get(check)
    if g is None:
        return {"verdict": "fail", "direct": d, "gateway": None,
                "why": f"no result through the gateway (workload exit {via['exit']}; {via['stderr']})"}
    if check in GATEWAY_ONLY:
        verdict = {"pass": "pass", "na": "n/a"}.get(g[0], "fail")
        return {"verdict": verdict, "direct": d, "gateway": g, "why": g[1]}
    if d is None:
        return {"verdict": "fail", "direct": None, "gateway": g,
                "why": f"no direct result (workload exit {direct['exit']}; {direct['stderr']})"}
    ds, gs = d[0], g[0]
    if ds == "na" and gs == "na":
        return {"verdict": "n/a", "direct": d, "gateway": g, "why": g[1]}
    if ds == "pass" and gs == "pass":
        if check == "reattach":
            sid = via["sessions"].get("reattach")
            n = len(re.findall(rf"rpc=ReattachExecute session={re.escape(sid or '?')}\b", gw_log))
            if n == 0:
                return {"verdict": "fail", "direct": d, "gateway": g,
                        "why": f"complete, but no ReattachExecute of session {sid} went through the gateway"}
            return {"verdict": "pass", "direct": d, "gateway": g,
                    "why": f"{g[1]}; {n} ReattachExecute calls through the gateway"}
        if check == "cached_local_relation":
            sid = via["sessions"].get("main")
            n = len(re.findall(rf"rpc=ArtifactStatus session={re.escape(sid or '?')}\b", gw_log))
            if n == 0:
                return {"verdict": "fail", "direct": d, "gateway": g,
                        "why": f"right result, but no ArtifactStatus of session {sid} went through the gateway"}
            return {"verdict": "pass", "direct": d, "gateway": g,
                    "why": f"{g[1]}; {n} ArtifactStatus calls through the gateway"}
        return {"verdict": "pass", "direct": d, "gateway": g, "why": g[1]}
    if ds == "error" and gs == "error" and same_error(d[1], g[1]):
        return {"verdict": "unsupported", "direct": d, "gateway": g,
                "why": f"same clean error directly and through the gateway: {g[1]}"}
    if ds == "fail" and gs == "fail" and d[1].split(":")[0] == g[1].split(":")[0]:
        return {"verdict": "known", "direct": d, "gateway": g, "why": f"fails the same way directly: {d[1]}"}
    return {"verdict": "fail", "direct": d, "gateway": g,
            "why": f"through the gateway: {gs} {g[1]} | directly: {ds} {d[1]}"}


# ----------------------------------------------------------------------------------------
# MATRIX.md
# ----------------------------------------------------------------------------------------
RESULTS = HERE / "results.json"
MATRIX = HERE / "MATRIX.md"
SYMBOL = {"pass": "pass", "unsupported": "not supported by this pair (clean error checked)",
          "known": "fails directly too", "n/a": "n/a", "fail": "**FAIL**"}


def cell_counts(cell: dict) -> Dict[str, int]:
    counts = {k: 0 for k in SYMBOL}
    for c in cell.get("checks", {}).values():
        counts[c["verdict"]] += 1
    return counts


def write_matrix(store: dict) -> None:
    lines = ["# Interoperability matrix", "",
             "Generated by `tests/interop/run.sh` from `tests/interop/results.json`; do not edit by hand.",
             "Each cell ran the same workload straight against the Spark Connect server and through",
             "sparkgate (h2c listener; `tls_*` checks on its TLS listener with a static token). A check",
             "passes when both agree and are right; *not supported by this pair* means the server or",
             "client cannot do it and the gateway returned the same clean gRPC error as the server;",
             "*fails directly too* is a client/server defect that the gateway reproduces faithfully;",
             "*n/a* means the client has no API for it. A failure is the gateway behaving differently",
             "from the server (or a wrong result through it). In `N passed, N failed` (the last line of",
             "`run.sh`), passed counts pass + not supported by this pair.", "",
             "| client \\ server | " + " | ".join(SERVERS[s] for s in SERVERS) + " |",
             "|---|" + "---|" * len(SERVERS)]
    for c in CLIENTS:
        row = [CLIENTS[c]]
        for s in SERVERS:
            cell = store.get(f"{c}-{s}")
            if cell is None:
                row.append("not run yet")
                continue
            if cell.get("error"):
                row.append(f"**FAIL**: {cell['error'][:120]}")
                continue
            k = cell_counts(cell)
            parts = [f"**{k['fail']} failed**" if k["fail"] else "0 failed", f"{k['pass']} pass"]
            parts += [f"{k['unsupported']} not supported by this pair"] if k["unsupported"] else []
            parts += [f"{k['known']} fail directly too"] if k["known"] else []
            parts += [f"{k['n/a']} n/a"] if k["n/a"] else []
            row.append(", ".join(parts) + f" ({cell['ran_at']})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "CI (`tests/run.sh`) runs every cell (`tests/interop/run.sh --all`); "
              "`tests/interop/run.sh` without arguments runs "
              + ", ".join(f"`{c}`" for c in DEFAULT_CELLS) + ".", ""]
    for c in CLIENTS:
        for s in SERVERS:
            key = f"{c}-{s}"
            cell = store.get(key)
            if cell is None:
                continue
            lines += [f"## {CLIENTS[c]} × {SERVERS[s]} (`{key}`)", "",
                      f"Ran {cell['ran_at']} (gateway commit {cell.get('commit', '?')}; "
                      f"workload {cell.get('seconds_direct', '?')} s direct, "
                      f"{cell.get('seconds_gateway', '?')} s through the gateway).", ""]
            if cell.get("error"):
                lines += [f"The cell could not run: {cell['error']}", ""]
                continue
            lines += ["| check | verdict | detail |", "|---|---|---|"]
            for name in CHECKS + sorted(set(cell["checks"]) - set(CHECKS)):
                ch = cell["checks"].get(name)
                if ch is None:
                    continue
                why = ch["why"].replace("|", "\\|")
                lines.append(f"| {name} | {SYMBOL[ch['verdict']]} | {why} |")
            lines.append("")
    MATRIX.write_text("\n".join(lines))


# ----------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", help="comma-separated CLIENT-SERVER cells")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    cells = ALL_CELLS if args.all else (args.cells.split(",") if args.cells else DEFAULT_CELLS)
    for c in cells:
        if c not in ALL_CELLS:
            print(f"unknown cell {c!r}; cells: {', '.join(ALL_CELLS)}", file=sys.stderr)
            return 2

    store = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    work = Path(tempfile.mkdtemp(prefix="sparkgate-interop-"))
    log(f"work directory {work}")
    token = "sgt-interop-" + secrets.token_hex(16)
    passed = failed = 0
    commit = git_commit()
    try:
        pki = Pki(work / "pki")
        env_tls = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(pki.ca), "SSL_CERT_FILE": str(pki.ca)}
        jvm_props = [f"-Djavax.net.ssl.trustStore={pki.truststore}", "-Djavax.net.ssl.trustStorePassword=changeit",
                     "-Djavax.net.ssl.trustStoreType=PKCS12"]
        for server in SERVERS:
            mine = [c for c in cells if c.endswith("-" + server)]
            if not mine:
                continue
            spark = gw = None
            try:
                try:
                    spark = SparkServer(server, work / server).start()
                    gw = Gateway(work / f"gateway-{server}", spark.port, pki, token).start()
                except SetupError as e:
                    for cell in mine:
                        store[cell] = {"ran_at": now(), "commit": commit, "error": str(e)}
                        failed += 1
                    log(f"{server}: cannot start: {e}")
                    continue
                for cell in mine:
                    client = cell.split("-")[0]
                    plain = f"/;user_id={TOKEN_USER}"
                    tls_q = f"/;user_id={TOKEN_USER};token=%s" + (";use_ssl=true" if client == "jvm" else "")
                    log(f"{cell}: direct")
                    direct = run_workload(client, f"sc://127.0.0.1:{spark.port}{plain}", work / cell / "direct",
                                          env_tls, jvm_props)
                    log(f"{cell}: through the gateway")
                    via = run_workload(client, f"sc://127.0.0.1:{gw.port}{plain}", work / cell / "gateway",
                                       env_tls, jvm_props,
                                       tls_url=f"sc://127.0.0.1:{gw.tls_port}" + tls_q % token,
                                       bad_tls_url=f"sc://127.0.0.1:{gw.tls_port}" + tls_q % ("sgt-wrong-" + secrets.token_hex(8)))
                    gw_log = gw.text()
                    checks = {name: judge(name, direct, via, gw_log) for name in CHECKS}
                    for name, ch in checks.items():
                        if token in json.dumps(ch):
                            ch.update(verdict="fail", why="the result text contains the bearer token")
                    problems = []
                    if not gw.alive():
                        problems.append(f"the gateway died:\n{tail(gw.log)}")
                    if not spark.alive():
                        problems.append(f"the Spark server died:\n{tail(spark.log)}")
                    for p in problems:
                        checks["processes"] = {"verdict": "fail", "why": p, "direct": None, "gateway": None}
                    store[cell] = {"ran_at": now(), "commit": commit, "checks": checks,
                                   "seconds_direct": direct["seconds"], "seconds_gateway": via["seconds"]}
                    k = cell_counts(store[cell])
                    passed += k["pass"] + k["unsupported"]
                    failed += k["fail"]
                    for name, ch in checks.items():
                        log(f"  {cell} {name}: {ch['verdict']}: {ch['why'][:300]}")
                    if problems:
                        break
            finally:
                if gw:
                    gw.stop()
                if spark:
                    spark.stop()
    finally:
        _kill_all()
        text = json.dumps(store, indent=1, sort_keys=True) + "\n"
        # No paths of this machine in committed files.
        for path, name in ((str(work), "<workdir>"), (str(REPO), "<repo>"), (str(Path.home()), "~")):
            text = text.replace(json.dumps(path)[1:-1], name)
        RESULTS.write_text(text)
        store = json.loads(text)
        write_matrix(store)
        if args.keep or failed:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    sys.exit(main())
