#!/usr/bin/env bash
# The interoperability matrix: PySpark 4.x, PySpark 3.5, Go and JVM clients against Spark
# 4.x and Spark 3.5 Connect servers, each directly and through sparkgate.
#
#   tests/interop/run.sh [--no-setup] [--no-install-deps] [--cells a,b,...] [--all] [--keep]
#
# Sets everything up first (tests/interop/setup.sh; --no-setup skips that, --no-install-deps
# skips only its deploy/install-deps.sh step), then runs
# tests/interop/matrix.py, which writes tests/interop/MATRIX.md. Cells are CLIENT-SERVER,
# CLIENT in pyspark4 pyspark35 go jvm, SERVER in spark4 spark35; without --cells/--all the
# CI cells run (pyspark4-spark4, pyspark35-spark35). The last line of output is always
# `N passed, N failed`; the exit status is 0 only if nothing failed.
#
# The matrix runs in a private network namespace (unshare --net) that has only a loopback
# interface: the Spark 3.5 server cannot be told to bind 127.0.0.1 and would otherwise
# listen on every interface. Set INTEROP_ALLOW_WILDCARD_BIND=1 to run without one (then
# the 3.5 server is reachable from the network while it runs).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
setup=1
setup_args=()
args=()
for arg in "$@"; do
  case "$arg" in
    --no-setup) setup=0 ;;
    --no-install-deps) setup_args+=(--no-install-deps) ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done

if [ "$setup" -eq 1 ]; then
  if ! bash "$here/setup.sh" "${setup_args[@]}"; then
    echo "tests/interop/setup.sh failed"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

python="${PYTHON:-python3}"
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
  exec unshare --net env INTEROP_NETNS=1 bash -c 'ip link set lo up && exec "$@"' _ \
    "$python" "$here/matrix.py" "${args[@]}"
elif unshare --net --map-root-user true 2>/dev/null; then
  exec unshare --net --map-root-user env INTEROP_NETNS=1 bash -c 'ip link set lo up && exec "$@"' _ \
    "$python" "$here/matrix.py" "${args[@]}"
else
  echo "[interop] no private network namespace (unshare --net is not permitted here)"
  exec "$python" "$here/matrix.py" "${args[@]}"
fi
