#!/usr/bin/env bash
# Builds Jaeger's all-in-one binary (github.com/jaegertracing/jaeger $JAEGER_VERSION) from
# the Go module proxy into <repo>/.tools/bin/jaeger-all-in-one (gitignored), for
# tests/e2e/test_tracing.py. Skipped when the binary there was built from this version with
# this Go. The module's go.mod has a replace directive, so `go install pkg@version` refuses
# it; the build runs inside the downloaded module instead (read-only module cache, nothing
# written there).
#
#   tests/e2e/jaeger_setup.sh        # prints the binary's path on its last line
set -euo pipefail

JAEGER_VERSION=v1.76.0
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$repo/.tools/bin"
bin="$tools/jaeger-all-in-one"
stamp="$repo/.tools/jaeger-all-in-one.stamp"

# Go: modules from the module proxy only, never a toolchain download.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0
command -v go >/dev/null || { echo "go is not on PATH (deploy/install-deps.sh installs it)" >&2; exit 1; }
want="$JAEGER_VERSION $(go version)"
# tests/run.sh starts this in the background early (niced) so that the build overlaps the
# suites before e2e; the e2e fixture's own call then waits here for that build to finish.
mkdir -p "$tools"
exec 9>"$repo/.tools/jaeger-all-in-one.lock"
flock 9
if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$bin"
  exit 0
fi
rm -f "$stamp"
dir="$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" |
       python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
echo "building jaeger all-in-one $JAEGER_VERSION ($(go version)) from $dir" >&2
t0=$SECONDS
(cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" ./cmd/all-in-one)
mv "$bin.tmp" "$bin"
echo "$want" >"$stamp"
echo "built in $((SECONDS - t0))s" >&2
echo "$bin"
