#!/usr/bin/env bash
# Installs everything sparkgate needs to build and to run its tests, then builds it.
# Idempotent: every step is skipped when its result is already in place.
#
#   deploy/install-deps.sh [--no-build]
#
# 1. Debian packages (apt), only when one of them is missing.
# 2. Two virtualenvs under <repo>/.venv/ (gitignored):
#      .venv/server  PyPI pyspark (bundles the Spark jars; runs the Spark Connect server
#                    and its Python UDF workers)
#      .venv/client  PyPI pyspark-client and what the e2e tests need
#    Each is skipped when its stamp file shows the same requirements were installed.
# 3. The build: `meson setup build` (once), then `ninja -C build`.
#
# Environment: PYTHON (default python3) is the interpreter both venvs are made from, so the
# client and the server's UDF workers always share one Python minor version.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=1
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[install-deps] %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------
apt_packages=(
  meson ninja-build pkg-config ccache  # meson uses ccache by itself: rebuilds of build, build-asan, build-image, build-fuzz
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libboost1.81-dev libboost-json1.81-dev
  libnghttp2-dev libyaml-cpp-dev prometheus-cpp-dev doctest-dev
  libssl-dev zlib1g-dev libzstd-dev libspdlog-dev libcli11-dev
  nghttp2-client
  redis-server  # the Redis session store's integration tests start their own server
  nghttp2-proxy haproxy nginx  # the benchmark's peers (tests/bench/): it starts its own on free ports
  clang libclang-rt-14-dev  # tests/fuzz/: libFuzzer (-fsanitize=fuzzer) and clang's ASan/UBSan runtimes
)

java_major() {
  # Prints the major version of `java` on PATH, or 0 when there is none.
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1 | grep . || echo 0
}
if [ "$(java_major)" -lt 17 ]; then
  apt_packages+=(openjdk-17-jre-headless)
fi

missing=()
for p in "${apt_packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "not root and no sudo: cannot install ${missing[*]}"; exit 1; }
    sudo=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "apt: all packages present"
fi

# ---------------------------------------------------------------------------------------
# 2. Python virtualenvs
# ---------------------------------------------------------------------------------------
# Pinned versions that exist on PyPI. Client and server share the minor version (4.2);
# the server must be at least as new as the client. protobuf stays on the major version
# pyspark's generated code was made with (6.x), so its runtime check stays quiet.
# pandas < 3: pyspark 4.2 warns on pandas 3.
server_reqs=(
  "pyspark==4.2.1"
  # Python UDF workers unpickle what the client pickled; keep the same libraries there.
  "pandas==2.3.3" "pyarrow==26.0.1" "numpy==2.3.5"
  # pyspark's Connect client extras, so that `.venv/server/bin/pyspark --remote sc://...`
  # works as an interactive shell.
  "grpcio==1.85.3" "grpcio-status==1.85.3" "googleapis-common-protos==1.76.0"
  "protobuf==6.33.6" "zstandard==0.25.0"
)
client_reqs=(
  "pyspark-client==4.2.0"
  "pandas==2.3.3" "pyarrow==26.0.1" "numpy==2.3.5"
  "grpcio==1.85.3" "grpcio-status==1.85.3" "googleapis-common-protos==1.76.0"
  "protobuf==6.33.6" "zstandard==0.25.0" "pytest==9.2.0" "pytest-timeout==2.4.0"
)

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || { log "no $python on PATH"; exit 1; }
py_version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

make_venv() {
  # make_venv NAME REQ... — creates <repo>/.venv/NAME and installs REQ unless the stamp
  # already records exactly these requirements for this interpreter version.
  local name="$1"; shift
  local dir="$repo/.venv/$name"
  local stamp="$dir/.sparkgate-requirements"
  local want
  want="$(printf 'python %s\n' "$py_version"; printf '%s\n' "$@")"
  if [ -f "$stamp" ] && [ -x "$dir/bin/python" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "venv $name: up to date"
    return
  fi
  if [ -x "$dir/bin/python" ] && [ "$("$dir/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" != "$py_version" ]; then
    log "venv $name: interpreter changed, recreating"
    rm -rf "$dir"
  fi
  if [ ! -x "$dir/bin/python" ]; then
    log "venv $name: creating with $python ($py_version)"
    "$python" -m venv "$dir"
  fi
  log "venv $name: pip install $*"
  rm -f "$stamp"
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q "$@"
  printf '%s\n' "$want" > "$stamp"
}

# A .venv that is a symlink to nowhere (or to itself) cannot hold the venvs; replace it.
if [[ -L "$repo/.venv" && ! -d "$repo/.venv" ]]; then
  log "replacing .venv: it is a symlink that does not lead to a directory"
  rm -f "$repo/.venv"
fi
mkdir -p "$repo/.venv"
make_venv server "${server_reqs[@]}"
make_venv client "${client_reqs[@]}"

# ---------------------------------------------------------------------------------------
# 3. Build
# ---------------------------------------------------------------------------------------
if [ "$build" -eq 1 ]; then
  cd "$repo"
  if [ ! -f build/build.ninja ]; then
    log "meson setup build"
    meson setup build
  fi
  log "ninja -C build"
  ninja -C build
fi
