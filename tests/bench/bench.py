#!/usr/bin/env python3
"""Runs the sparkgate benchmarks (issues 6 and 15); started by tests/bench/run.sh.

Every scenario runs against every target — direct (the bench backend itself), sparkgate
(at its defaults: access log and metrics on, --workers 1), nghttpx, HAProxy, nginx, and
any sparkgate variant named in --targets (SPARKGATE_TARGETS) — interleaved: for each
repetition, for each scenario, each target in turn (the order rotates between
repetitions). Each measurement gets a fresh backend and
a fresh proxy, so peak RSS (VmHWM) belongs to that scenario alone. Figures are medians
over the repetitions.

Prints one Markdown table, where sparkgate stands against each target of issue 15 (met or
missed, with the figures) and, when sparkgate-workers-default ran, a "--workers default
vs 1" table; writes the same as JSON (all raw runs included) and Markdown files. Exits 1
only if something did not work (a process did not start, an RPC failed); timings never
fail it.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["direct", "sparkgate", "nghttpx", "haproxy", "nginx"]
PEERS = ["nghttpx", "haproxy", "nginx"]
# sparkgate and its variants. `sparkgate` is sparkgate at its default settings
# (peers/sparkgate-defaults.yaml: JSON access log on, metrics on; only the active health
# check off) with `--workers 1`, like the peers' one worker. The variants are not in the
# default run; name them in --targets:
# - sparkgate-nolog: the same with `log.access: false` (what the access log costs);
# - sparkgate-workers-default: the same without `--workers` (one worker per core), for
#   the "--workers default vs 1" table;
# - sparkgate-trace0, sparkgate-trace1: tracing (docs/tracing.md) exporting to an OTLP
#   sink in this process (it answers 200 to every POST and counts the spans' bytes),
#   sample_ratio 0 and 1, e.g. --targets sparkgate,sparkgate-trace0,sparkgate-trace1;
# - sparkgate-base: the defaults with the binary of --sparkgate-base-bin (an earlier
#   commit's build), interleaved with `sparkgate` in the same run: before and after a
#   change side by side, e.g. --targets sparkgate-base,sparkgate,nghttpx.
# workers: the --workers value (None: no flag); yaml: appended to the configuration;
# trace: the tracing sample_ratio.
SPARKGATE_TARGETS = {
    "sparkgate": dict(workers=1),
    "sparkgate-nolog": dict(workers=1, yaml="log:\n  access: false\n"),
    "sparkgate-workers-default": dict(workers=None),
    "sparkgate-trace0": dict(workers=1, trace=0.0),
    "sparkgate-trace1": dict(workers=1, trace=1.0),
    "sparkgate-base": dict(workers=1, base=True),
}
MIB = 1 << 20
GIB = 1 << 30

# Loadgen arguments per scenario; "quick" overrides them for the smoke run.
SCENARIOS = {
    1: dict(title="unary Config, concurrency 1", mode="closed",
            args=dict(concurrency=1, channels=1, warmup=1, duration=5),
            quick=dict(warmup=0.1, duration=0.3)),
    2: dict(title="unary Config, 64 streams over 8 connections", mode="closed",
            args=dict(concurrency=64, channels=8, warmup=1, duration=8),
            quick=dict(warmup=0.1, duration=0.3)),
    3: dict(title="ExecutePlan, 4 streams x 1 GiB in 4 MiB messages", mode="stream",
            args=dict(streams=4, channels=4, messages=256, **{"message-bytes": 4 * MIB}),
            quick=dict(messages=4, **{"message-bytes": MIB})),
    4: dict(title="10,000 idle connections, one completed session each", mode="idle",
            args=dict(connections=10000, baseline=500, settle=2),
            quick=dict(connections=100, baseline=10, settle=0.2), no_direct=True),
    5: dict(title="session churn: Config, ExecutePlan, AnalyzePlan, ReleaseSession; "
                  "20,000 sessions at concurrency 32 over 8 connections", mode="churn",
            args=dict(concurrency=32, channels=8, **{"churn-sessions": 20000}),
            quick=dict(**{"churn-sessions": 200})),
    6: dict(title="unary Config, 1,000 streams over 8 connections (no collapse)", mode="closed",
            args=dict(concurrency=1000, channels=8, warmup=2, duration=8),
            quick=dict(concurrency=100, warmup=0.1, duration=0.3)),
    # sparkgate only, at its default settings (access log and metrics on), under the
    # counting allocator (alloc_counter.so as LD_PRELOAD): heap allocations in the window
    # over the RPCs completed in it. The warm-up (3 s at concurrency 8: every one of the
    # 1,000 session ids seen many times) creates the sessions, the connections and every
    # per-thread buffer first, so what is left is the steady per-RPC cost.
    7: dict(title="heap allocations per unary Config RPC after warm-up, sparkgate at its defaults",
            mode="closed", args=dict(concurrency=8, channels=1, warmup=3, duration=5),
            quick=dict(warmup=0.3, duration=0.3), only=("sparkgate", "sparkgate-base"), alloc_counter=True),
}
# The counting allocator (tests/bench/alloc_counter.cc), relative to the build directory.
ALLOC_COUNTER = os.path.join("tests", "bench", "alloc_counter.so")


class OtlpSink:
    """An OTLP/HTTP collector that accepts everything: a thread of this process."""

    def __init__(self):
        import http.server
        import threading
        sink = self
        self.requests = 0
        self.bytes = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                self.rfile.read(n)
                sink.requests += 1
                sink.bytes += n
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Process:
    """A child process with its output in files under the work directory."""

    def __init__(self, name, argv, work, env=None):
        self.name = name
        self.out = os.path.join(work, f"{name}.out")
        self.err = os.path.join(work, f"{name}.err")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=None if env is None else {**os.environ, **env})
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def describe_failure(self):
        return (f"{self.name} (exit {self.proc.poll()})\n--- stderr ---\n{tail(self.err)}"
                f"--- stdout ---\n{tail(self.out)}")


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.work = tempfile.mkdtemp(prefix="sparkgate-bench-")
        self.bin = os.path.join(opts.build_dir, "tests", "bench")
        self.sparkgate = getattr(opts, "sparkgate_bin", None) or os.path.join(opts.build_dir, "gateway", "sparkgate")
        self.sparkgate_base = getattr(opts, "sparkgate_base_bin", None)
        self.runs = []
        self.failures = []
        self.sink = None  # OtlpSink, started for the first tracing target

    # ---- processes ----

    def start_backend(self):
        proc = Process("backend", [os.path.join(self.bin, "bench_backend"), "--port", "0"], self.work)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(proc.out) as f:
                for line in f:
                    if line.startswith("READY "):
                        return proc, int(line.split()[1])
            if proc.proc.poll() is not None:
                break
            time.sleep(0.02)
        proc.stop()
        raise BenchError("the bench backend did not start: " + proc.describe_failure())

    def render(self, template, **values):
        with open(os.path.join(HERE, "peers", template)) as f:
            text = string.Template(f.read()).substitute(**values)
        path = os.path.join(self.work, template)
        with open(path, "w") as f:
            f.write(text)
        return path

    def proxy_argv(self, target, port, backend_port):
        if target in SPARKGATE_TARGETS:
            variant = SPARKGATE_TARGETS[target]
            cfg = self.render("sparkgate-defaults.yaml", port=port, backend_port=backend_port, admin_port=free_port())
            with open(cfg, "a") as f:
                f.write(variant.get("yaml", ""))
                if "trace" in variant:
                    if self.sink is None:
                        self.sink = OtlpSink()
                    f.write(f"tracing:\n  otlp:\n    endpoint: {self.sink.url}\n"
                            f"  sample_ratio: {variant['trace']}\n  flush_interval: 1s\n")
            workers = [] if variant["workers"] is None else ["--workers", str(variant["workers"])]
            binary = self.sparkgate_base if variant.get("base") else self.sparkgate
            return [binary, "--config", cfg, *workers, "--watch-config", "false"]
        if target == "nghttpx":
            empty = os.path.join(self.work, "nghttpx.conf")
            open(empty, "w").close()
            return ["nghttpx", f"--conf={empty}", "--single-process", "--workers=1",
                    f"--frontend=127.0.0.1,{port};no-tls", f"--backend=127.0.0.1,{backend_port};;proto=h2",
                    f"--errorlog-file={self.work}/nghttpx-error.log", "--log-level=WARN",
                    "--no-via", "--no-server-rewrite",
                    "--frontend-http2-read-timeout=1h", "--backend-read-timeout=1h",
                    "--backend-write-timeout=1h", "--backend-keep-alive-timeout=1h",
                    "--frontend-http2-max-concurrent-streams=1000",
                    f"--frontend-http2-window-size={MIB}", f"--frontend-http2-connection-window-size={16 * MIB}",
                    f"--backend-http2-window-size={MIB}", f"--backend-http2-connection-window-size={16 * MIB}"]
        if target == "haproxy":
            cfg = self.render("haproxy.cfg", port=port, backend_port=backend_port)
            return ["haproxy", "-db", "-f", cfg]
        if target == "nginx":
            for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(self.work, f"nginx-{d}"), exist_ok=True)
            cfg = self.render("nginx.conf", port=port, backend_port=backend_port, dir=self.work)
            return ["nginx", "-c", cfg, "-p", self.work, "-e", os.path.join(self.work, "nginx-error.log")]
        raise ValueError(target)

    def start_proxy(self, target, backend_port, alloc_file=None):
        last = ""
        env = None
        if alloc_file:
            env = {"LD_PRELOAD": os.path.join(self.opts.build_dir, ALLOC_COUNTER), "ALLOC_COUNTER_FILE": alloc_file}
        for _ in range(3):  # a free port can be taken between the check and the bind
            port = free_port()
            proc = Process(target, self.proxy_argv(target, port, backend_port), self.work, env)
            if wait_tcp(port, proc.proc, 10):
                return proc, port
            last = proc.describe_failure()
            proc.stop()
        raise BenchError(f"{target} did not start: {last}")

    def loadgen(self, mode, port, args, proxy_pid=0, backend_pid=0, timeout=900):
        argv = [os.path.join(self.bin, "loadgen"), "--mode", mode, "--target", f"127.0.0.1:{port}"]
        for k, v in args.items():
            argv += [f"--{k}", str(v)]
        if proxy_pid:
            argv += ["--proxy-pid", str(proxy_pid)]
        if backend_pid:
            argv += ["--backend-pid", str(backend_pid)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "first_error": f"loadgen timed out after {timeout} s"}
        lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
        if not lines:
            return {"ok": False, "first_error": f"loadgen exit {done.returncode}: {done.stderr.strip()[-500:]}"}
        return json.loads(lines[-1])

    # ---- one measurement ----

    def measure(self, rep, number, target):
        sc = SCENARIOS[number]
        args = dict(sc["args"])
        if self.opts.quick:
            args.update(sc["quick"])
        alloc_file = os.path.join(self.work, f"alloc-counts-{rep}-{number}") if sc.get("alloc_counter") else None
        if alloc_file:
            args["proxy-alloc-file"] = alloc_file
        backend, backend_port = self.start_backend()
        proxy = None
        try:
            port, proxy_pid = backend_port, 0
            if target != "direct":
                proxy, port = self.start_proxy(target, backend_port, alloc_file)
                proxy_pid = proxy.pid
            probe = self.loadgen("probe", port, {"duration": 10})
            if not probe.get("ok"):
                raise BenchError(f"{target}: a Config RPC through it fails: {probe.get('first_error')}")
            result = self.loadgen(sc["mode"], port, args, proxy_pid, backend.pid)
            if proxy is not None and proxy.proc.poll() is not None:
                result["ok"] = False
                result["first_error"] = f"{target} died: " + proxy.describe_failure()
            if alloc_file and result.get("ok"):
                # The smoke run checks that the counter works (it counted the window's
                # allocations), never how many there were.
                counted = (result.get("proxy") or {}).get("allocations")
                if counted is None or not result.get("rpcs"):
                    result["ok"] = False
                    result["first_error"] = (f"the counting allocator reported nothing ({ALLOC_COUNTER} not "
                                             f"loaded into {target}, or no RPC in the window)")
                else:
                    result["allocs_per_rpc"] = counted / result["rpcs"]
                    result["frees_per_rpc"] = result["proxy"]["frees"] / result["rpcs"]
                    result["alloc_bytes_per_rpc"] = result["proxy"]["alloc_bytes"] / result["rpcs"]
            return result
        finally:
            if proxy is not None:
                proxy.stop()
            backend.stop()

    def run(self):
        targets = self.opts.targets
        for rep in range(self.opts.reps):
            for number in self.opts.scenarios:
                shift = rep % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    if target == "direct" and SCENARIOS[number].get("no_direct"):
                        continue
                    if target not in SCENARIOS[number].get("only", (target,)):
                        continue
                    t0 = time.monotonic()
                    try:
                        result = self.measure(rep, number, target)
                    except BenchError as e:
                        result = {"ok": False, "first_error": str(e)}
                    result.update(rep=rep, scenario=number, target=target)
                    self.runs.append(result)
                    status = "ok" if result.get("ok") else "FAILED: " + str(result.get("first_error"))[:2000]
                    log(f"rep {rep + 1}/{self.opts.reps} scenario {number} {target}: "
                        f"{headline(result)} ({time.monotonic() - t0:.1f} s) {status}")
                    if not result.get("ok"):
                        self.failures.append(f"scenario {number} {target} rep {rep + 1}: {result.get('first_error')}")


# ---- figures ----

def cpu_per(run, count, scale):
    proxy = run.get("proxy")
    if not proxy or not count:
        return None
    return proxy["cpu_s"] / count * scale


def metrics(run):
    """The figures of one run, by name."""
    if not run.get("ok"):
        return {}
    mode = run.get("mode")
    proxy = run.get("proxy") or {}
    out = {}
    if "allocs_per_rpc" in run:
        out.update(allocs_per_rpc=run["allocs_per_rpc"], frees_per_rpc=run["frees_per_rpc"],
                   alloc_bytes_per_rpc=run["alloc_bytes_per_rpc"])
    if mode == "closed":
        lat = run.get("latency_us", {})
        out.update(rps=run["rps"], mean_us=lat.get("mean"), p50_us=lat.get("p50"), p99_us=lat.get("p99"),
                   p999_us=lat.get("p999"), cpu_us_per_rpc=cpu_per(run, run["rpcs"], 1e6))
    elif mode == "stream":
        out.update(gbps=run["gbps"], cpu_ms_per_gib=cpu_per(run, run["bytes"] / GIB, 1e3))
    elif mode == "churn":
        lat = run.get("session_latency_us", {})
        out.update(sessions_per_s=run["sessions_per_s"], rps=run["rps"], session_p50_ms=lat.get("p50", 0) / 1e3,
                   session_p99_ms=lat.get("p99", 0) / 1e3, cpu_us_per_rpc=cpu_per(run, run["rpcs"], 1e6),
                   cpu_ms_per_session=cpu_per(run, run["sessions"], 1e3))
    elif mode == "idle":
        out.update(rss_per_conn_kib=proxy.get("rss_per_connection_kib"),
                   rss_mib=proxy.get("rss_kib", 0) / 1024, setup_s=run.get("setup_s"))
    if proxy.get("hwm_kib") is not None:
        out["hwm_mib"] = proxy["hwm_kib"] / 1024
    return {k: v for k, v in out.items() if v is not None}


def headline(run):
    m = metrics(run)
    keys = ["allocs_per_rpc", "rps", "mean_us", "gbps", "cpu_us_per_rpc", "cpu_ms_per_gib", "rss_per_conn_kib", "sessions_per_s"]
    return " ".join(f"{k}={m[k]:.4g}" for k in keys if k in m)


def summarize(runs):
    """{scenario: {target: {metric: median}}}"""
    grouped = {}
    for run in runs:
        for name, value in metrics(run).items():
            grouped.setdefault(run["scenario"], {}).setdefault(run["target"], {}).setdefault(name, []).append(value)
    return {s: {t: {m: statistics.median(v) for m, v in ms.items()} for t, ms in ts.items()}
            for s, ts in grouped.items()}


# (scenario, metric, label, format)
ROWS = [
    (1, "mean_us", "1. unary, 1 stream: mean latency (µs)", "{:.0f}"),
    (1, "p50_us", "1. unary, 1 stream: p50 / p99 / p99.9 latency (µs)", None),
    (1, "added_us", "1. unary, 1 stream: mean latency added over direct (µs)", "{:.0f}"),
    (1, "cpu_us_per_rpc", "1. unary, 1 stream: proxy CPU per RPC (µs)", "{:.1f}"),
    (2, "rps", "2. unary, 64 streams / 8 conns: RPC/s", "{:.0f}"),
    (2, "p50_us", "2. unary, 64 streams / 8 conns: p50 / p99 / p99.9 latency (µs)", None),
    (2, "cpu_us_per_rpc", "2. unary, 64 streams / 8 conns: proxy CPU per RPC (µs)", "{:.1f}"),
    (2, "hwm_mib", "2. unary, 64 streams / 8 conns: proxy peak RSS (MiB)", "{:.1f}"),
    (3, "gbps", "3. ExecutePlan 4 × 1 GiB: throughput (GB/s)", "{:.2f}"),
    (3, "cpu_ms_per_gib", "3. ExecutePlan 4 × 1 GiB: proxy CPU per GiB (ms)", "{:.0f}"),
    (3, "hwm_mib", "3. ExecutePlan 4 × 1 GiB: proxy peak RSS (MiB)", "{:.1f}"),
    (4, "rss_per_conn_kib", "4. idle connections: proxy RSS per connection (KiB)", "{:.1f}"),
    (4, "rss_mib", "4. idle connections: proxy RSS with all open (MiB)", "{:.1f}"),
    (5, "sessions_per_s", "5. session churn: sessions/s", "{:.0f}"),
    (5, "rps", "5. session churn: RPC/s", "{:.0f}"),
    (5, "session_p50_ms", "5. session churn: session p50 / p99 (ms)", None),
    (5, "cpu_us_per_rpc", "5. session churn: proxy CPU per RPC (µs)", "{:.1f}"),
    (5, "hwm_mib", "5. session churn: proxy peak RSS (MiB)", "{:.1f}"),
    (6, "rps", "6. unary, 1,000 streams / 8 conns: RPC/s", "{:.0f}"),
    (6, "collapse", "6. unary, 1,000 streams / 8 conns: RPC/s vs 64 streams", "{:.2f}"),
    (6, "p99_us", "6. unary, 1,000 streams / 8 conns: p99 latency (ms)", None),
    (6, "cpu_us_per_rpc", "6. unary, 1,000 streams / 8 conns: proxy CPU per RPC (µs)", "{:.1f}"),
    (7, "allocs_per_rpc", "7. unary, defaults (access log, metrics): heap allocations per RPC", "{:.1f}"),
    (7, "frees_per_rpc", "7. unary, defaults (access log, metrics): frees per RPC", "{:.1f}"),
    (7, "alloc_bytes_per_rpc", "7. unary, defaults (access log, metrics): bytes allocated per RPC", "{:.0f}"),
]


def cell(summary, scenario, metric, target, fmt):
    m = summary.get(scenario, {}).get(target, {})
    direct = summary.get(scenario, {}).get("direct", {})
    if metric == "added_us":
        if target == "direct" or "mean_us" not in m or "mean_us" not in direct:
            return "–"
        return fmt.format(m["mean_us"] - direct["mean_us"])
    if metric == "collapse":
        base = summary.get(2, {}).get(target, {}).get("rps")
        return fmt.format(m["rps"] / base) if base and "rps" in m else "–"
    if metric == "p50_us" and "p50_us" in m:
        return f"{m['p50_us']:.0f} / {m['p99_us']:.0f} / {m['p999_us']:.0f}"
    if metric == "session_p50_ms" and metric in m:
        return f"{m['session_p50_ms']:.1f} / {m['session_p99_ms']:.1f}"
    if metric == "p99_us" and scenario == 6 and metric in m:
        return f"{m['p99_us'] / 1e3:.1f}"
    if metric not in m:
        return "–"
    return fmt.format(m[metric])


def table(summary, scenarios, targets):
    lines = ["| scenario: figure | " + " | ".join(targets) + " |",
             "|---|" + "---|" * len(targets)]
    for scenario, metric, label, fmt in ROWS:
        if scenario not in scenarios:
            continue
        cells = [cell(summary, scenario, metric, t, fmt) for t in targets]
        if all(c == "–" for c in cells):
            continue
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio(a, b):
    """a / b, or None when either is missing or b is 0 (a smoke run's windows can hold no
    10 ms CPU tick, so a CPU figure of 0 is no figure)."""
    if a is None or not b:
        return None
    return a / b


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def targets_report(summary, scenarios=tuple(range(1, 8))):
    """Where sparkgate (the `sparkgate` target: its defaults, --workers 1) stands against
    each target of issue 15, from the same run: one line per target, met or missed with the
    figures, or "not judged" when a figure is missing or 0. A line is printed when the
    scenarios it needs were part of the run."""
    out = []

    def get(s, t, m):
        return summary.get(s, {}).get(t, {}).get(m)

    def best(s, m, pick):
        # A figure of 0 is no figure (the quick run's windows can hold no CPU tick): it
        # cannot be a best peer, and would divide by zero below.
        values = {p: get(s, p, m) for p in PEERS if get(s, p, m)}
        if not values:
            return None, None
        p = pick(values, key=values.get)
        return p, values[p]

    def verdict(ok):
        if ok is None:
            return "not judged (a figure is missing or 0)"
        return "met" if ok else "missed"

    def line(text, ok):
        out.append(f"- {text} — {verdict(ok)}.")

    def peer_text(peer, value, spec, unit):
        return f"best peer {peer} {value:{spec}} {unit}" if peer else "best peer –"

    def judge(s, m, pick, factor, better, label, target, spec, unit):
        """sparkgate's figure against factor × the best peer's; better is min (lower is
        better) or max."""
        sg = get(s, "sparkgate", m)
        peer, value = best(s, m, pick)
        r = ratio(sg, value) if sg else None
        ok = None if r is None else (r <= factor if better is min else r >= factor)
        line(f"{label} (target {target}): sparkgate {fmt(sg, spec)} {unit}, {peer_text(peer, value, spec, unit)} "
             f"→ ratio {fmt(r, '.2f')}", ok)

    if 2 in scenarios:
        judge(2, "cpu_us_per_rpc", min, 0.8, min, "Unary CPU per RPC, 64 streams",
              "≤ 0.8 × best peer", ".1f", "µs")
        judge(2, "rps", max, 1.0, max, "Unary RPC/s, 64 streams", "≥ best peer", ".0f", "RPC/s")
    if 1 in scenarios:
        direct, sg = get(1, "direct", "mean_us"), get(1, "sparkgate", "mean_us")
        added = {p: get(1, p, "mean_us") - direct for p in PEERS
                 if direct is not None and get(1, p, "mean_us") is not None}
        sg_added = sg - direct if sg is not None and direct is not None else None
        peer = min(added, key=added.get) if added else None
        peer_added = added.get(peer)
        # A peer can come out faster than direct in a noisy run: then nothing is added to
        # halve, and the ratio has no meaning (the verdict still compares the figures).
        r = ratio(sg_added, peer_added) if peer_added and peer_added > 0 else None
        ok = None if sg_added is None or peer_added is None else sg_added <= 0.5 * peer_added
        line(f"Latency added over direct, 1 stream (target ≤ 0.5 × best peer): sparkgate {fmt(sg_added, '.0f')} µs "
             f"(mean {fmt(sg, '.0f')} µs, direct {fmt(direct, '.0f')} µs), "
             f"{peer_text(peer, peer_added, '.0f', 'µs') if peer_added is not None else 'best peer –'} "
             f"→ ratio {fmt(r, '.2f')}", ok)
    if 3 in scenarios:
        sg, d = get(3, "sparkgate", "gbps"), get(3, "direct", "gbps")
        peer, value = best(3, "gbps", max)
        r_peer, r_direct = ratio(sg, value), ratio(sg, d)
        ok = None if r_peer is None or r_direct is None else (r_peer >= 1.5 and r_direct >= 0.8)
        line(f"Streaming throughput (target ≥ 1.5 × best peer and ≥ 0.8 × direct): sparkgate {fmt(sg, '.2f')} GB/s, "
             f"{peer_text(peer, value, '.2f', 'GB/s')} → ratio {fmt(r_peer, '.2f')}; direct {fmt(d, '.2f')} GB/s → "
             f"{fmt(r_direct, '.2f')} × direct", ok)
        judge(3, "cpu_ms_per_gib", min, 0.7, min, "Streaming CPU per GiB", "≤ 0.7 × best peer", ".0f", "ms")
    if 4 in scenarios:
        sg = get(4, "sparkgate", "rss_per_conn_kib")
        peer, value = best(4, "rss_per_conn_kib", min)
        line(f"RSS per idle connection (target ≤ 6 KiB): sparkgate {fmt(sg, '.1f')} KiB per connection with its "
             f"session, {peer_text(peer, value, '.1f', 'KiB')}", None if sg is None else sg <= 6)
    if 2 in scenarios and 6 in scenarios:
        r2, r6 = get(2, "sparkgate", "rps"), get(6, "sparkgate", "rps")
        r = ratio(r6, r2)
        line(f"1,000 concurrent streams, no collapse (target: RPC/s at 1,000 streams within 20% of 64 streams): "
             f"sparkgate {fmt(r6, '.0f')} RPC/s at 1,000 vs {fmt(r2, '.0f')} at 64 → {fmt(r, '.2f')}",
             None if r is None else r >= 0.8)
    if 7 in scenarios:
        a = get(7, "sparkgate", "allocs_per_rpc")
        b = get(7, "sparkgate", "alloc_bytes_per_rpc")
        if a is not None:
            # Reported, as the issue asks (target 0, or the floor and why: RESULTS.md).
            line(f"Heap allocations per unary RPC after warm-up, scenario 7 (target 0, or the floor and why): "
                 f"sparkgate {a:.1f} allocations, {fmt(b, '.0f')} bytes per RPC", a == 0)
    return "\n".join(out)


REPORT_HEADING = ("Where sparkgate stands against the targets of issue 15 (target `sparkgate`: its defaults, "
                  "access log and metrics on, --workers 1; same run):")
WORKERS_TARGET = "sparkgate-workers-default"
# The figures of the "--workers default vs 1" table: ROWS' rows, with their format specs.
WORKERS_FIGURES = {(2, "rps"), (2, "cpu_us_per_rpc"), (3, "gbps"), (3, "cpu_ms_per_gib"), (6, "rps"),
                   (6, "cpu_us_per_rpc")}
WORKERS_ROWS = [(scenario, metric, label, fmt[2:-1]) for scenario, metric, label, fmt in ROWS
                if (scenario, metric) in WORKERS_FIGURES]


def workers_table(summary, targets):
    """sparkgate without --workers (one worker per core) beside --workers 1, both at the
    defaults; empty unless both targets ran."""
    if "sparkgate" not in targets or WORKERS_TARGET not in targets:
        return ""
    lines = [f"--workers default vs 1 (sparkgate at its defaults; default = one worker per core, "
             f"{os.cpu_count()} here):", "",
             "| scenario: figure | `--workers 1` | `--workers` default | default / 1 |", "|---|---|---|---|"]
    for scenario, metric, label, spec in WORKERS_ROWS:
        one = summary.get(scenario, {}).get("sparkgate", {}).get(metric)
        dflt = summary.get(scenario, {}).get(WORKERS_TARGET, {}).get(metric)
        if one is None and dflt is None:
            continue
        lines.append(f"| {label} | {fmt(one, spec)} | {fmt(dflt, spec)} | {fmt(ratio(dflt, one), '.2f')} |")
    return "\n".join(lines) if len(lines) > 4 else ""


def tool_versions(opts):
    def first_line(argv):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unavailable"
    return {
        "sparkgate": first_line([opts.sparkgate_bin or os.path.join(opts.build_dir, "gateway", "sparkgate"), "--version"]),
        "nghttpx": first_line(["nghttpx", "--version"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "nginx": first_line(["nginx", "-v"]),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--scenarios", default=",".join(str(s) for s in SCENARIOS))
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="result file (default: BUILD/bench-results/bench-TIME.json)")
    parser.add_argument("--command", default="", help="the command line to record")
    parser.add_argument("--sparkgate-bin", help="the sparkgate binary to measure (default: BUILD/gateway/sparkgate); "
                        "for before/after comparisons of a change")
    parser.add_argument("--sparkgate-base-bin", help="the binary of the target sparkgate-base (an earlier build, "
                        "measured interleaved with sparkgate)")
    opts = parser.parse_args()
    opts.scenarios = [int(s) for s in opts.scenarios.split(",") if s]
    opts.targets = [t for t in opts.targets.split(",") if t]
    for s in opts.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s}; known: {sorted(SCENARIOS)}")
    for t in opts.targets:
        if t not in TARGETS and t not in SPARKGATE_TARGETS:
            parser.error(f"unknown target {t}; known: {TARGETS + [k for k in SPARKGATE_TARGETS if k not in TARGETS]}")
    if "sparkgate-base" in opts.targets and not opts.sparkgate_base_bin:
        parser.error("the target sparkgate-base needs --sparkgate-base-bin")
    if opts.quick:
        opts.reps = 1

    started = datetime.datetime.now(datetime.timezone.utc)
    bench = Bench(opts)
    t0 = time.monotonic()
    try:
        bench.run()
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    summary = summarize(bench.runs)
    md_table = table(summary, opts.scenarios, opts.targets)
    report = targets_report(summary, opts.scenarios)
    workers = workers_table(summary, opts.targets)

    stamp = started.strftime("%Y%m%d-%H%M%S")
    path = opts.json or os.path.join(opts.build_dir, "bench-results", f"bench-{stamp}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "command": opts.command,
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "versions": tool_versions(opts),
        "reps": opts.reps,
        "quick": opts.quick,
        "scenarios": {s: dict(title=SCENARIOS[s]["title"], mode=SCENARIOS[s]["mode"],
                              args={**SCENARIOS[s]["args"], **(SCENARIOS[s]["quick"] if opts.quick else {})})
                      for s in opts.scenarios},
        "summary": summary,
        "targets": report.splitlines(),
        "workers": workers.splitlines(),
        "failures": bench.failures,
        "runs": bench.runs,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    md_path = os.path.splitext(path)[0] + ".md"
    with open(md_path, "w") as f:
        f.write(f"{md_table}\n\n" + (f"{REPORT_HEADING}\n\n{report}\n" if report else "")
                + (f"\n{workers}\n" if workers else ""))

    print()
    print(f"sparkgate benchmarks, {started:%Y-%m-%d %H:%M} UTC, {opts.reps} repetition(s), medians"
          f"{' (quick smoke run: tiny sizes, figures mean nothing)' if opts.quick else ''}")
    print()
    print(md_table)
    print()
    if report:
        print(REPORT_HEADING)
        print()
        print(report)
        print()
    if workers:
        print(workers)
        print()
    print(f"JSON: {path}")
    print(f"Markdown: {md_path}")
    # One case per measurement, for tests/run.sh's count (a smoke run: did it work?).
    worked = sum(1 for r in bench.runs if r.get("ok"))
    print(f"bench: {worked} passed, {len(bench.runs) - worked} failed")
    if bench.failures:
        print(f"\n{len(bench.failures)} measurement(s) did not work:")
        for f in bench.failures:
            print(f"  - {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
