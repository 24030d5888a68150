#!/usr/bin/env bash
# Benchmarks sparkgate against a direct connection and against nghttpx, HAProxy and nginx
# as h2c gRPC pass-throughs to the same fake backend (issues 6 and 15). See
# tests/bench/RESULTS.md.
#
#   tests/bench/run.sh [--quick] [--scenarios 1,3] [--reps N] [--targets direct,sparkgate,...]
#                      [--json FILE] [--build-dir DIR] [--no-install] [--callgrind]
#
#   --quick       tiny sizes, one repetition: the ~10 s smoke run (tests/bench/smoke.sh)
#   --scenarios   which of 1..7 to run (default: all)
#                   1 unary Config, concurrency 1          4 10,000 idle connections
#                   2 unary Config, 64 streams / 8 conns    5 session churn, 20,000 x 4 RPCs
#                   3 ExecutePlan, 4 x 1 GiB streams        6 unary Config, 1,000 streams
#                   7 heap allocations per unary RPC (sparkgate only, at its defaults,
#                     under the counting allocator tests/bench/alloc_counter.so)
#   --reps N      repetitions, interleaved; figures are medians (default 3)
#   --targets     subset of direct,sparkgate,nghttpx,haproxy,nginx (the default list);
#                 sparkgate is at its defaults (access log, metrics on) with --workers 1.
#                 Variants, only when named: sparkgate-nolog (access log off),
#                 sparkgate-workers-default (no --workers: one per core; with sparkgate
#                 it adds a "--workers default vs 1" table), sparkgate-trace0/-trace1
#   --json FILE   where to write the results (default BUILD/bench-results/bench-TIME.json;
#                 a .md with the table is written next to it)
#   --build-dir   meson build directory, set up with --buildtype=release if it is not
#                 (default: build-image/src/build, the image's build: the build stage of
#                 deploy/docker/Dockerfile run on this host by tests/deploy/image_build.py,
#                 which the deploy suite checks, so CI makes one release build, not two;
#                 with --callgrind: build-bench, not stripped)
#   --sparkgate-bin  measure this sparkgate binary instead of the build's (before/after
#                 comparisons: build the old commit elsewhere and pass its binary)
#   --sparkgate-base-bin BIN  the binary of the target sparkgate-base, measured
#                 interleaved with sparkgate (--targets sparkgate-base,sparkgate,...)
#   --no-install  do not apt-get the peers (fail if one is missing)
#   --callgrind   instead of the benchmark: profile sparkgate under valgrind's callgrind on
#                 scenarios 2 and 3 (small sizes) and print its top functions
#                 (tests/bench/profile.py; installs valgrind if missing)
#   --callgrind-args "ARGS"  more arguments for profile.py, e.g. "--loads unary --defaults"
#                 (sparkgate at its defaults, access log on)
#
# Installs what is missing (Debian nghttp2-proxy, haproxy, nginx; apt-get update once),
# builds, raises the open-files limit, then runs tests/bench/bench.py. Exits non-zero only
# if something does not work (a process does not start, an RPC fails), never on a timing.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build=""
install=1
callgrind=0
callgrind_args=()
quick=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; args+=(--quick); shift ;;
    --scenarios|--reps|--targets|--json|--sparkgate-bin|--sparkgate-base-bin) args+=("$1" "$2"); shift 2 ;;
    --build-dir) build="$(realpath -m "$2")"; shift 2 ;;
    --no-install) install=0; shift ;;
    --callgrind) callgrind=1; shift ;;
    --callgrind-args) callgrind_args+=($2); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) echo "tests/bench/run.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { printf '[bench] %s\n' "$*" >&2; }

apt_install() {
  # apt_install PACKAGE... — installs those not installed yet; apt-get update once.
  local missing=() p status
  for p in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "installed" ] || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$install" -eq 0 ]; then
    log "missing Debian packages: ${missing[*]} (and --no-install was given)"
    return 1
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: cannot install ${missing[*]}"; return 1; }
    sudo=(sudo -n)
  fi
  log "apt: installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# The peers. Debian's packages do not start their services in a container; if a system
# nginx or haproxy runs anyway, it is left alone: the benchmark starts its own on free ports.
apt_install nghttp2-proxy haproxy nginx
[ "$callgrind" -eq 0 ] || apt_install valgrind

cd "$repo"
if [ -z "$build" ] && [ "$callgrind" -eq 0 ]; then
  # The image's own build (meson setup --buildtype=release build, ninja, strip: exactly
  # what the Dockerfile runs), incremental after the first run.
  log "the build stage of deploy/docker/Dockerfile in build-image/ (tests/deploy/image_build.py)"
  python3 "$repo/tests/deploy/image_build.py" --dir "$repo/build-image" >&2
  build="$repo/build-image/src/build"
fi
[ -n "$build" ] || build="$repo/build-bench"
if [ ! -f "$build/build.ninja" ]; then
  log "meson setup $build (release)"
  meson setup "$build" --buildtype=release >/dev/null
fi
log "ninja -C $build"
ninja -C "$build" gateway/sparkgate tests/bench/bench_backend tests/bench/loadgen tests/bench/alloc_counter.so >/dev/null

# 10,000 idle connections need as many descriptors in the load generator and the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 10100 ] && [ "$quick" -eq 0 ]; then
  log "warning: the open-files limit is $(ulimit -n); scenario 4 needs about 10,100"
fi

if [ "$callgrind" -eq 1 ]; then
  profile_args=()
  for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = "--sparkgate-bin" ] && profile_args+=(--sparkgate-bin "${args[$((i + 1))]}")
  done
  exec python3 "$repo/tests/bench/profile.py" --build-dir "$build" "${profile_args[@]}" "${callgrind_args[@]}"
fi

exec python3 "$repo/tests/bench/bench.py" --build-dir "$build" --command "tests/bench/run.sh ${args[*]:-}" "${args[@]}"
