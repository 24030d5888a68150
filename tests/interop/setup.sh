#!/usr/bin/env bash
# Installs and builds everything the interoperability matrix needs. Idempotent: every step
# is skipped when its result is already in place (stamp files record what was installed).
#
#   tests/interop/setup.sh [--no-install-deps]
#
# 1. deploy/install-deps.sh --no-build (Debian packages, .venv/server = Spark 4.x server),
#    unless --no-install-deps; then the gateway binary (build/gateway/sparkgate) if it is
#    missing and SPARKGATE_BIN does not name one.
# 2. Debian packages for the JVM and Go clients (JDK 17 with javac, Maven), and a Go
#    toolchain from the Go module proxy if `go` is missing or too old.
# 3. Virtualenvs under .venv/ (gitignored):
#      interop-pyspark4   PyPI pyspark-client 4.x (the PySpark 4.x client)
#      interop-pyspark35  PyPI pyspark[connect] 3.5.x (the PySpark 3.5 client)
#      interop-server35   PyPI pyspark 3.5.x (the Spark 3.5 server)
# 4. The Spark 3.5 Connect server jar from Maven Central, into .venv/interop-jars/.
# 5. The Go client program (tests/interop/go) and the JVM client program
#    (tests/interop/jvm, Maven), built into .venv/interop-build/.
#
# Environment: PYTHON (default python3) for the venvs; MAVEN_REPO_LOCAL to use another
# Maven repository than ~/.m2/repository.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.sh
. "$here/versions.sh"

install_deps=1
for arg in "$@"; do
  case "$arg" in
    --no-install-deps) install_deps=0 ;;
    -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[interop-setup] %s\n' "$*" >&2; }
venvs="$repo/.venv"
out="$venvs/interop-build"
mkdir -p "$venvs" "$out"

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo -n); fi

apt_install() {
  local missing=() p status
  for p in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [ "$status" = "installed" ] || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  log "apt: installing ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------------------
# 1. The repository's own dependencies, the Spark 4.x server venv, the gateway
# ---------------------------------------------------------------------------------------
if [ "$install_deps" -eq 1 ]; then
  bash "$repo/deploy/install-deps.sh" --no-build
fi
if [ -z "${SPARKGATE_BIN:-}" ] && [ ! -x "$repo/build/gateway/sparkgate" ]; then
  log "building the gateway (ninja -j2 -C build gateway/sparkgate)"
  ( cd "$repo" && { [ -f build/build.ninja ] || meson setup build; } && ninja -j2 -C build gateway/sparkgate )
fi

# ---------------------------------------------------------------------------------------
# 2. JDK, Maven, openssl, Go
# ---------------------------------------------------------------------------------------
need=(openssl unzip)
command -v ip >/dev/null 2>&1 || need+=(iproute2)  # run.sh brings up lo in its network namespace
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
apt_install "${need[@]}"

go_ok() {
  # go_ok GO — true if GO runs and is at least go1.$GO_MIN_MINOR
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  [[ "$v" =~ ^go1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge "$GO_MIN_MINOR" ]
}
go_bin="$(command -v go || true)"
if [ -z "$go_bin" ] || ! go_ok "$go_bin"; then
  go_root="$venvs/interop-go/go"
  if ! go_ok "$go_root/bin/go"; then
    # The Go toolchain is published as a module (golang.org/toolchain) on the proxy; this is
    # what `GOTOOLCHAIN=auto` downloads.
    arch="$(dpkg --print-architecture)"
    zip="$venvs/interop-go/toolchain.zip"
    log "go: fetching $GO_TOOLCHAIN.linux-$arch from the Go module proxy"
    rm -rf "$venvs/interop-go" && mkdir -p "$venvs/interop-go"
    curl -fsSL -o "$zip" \
      "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$arch.zip"
    ( cd "$venvs/interop-go" && unzip -q "$zip" && rm -f "$zip" )
    mv "$venvs/interop-go/golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch" "$go_root"
    rm -rf "$venvs/interop-go/golang.org"
    chmod +x "$go_root"/bin/* "$go_root"/pkg/tool/*/* 2>/dev/null || true
  fi
  go_bin="$go_root/bin/go"
fi

# ---------------------------------------------------------------------------------------
# 3. Python virtualenvs
# ---------------------------------------------------------------------------------------
python="${PYTHON:-python3}"
py_version="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"

make_venv() {
  # make_venv NAME REQ... — as in deploy/install-deps.sh: skipped when the stamp records
  # exactly these requirements for this interpreter.
  local name="$1"; shift
  local dir="$venvs/$name" stamp="$venvs/$name/.sparkgate-requirements" want
  want="$(printf 'python %s\n' "$py_version"; printf '%s\n' "$@")"
  if [ -f "$stamp" ] && [ -x "$dir/bin/python" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "venv $name: up to date"
    return
  fi
  rm -rf "$dir"
  log "venv $name: creating with $python ($py_version); pip install $*"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off -q "$@"
  printf '%s\n' "$want" > "$stamp"
}

# The PySpark 4.x client, with the libraries of deploy/install-deps.sh's client venv.
make_venv interop-pyspark4 "pyspark-client==$PYSPARK4_CLIENT_VERSION" \
  "pandas==2.3.3" "pyarrow==26.0.1" "numpy==2.3.5" \
  "grpcio==1.85.3" "grpcio-status==1.85.3" "googleapis-common-protos==1.76.0" \
  "protobuf==6.33.6" "zstandard==0.25.0"
# PySpark 3.5's generated protobuf code and its Arrow/pandas conversions are from the
# numpy 1 / protobuf 4 era; these are versions Spark 3.5 was tested with.
py35_libs=("pandas==2.2.3" "pyarrow==17.0.0" "numpy==1.26.4"
           "grpcio==1.62.3" "grpcio-status==1.62.3" "googleapis-common-protos==1.65.0"
           "protobuf==4.25.5")
make_venv interop-pyspark35 "pyspark[connect]==$PYSPARK35_CLIENT_VERSION" "${py35_libs[@]}"
# The Spark 3.5 server (spark-submit and the jars; the same libraries for its Python UDF workers).
make_venv interop-server35 "pyspark==$SPARK35_VERSION" "${py35_libs[@]}"

# ---------------------------------------------------------------------------------------
# 4. The Spark 3.5 Connect server jar
# ---------------------------------------------------------------------------------------
mvn_args=(-B -q)
if [ -n "${MAVEN_REPO_LOCAL:-}" ]; then mvn_args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL"); fi
jar="$venvs/interop-jars/spark-connect_2.12-$SPARK35_VERSION.jar"
if [ ! -s "$jar" ]; then
  log "maven: org.apache.spark:spark-connect_2.12:$SPARK35_VERSION"
  mkdir -p "$venvs/interop-jars"
  mvn "${mvn_args[@]}" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    "-Dartifact=org.apache.spark:spark-connect_2.12:$SPARK35_VERSION" \
    "-DoutputDirectory=$venvs/interop-jars"
fi
[ -s "$jar" ] || { log "missing $jar"; exit 1; }

# ---------------------------------------------------------------------------------------
# 5. The Go and JVM client programs
# ---------------------------------------------------------------------------------------
newer_than_sources() {
  # newer_than_sources TARGET DIR — true if TARGET exists and no file under DIR is newer
  [ -e "$1" ] && [ -z "$(find "$2" -newer "$1" -type f -not -path '*/target/*' -print -quit)" ]
}
if newer_than_sources "$out/interop-go" "$here/go"; then
  log "go client program: up to date"
else
  log "go client program: go build (github.com/apache/spark-connect-go $GO_CLIENT_VERSION)"
  ( cd "$here/go" && GOPROXY=https://proxy.golang.org GOFLAGS=-mod=mod GOTOOLCHAIN=local \
      "$go_bin" build -o "$out/interop-go" . )
fi

jvm_out="$out/jvm"
if newer_than_sources "$jvm_out/interop-jvm.jar" "$here/jvm" && [ -d "$jvm_out/lib" ]; then
  log "jvm client program: up to date"
else
  log "jvm client program: mvn package (spark-connect-client-jvm_2.13 $JVM_CLIENT_VERSION)"
  rm -rf "$jvm_out"
  mvn "${mvn_args[@]}" -f "$here/jvm/pom.xml" "-Dinterop.out=$jvm_out" \
    "-Dspark.client.version=$JVM_CLIENT_VERSION" package dependency:copy-dependencies
fi
log "ready"
