#!/usr/bin/env bash
# The soak test: the real gateway against fake backends under mixed traffic for a long
# time, with backend restarts, watching the gateway's RSS and file descriptors.
#
#   tests/soak/run.sh [--seconds N] [--sample-every S] [--restart-every S] [--out FILE]
#                     [--build-dir DIR] [any other soak_driver option]
#
# Defaults: 1800 s (30 minutes), a sample every 10 s, a backend restart every 120 s,
# results in DIR/soak/soak-<time>.json and .csv. Builds (ninja) only the three binaries
# it needs in DIR (default: build/, which deploy/install-deps.sh sets up); never runs
# meson setup. Prints the sample table (time, RSS, fds, sessions, RPCs, errors by code)
# as it goes and the summary at the end; exits 0 if every check passed, else non-zero.
# `soak_driver --help` lists the other options (clients, backends, bounds, seed...).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$repo/build"
seconds=1800
sample_every=10
restart_every=120
out=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --sample-every) sample_every="$2"; shift 2 ;;
    --restart-every) restart_every="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-dir) build="$(cd "$2" && pwd)"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done

if [ ! -f "$build/build.ninja" ]; then
  echo "soak: $build is not a meson build directory (run deploy/install-deps.sh first)" >&2
  exit 2
fi
ninja -C "$build" -j"${SOAK_BUILD_JOBS:-2}" tests/soak/soak_driver gateway/sparkgate tests/fakes/fake_spark_server >&2

[ -n "$out" ] || out="$build/soak/soak-$(date -u +%Y%m%dT%H%M%SZ).json"
mkdir -p "$(dirname "$out")"

exec env SPARKGATE_BIN="$build/gateway/sparkgate" FAKE_SPARK_BIN="$build/tests/fakes/fake_spark_server" \
  "$build/tests/soak/soak_driver" --seconds "$seconds" --sample-every "$sample_every" \
  --restart-every "$restart_every" --out "$out" "${extra[@]}"
