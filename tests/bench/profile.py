#!/usr/bin/env python3
"""Profiles sparkgate's hot path with valgrind's callgrind; started by
`tests/bench/run.sh --callgrind`.

For the unary load of scenario 2 (Config, 64 streams over 8 connections) and the
streaming load of scenario 3 (4 ExecutePlan streams of 4 MiB messages, smaller), it runs
sparkgate --workers 1 under callgrind with collection off, switches collection on only
for the load (callgrind_control -i on), and prints instructions per RPC (per GiB) and the
functions with the largest self and inclusive costs. Instruction counts are stable on a
shared machine, unlike times. The callgrind files are kept (path printed) for
callgrind_annotate or kcachegrind.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory)

LOADS = {
    "unary": dict(mode="closed", args=dict(concurrency=64, channels=8, warmup=0, duration=20)),
    "stream": dict(mode="stream", args=dict(streams=4, channels=4, messages=32, **{"message-bytes": 4 * bench.MIB})),
}


def top(out_file, inclusive, count):
    argv = ["callgrind_annotate", "--threshold=100", out_file]
    if inclusive:
        argv.insert(1, "--inclusive=yes")
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    total = None
    rows = []
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(\S.*?)\s*(?:\[.*\])?$", line)
        if m and total and ":" in m.group(2):
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    return total, rows[:count]


def shorten(name, width=110):
    name = re.sub(r"^\S*?:", "", name, count=1) if name.startswith(("/", "?", ".")) else name
    return name if len(name) <= width else name[: width - 1] + "…"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--loads", default="unary,stream")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sparkgate-bin", help="the sparkgate binary to profile (default: BUILD/gateway/sparkgate)")
    parser.add_argument("--defaults", action="store_true",
                        help="sparkgate at its default settings (access log on: bench.py's target sparkgate) "
                             "instead of the same with the access log off (target sparkgate-nolog)")
    opts = parser.parse_args()
    keep = tempfile.mkdtemp(prefix="sparkgate-callgrind-")
    runner = bench.Bench(argparse.Namespace(build_dir=opts.build_dir, quick=False, sparkgate_bin=opts.sparkgate_bin))
    failed = False
    for name in opts.loads.split(","):
        load = LOADS[name]
        backend, backend_port = runner.start_backend()
        port = bench.free_port()
        # bench.py's target: `sparkgate` is the defaults, `sparkgate-nolog` the same with the access log off.
        argv = runner.proxy_argv("sparkgate" if opts.defaults else "sparkgate-nolog", port, backend_port)
        out_file = os.path.join(keep, f"callgrind.{name}.out")
        proxy = bench.Process("sparkgate-callgrind", [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
            *argv], runner.work)
        try:
            if not bench.wait_tcp(port, proxy.proc, 120):
                raise bench.BenchError("sparkgate did not start under valgrind: " + proxy.describe_failure())
            probe = runner.loadgen("probe", port, {"duration": 60})
            if not probe.get("ok"):
                raise bench.BenchError("Config through sparkgate under valgrind fails: " + str(probe))
            subprocess.run(["callgrind_control", "-i", "on", str(proxy.pid)], capture_output=True, check=True)
            result = runner.loadgen(load["mode"], port, load["args"], proxy.pid, backend.pid)
            subprocess.run(["callgrind_control", "-i", "off", str(proxy.pid)], capture_output=True)
            if not result.get("ok"):
                raise bench.BenchError("load failed: " + str(result.get("first_error")))
        except bench.BenchError as e:
            print(f"{name}: {e}", file=sys.stderr)
            failed = True
            continue
        finally:
            proxy.stop()
            proxy.proc.wait()
            backend.stop()
        total, self_rows = top(out_file, False, opts.top)
        _, incl_rows = top(out_file, True, opts.top)
        if name == "unary":
            unit, per = "RPC", total / max(result["rpcs"], 1)
            extra = f"{result['rpcs']} RPCs at {result['rps']:.0f} RPC/s under valgrind"
        else:
            unit, per = "GiB", total / (result["bytes"] / bench.GIB)
            extra = f"{result['bytes'] / bench.MIB:.0f} MiB streamed"
        print(f"\n## callgrind: sparkgate, {name} load ({extra})\n")
        print(f"{total:,} instructions collected: {per:,.0f} per {unit}\n")
        for title, rows in (("self", self_rows), ("inclusive", incl_rows)):
            print(f"| {title} Ir | % | function |\n|---:|---:|---|")
            for ir, fn in rows:
                print(f"| {ir:,} | {100 * ir / total:.1f} | `{shorten(fn)}` |")
            print()
        print(f"callgrind file: {out_file}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
