#!/usr/bin/env bash
# HTTP/2 conformance of sparkgate's listener: h2spec (github.com/summerwind/h2spec, the
# RFC 7540/9113 and HPACK test suite) against the real gateway binary.
#
#   tests/h2spec/run.sh [--build-dir DIR]
#
# 1. h2spec $H2SPEC_VERSION into <repo>/.tools/bin (gitignored) with `go install` from the
#    Go module proxy, skipped when the binary there was built from that version.
# 2. Starts build/gateway/sparkgate (or SPARKGATE_BIN) on a kernel-chosen port in front of
#    one backend (the fake, build/tests/fakes/fake_spark_server). h2spec's requests are
#    not gRPC (GET /, POST without application/grpc): the gateway answers them itself.
# 3. Runs every h2spec test (not --strict) and reads its JUnit report: one case per h2spec
#    test. A test in EXPECTED_FAILURES must fail (and is then counted as passed: it is
#    known, and explained below); if it passes, the list is stale and it counts as failed.
# The last line is always `N passed, N failed`; h2spec's skipped tests count in neither
# (they are listed). Exit status 0 when nothing failed.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
build="$repo/build"
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build="$(realpath -m "$2")"; shift 2 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "tests/h2spec/run.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

H2SPEC_MODULE=github.com/summerwind/h2spec
# The newest release on the module proxy (it has no go.mod, hence +incompatible).
H2SPEC_VERSION=v2.2.1+incompatible
# h2spec tests that fail against sparkgate on purpose, with the reason:
# - http2/5.1.1/2 "Sends stream identifier that is numerically smaller than previous":
#   nghttp2 (the gateway's HTTP/2 library) ignores a HEADERS frame with a lower stream id
#   instead of answering with a connection error, on purpose: a server cannot tell such a
#   frame from a late one (trailers) for a stream it has already reset and forgotten
#   (the comment in nghttp2_session_on_request_headers_received, lib/nghttp2_session.c).
EXPECTED_FAILURES=("http2/5.1.1/2")

tools="$repo/.tools/bin"
h2spec="$tools/h2spec"
stamp="$repo/.tools/h2spec.stamp"
sparkgate="${SPARKGATE_BIN:-$build/gateway/sparkgate}"
fake="${FAKE_SPARK_BIN:-$build/tests/fakes/fake_spark_server}"

export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

started=$SECONDS
summary() { echo "h2spec suite took $((SECONDS - started))s"; printf '%d passed, %d failed\n' "$1" "$2"; }

install_h2spec() {
  local want="$H2SPEC_MODULE@$H2SPEC_VERSION $(go version 2>/dev/null)"
  if [ -x "$h2spec" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "h2spec $H2SPEC_VERSION already in .tools/bin"
    return 0
  fi
  command -v go >/dev/null || { echo "go is not on PATH"; return 1; }
  mkdir -p "$tools"
  rm -f "$stamp"
  echo "go install $H2SPEC_MODULE/cmd/h2spec@$H2SPEC_VERSION ($(go version))"
  GOBIN="$tools" go install -trimpath -ldflags "-s -w -X main.VERSION=${H2SPEC_VERSION#v}" \
    "$H2SPEC_MODULE/cmd/h2spec@$H2SPEC_VERSION" || return 1
  echo "$want" >"$stamp"
}

if ! install_h2spec; then echo "FAIL  h2spec could not be installed"; summary 0 1; exit 1; fi
for b in "$sparkgate" "$fake"; do
  [ -x "$b" ] || { echo "FAIL  $b is missing (build first)"; summary 0 1; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

"$fake" --port 0 >"$work/fake.out" 2>"$work/fake.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^READY ' "$work/fake.out" && break; sleep 0.1; done
backend_port="$(sed -n 's/^READY \([0-9]*\).*/\1/p' "$work/fake.out" | head -n1)"
[ -n "$backend_port" ] || { echo "FAIL  the fake backend did not start"; cat "$work/fake.err"; summary 0 1; exit 1; }

port="$(free_port)"
admin_port="$(free_port)"
cat >"$work/sparkgate.yaml" <<EOF
listeners:
  - address: 127.0.0.1:$port
clusters:
  - name: local
    backends:
      - address: 127.0.0.1:$backend_port
routes:
  - cluster: local
admin:
  address: 127.0.0.1:$admin_port
EOF
"$sparkgate" --config "$work/sparkgate.yaml" --workers 1 >"$work/gateway.out" 2>"$work/gateway.err" &
gateway_pid=$!
pids+=("$gateway_pid")
for _ in $(seq 1 150); do port_open "$port" && break; sleep 0.1; done
port_open "$port" || { echo "FAIL  sparkgate did not listen on $port"; tail -n 20 "$work/gateway.err"; summary 0 1; exit 1; }

echo "h2spec $H2SPEC_VERSION against sparkgate on 127.0.0.1:$port"
"$h2spec" -h 127.0.0.1 -p "$port" -o 5 -j "$work/h2spec.xml" >"$work/h2spec.out" 2>&1
h2spec_rc=$?
# Only the failures and the tally of h2spec's own report: its full output is 300 lines.
if grep -q '^Failures:' "$work/h2spec.out"; then
  sed -n '/^Failures:/,$p' "$work/h2spec.out" | sed 's/^/  /' | tail -n 60
else
  grep -E '^[0-9]+ tests, ' "$work/h2spec.out" | sed 's/^/  /' | tail -n 1
fi
if ! kill -0 "$gateway_pid" 2>/dev/null; then
  echo "FAIL  sparkgate exited during h2spec"; tail -n 20 "$work/gateway.err"; summary 0 1; exit 1
fi
[ -s "$work/h2spec.xml" ] || { echo "FAIL  h2spec wrote no report (exit $h2spec_rc)"; tail -n 20 "$work/h2spec.out"; summary 0 1; exit 1; }

python3 - "$work/h2spec.xml" "${EXPECTED_FAILURES[@]}" <<'EOF'
import sys, xml.etree.ElementTree as ET
expected = set(sys.argv[2:])
passed = failed = skipped = 0
seen = set()
for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    for i, case in enumerate(suite.iter("testcase"), 1):
        tid = f"{suite.get('package')}/{i}"
        desc = case.get("classname", "")
        seen.add(tid)
        if case.find("skipped") is not None:
            skipped += 1
            print(f"SKIP  {tid} {desc}")
        elif case.find("failure") is not None or case.find("error") is not None:
            if tid in expected:
                passed += 1
                print(f"PASS  {tid} {desc} (expected failure)")
            else:
                failed += 1
                print(f"FAIL  {tid} {desc}")
        elif tid in expected:
            failed += 1
            print(f"FAIL  {tid} {desc}: passed, but it is listed as an expected failure (update the list)")
        else:
            passed += 1
for tid in sorted(expected - seen):
    failed += 1
    print(f"FAIL  {tid}: listed as an expected failure, but h2spec has no such test")
print(f"h2spec: {passed + failed + skipped} tests, {passed} passed ({len(expected & seen)} of them expected failures), "
      f"{skipped} skipped, {failed} failed")
with open(sys.argv[1] + ".counts", "w") as f:
    f.write(f"{passed} {failed}\n")
EOF
read -r passed failed <"$work/h2spec.xml.counts" 2>/dev/null || { passed=0; failed=1; }
summary "$passed" "$failed"
[ "$failed" -eq 0 ]
