#!/usr/bin/env bash
# Runs every sparkgate test suite and reports one total.
#
#   tests/run.sh [--no-install] [unit] [integration] [asan] [e2e] [bench] [deploy] [h2spec] [interop] [fuzz] [soak]
#
# First installs the dependencies and builds (deploy/install-deps.sh; --no-install skips
# that and uses what is there). Then runs the named suites, or all of them:
#   unit         build/tests/unit/unit_tests                     (doctest), then
#                tests/layering/check_layering.py build: the module layering of gateway/
#                is enforced by the build (one check per pair of folders), as `layering`
#   integration  build/tests/integration/integration_tests       (doctest; real gateway
#                against tests/fakes/fake_spark_server)
#   asan         builds build-asan/ (g++ -fsanitize=address,undefined -O1 -g1: 26 min of CPU from
#                scratch, 34 min measured on 2 busy cores, 20 s with a warm ccache; at most
#                ASAN_BUILD_TIMEOUT_S) and runs the unit and integration suites against it
#                (about 2 min; the integration tests start that build's gateway and fake
#                backend); LeakSanitizer is on, and any ASan, LSan or UBSan report from any
#                process fails the suite
#   e2e          pytest tests/e2e                                (real PySpark, real Spark
#                Connect server, real gateway)
#   bench        tests/bench/smoke.sh: the benchmark's ~10 s smoke run (every scenario
#                against every target with tiny sizes; one test case per scenario and
#                target; it checks that the benchmark works, never a timing), on the
#                image's release build (build-image/, shared with the deploy suite)
#   deploy       tests/deploy/run.sh: the build stage of deploy/docker/Dockerfile run on
#                this host (tests/deploy/image_build.py: a broken image build fails here),
#                helm lint and helm template of deploy/helm for each
#                values example, strict offline validation of the rendered manifests and
#                of deploy/k8s, the Grafana dashboard and the Dockerfile (`tests/run.sh
#                deploy` runs only this suite; helm comes from the Go module proxy)
#   h2spec       tests/h2spec/run.sh: the h2spec HTTP/2 conformance suite against the
#                gateway's listener (h2spec from the Go module proxy into .tools/bin; one
#                case per h2spec test, the one known failure listed and explained there)
#   interop      tests/interop/run.sh $INTEROP_ARGS              (the client x server
#                matrix; INTEROP_ARGS defaults to "--all": every cell)
#   fuzz         tests/fuzz/run.sh --seconds FUZZ_SECONDS (default 30) for every libFuzzer
#                target (clang build in build-fuzz/), with libFuzzer seed FUZZ_SEED (default
#                1; 0 = random) and at most FUZZ_RUNS inputs (default 20000), so that every
#                machine runs the same inputs; a crash, leak or timeout fails
#   soak         tests/soak/run.sh --seconds SOAK_SECONDS (default 60): mixed traffic
#                through the real gateway to fake backends, a backend restart every
#                SOAK_RESTART_EVERY s (default 25), RSS and fds sampled every
#                SOAK_SAMPLE_EVERY s (default 5); one test case per check of the driver
#                (no unexpected RPC outcome, RSS and fds bounded, every session ended, ...)
# A failing suite does not stop the others. A suite that crashes, times out or whose
# binary is missing counts as (at least) one failed test case. The exit status is 0 only
# if nothing failed; the last line of output is always `N passed, N failed`.
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

install=1
suites=()
for arg in "$@"; do
  case "$arg" in
    --no-install) install=0 ;;
    unit|integration|e2e|bench|deploy|h2spec|interop) suites+=("$arg") ;;
    asan|fuzz|soak) suites+=("$arg") ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d'; exit 0 ;;
    *) echo "tests/run.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
[ "${#suites[@]}" -gt 0 ] || suites=(unit integration asan e2e bench deploy h2spec interop fuzz soak)

# Wall-clock limits per suite, so a hang fails the run instead of stalling CI.
UNIT_TIMEOUT_S="${UNIT_TIMEOUT_S:-600}"
INTEGRATION_TIMEOUT_S="${INTEGRATION_TIMEOUT_S:-1200}"
E2E_TIMEOUT_S="${E2E_TIMEOUT_S:-2400}"
DEPLOY_TIMEOUT_S="${DEPLOY_TIMEOUT_S:-1800}"  # the first run builds helm and the validator
BENCH_TIMEOUT_S="${BENCH_TIMEOUT_S:-1800}"  # the first run makes the image's release build
H2SPEC_TIMEOUT_S="${H2SPEC_TIMEOUT_S:-600}"  # the first run installs h2spec with go install
INTEROP_TIMEOUT_S="${INTEROP_TIMEOUT_S:-2400}"
# Every cell of the matrix fits the CI budget (docs/interoperability.md); INTEROP_ARGS=""
# runs only tests/interop/run.sh's default cells, "--cells a,b" the named ones.
INTEROP_ARGS="${INTEROP_ARGS---all}"
ASAN_BUILD_TIMEOUT_S="${ASAN_BUILD_TIMEOUT_S:-2400}"  # build-asan/ from scratch; ccache makes reruns quick
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_SEED="${FUZZ_SEED:-1}"
FUZZ_RUNS="${FUZZ_RUNS:-20000}"  # inputs per target: with the fixed seed, the same inputs everywhere
FUZZ_SUITE_TIMEOUT_S="${FUZZ_SUITE_TIMEOUT_S:-3600}"  # the whole fuzz suite, build included
SOAK_SECONDS="${SOAK_SECONDS:-60}"
SOAK_SAMPLE_EVERY="${SOAK_SAMPLE_EVERY:-5}"
SOAK_RESTART_EVERY="${SOAK_RESTART_EVERY:-25}"
SOAK_TIMEOUT_S="${SOAK_TIMEOUT_S:-$((SOAK_SECONDS + 600))}"  # start-up, the idle wait at the end, a build if needed

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

total_passed=0
total_failed=0
summary=()
timings=()  # "suite seconds", printed before the summary (docs/testing.md keeps the table)

banner() { printf '\n===== %s =====\n' "$*"; }

failures=()  # what failed, a few lines per failing suite, repeated at the very end

record() {
  # record SUITE PASSED FAILED NOTE
  total_passed=$((total_passed + $2))
  total_failed=$((total_failed + $3))
  summary+=("$(printf '%-12s %5d passed %5d failed  %s' "$1" "$2" "$3" "$4")")
  # the script-driven suites print one "FAIL ..." (or "FAILED") line per failed case, and a
  # Python script that crashes ends with "SomethingError: ..." 
  if [ "$3" -ne 0 ] && ! printf '%s\n' "${failures[@]}" | grep -qx -- "--- $1"; then
    note_failures "$1" "$work/$1.log" '(^|[[:space:]])FAIL(ED)?([[:space:]:]|$)|^[A-Za-z]*Error: '
  fi
}

note_failures() {
  # note_failures SUITE LOGFILE PATTERN — keeps the log's lines that match PATTERN (at most
  # 40) for the digest printed last, so that a CI log cut to its tail still names them.
  local suite="$1" log="$2" pattern="$3" lines
  [ -f "$log" ] || return 0
  lines="$(grep -E -- "$pattern" "$log" | head -n 40)"
  [ -n "$lines" ] && failures+=("--- $suite" "$lines")
  return 0
}

run_limited() {
  # run_limited SECONDS LOGFILE CMD... — runs CMD with a time limit, its output both on
  # the console and in LOGFILE; returns CMD's exit status (124 on timeout).
  local limit="$1" logfile="$2"; shift 2
  timeout --kill-after=30 "$limit" "$@" 2>&1 | tee "$logfile"
  return "${PIPESTATUS[0]}"
}

run_doctest() {
  # run_doctest SUITE BINARY TIMEOUT [ENV=VALUE...]
  local suite="$1" bin="$2" limit="$3"; shift 3
  banner "$suite: $bin"
  if [ ! -x "$bin" ]; then
    echo "$suite: $bin is missing (did the build fail?)"
    record "$suite" 0 1 "binary missing"
    return
  fi
  local log="$work/$suite.log" rc=0
  run_limited "$limit" "$log" env "$@" "$bin" || rc=$?
  # [doctest] test cases:   33 |   33 passed | 0 failed | 0 skipped
  local line passed=0 failed=0 note
  line="$(grep -E '^\[doctest\] test cases:' "$log" | tail -n1)"
  if [ -n "$line" ]; then
    passed="$(sed -E 's/.*\|[[:space:]]*([0-9]+) passed.*/\1/' <<<"$line")"
    failed="$(sed -E 's/.*\|[[:space:]]*([0-9]+) failed.*/\1/' <<<"$line")"
  fi
  note="exit $rc"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note="timed out after ${limit}s"
  elif [ -z "$line" ]; then
    note="exit $rc, no doctest summary (crashed?)"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # it did not succeed, whatever its counters said
  fi
  if [ "$failed" -ne 0 ]; then
    # doctest: each failed check with its values, under the name of its test case
    local digest
    digest="$(awk '/^TEST CASE:/ { tc = $0; shown = 0; next }
                   /ERROR:|Sanitizer/ { if (!shown) print tc; shown = 1; print; keep = 1; next }
                   keep && /^  values:/ { print }
                   { keep = 0 }' "$log" | head -n 40)"
    [ -n "$digest" ] && failures+=("--- $suite" "$digest")
  fi
  record "$suite" "$passed" "$failed" "$note"
}

run_layering() {
  # One check per (library, folder) pair and the issue's two named cases; the script's
  # last line is "N passed, N failed".
  banner "layering: tests/layering/check_layering.py build"
  local log="$work/layering.log" rc=0 passed=0 failed=0 line
  run_limited 600 "$log" python3 "$repo/tests/layering/check_layering.py" "$repo/build" || rc=$?
  line="$(tail -n1 "$log")"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed="${BASH_REMATCH[1]}"
    failed="${BASH_REMATCH[2]}"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
  fi
  record layering "$passed" "$failed" "exit $rc"
}

run_e2e() {
  banner "e2e: pytest tests/e2e"
  local python="$repo/.venv/client/bin/python"
  if [ ! -x "$python" ]; then
    echo "e2e: $python is missing (did deploy/install-deps.sh fail?)"
    record e2e 0 1 "client venv missing"
    return
  fi
  local junit="$work/e2e-junit.xml" rc=0
  run_limited "$E2E_TIMEOUT_S" "$work/e2e.log" \
    env SPARKGATE_BIN="$repo/build/gateway/sparkgate" \
    "$python" -m pytest tests/e2e -p no:cacheprovider --junitxml="$junit" -o junit_family=xunit2 || rc=$?
  local counts passed=0 failed=0 note="exit $rc"
  if [ -f "$junit" ]; then
    # "<passed> <failed>": one verdict per test case; an error (setup/teardown) is a failure.
    counts="$("$python" - "$junit" <<'EOF'
import sys, xml.etree.ElementTree as ET
verdict = {}  # a test that fails and then errors in teardown appears twice
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    key = (case.get("classname"), case.get("name"))
    if case.find("failure") is not None or case.find("error") is not None:
        verdict[key] = "failed"
    elif case.find("skipped") is not None:
        verdict.setdefault(key, "skipped")
    else:
        verdict.setdefault(key, "passed")
values = list(verdict.values())
print(values.count("passed"), values.count("failed"))
EOF
)" || counts=""
    if [ -n "$counts" ]; then
      read -r passed failed <<<"$counts"
    else
      note="exit $rc, unreadable junit xml"
    fi
  else
    note="exit $rc, no junit xml (crashed?)"
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note="timed out after ${E2E_TIMEOUT_S}s"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # e.g. a collection error, or no tests collected (exit 5)
  fi
  [ "$failed" -ne 0 ] && note_failures e2e "$work/e2e.log" '^(FAILED|ERROR) |^E  '
  record e2e "$passed" "$failed" "$note"
}

run_deploy() {
  banner "deploy: tests/deploy/run.sh"
  local log="$work/deploy.log" rc=0 passed=0 failed=0 note line
  run_limited "$DEPLOY_TIMEOUT_S" "$log" \
    env SPARKGATE_BIN="$repo/build/gateway/sparkgate" bash tests/deploy/run.sh || rc=$?
  # tests/deploy/run.sh ends with "N passed, N failed".
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)"
  if [ -n "$line" ]; then
    read -r passed failed <<<"$(sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")"
  fi
  note="exit $rc"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note="timed out after ${DEPLOY_TIMEOUT_S}s"
  elif [ -z "$line" ]; then
    note="exit $rc, no summary line"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
  fi
  record deploy "$passed" "$failed" "$note"
}

run_bench_smoke() {
  banner "bench: tests/bench/smoke.sh"
  local log="$work/bench.log" rc=0 passed=0 failed=0 note
  # The default build directory: the image's release build (the deploy suite's
  # Dockerfile check builds the same one), so CI makes one release build, not two.
  run_limited "$BENCH_TIMEOUT_S" "$log" bash tests/bench/smoke.sh --no-install || rc=$?
  # bench.py prints "bench: N passed, N failed" (one case per scenario and target).
  local line
  line="$(grep -E '^bench: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)"
  if [ -n "$line" ]; then
    read -r passed failed <<<"$(sed -E 's/^bench: ([0-9]+) passed, ([0-9]+) failed.*/\1 \2/' <<<"$line")"
  fi
  note="exit $rc"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then note="timed out after ${BENCH_TIMEOUT_S}s"; fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  record bench "$passed" "$failed" "$note"
}

run_h2spec() {
  banner "h2spec: tests/h2spec/run.sh"
  local log="$work/h2spec.log" rc=0 passed=0 failed=0 note line
  run_limited "$H2SPEC_TIMEOUT_S" "$log" \
    env SPARKGATE_BIN="$repo/build/gateway/sparkgate" FAKE_SPARK_BIN="$repo/build/tests/fakes/fake_spark_server" \
    bash tests/h2spec/run.sh || rc=$?
  # tests/h2spec/run.sh ends with "N passed, N failed" (one case per h2spec test).
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)"
  if [ -n "$line" ]; then
    read -r passed _ failed _ <<<"$line"
  fi
  note="exit $rc"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note="timed out after ${H2SPEC_TIMEOUT_S}s"
  elif [ -z "$line" ]; then
    note="exit $rc, no summary line"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  record h2spec "$passed" "$failed" "$note"
}

run_interop() {
  banner "interop: tests/interop/run.sh $INTEROP_ARGS"
  local setup_args=() rc=0
  # install-deps.sh has run already (or --no-install asked not to); the interop setup still
  # creates its own venvs, jars and client programs if they are missing.
  setup_args+=(--no-install-deps)
  # shellcheck disable=SC2086 # INTEROP_ARGS is a list of words
  run_limited "$INTEROP_TIMEOUT_S" "$work/interop.log" \
    env SPARKGATE_BIN="$repo/build/gateway/sparkgate" \
    bash tests/interop/run.sh "${setup_args[@]}" $INTEROP_ARGS || rc=$?
  local line passed=0 failed=0 note="exit $rc"
  # tests/interop/run.sh ends with "N passed, N failed".
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/interop.log" | tail -n1)"
  if [ -n "$line" ]; then
    read -r passed _ failed _ <<<"$line"
  else
    note="exit $rc, no summary line (crashed?)"
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note="timed out after ${INTEROP_TIMEOUT_S}s"
  fi
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
  fi
  record interop "$passed" "$failed" "$note"
}

run_asan() {
  # The unit and integration suites under AddressSanitizer + UndefinedBehaviorSanitizer,
  # with LeakSanitizer. Reports of every process (the test binaries, the gateway and the
  # fake backends they start) end up as files under $reports; any file there fails the
  # suite. Where they come from:
  # - ASan and LSan reports: log_path. In g++'s runtime libubsan.so sets the report path
  #   of libasan.so too (the symbol is interposed), so ASan's reports land in asan.PID or
  #   ubsan.PID depending on the order the two initialise: both are under $reports.
  # - UBSan reports: that same runtime writes them to stderr whatever log_path says. The
  #   test binaries' stderr is in this suite's logs (checked below); the harness copies the
  #   stderr of a child that holds a report to $reports (SPARKGATE_ITEST_SANITIZER_DIR).
  local dir="$repo/build-asan" reports="$work/sanitizer-reports"
  banner "asan: build $dir (-fsanitize=address,undefined)"
  local start=$SECONDS
  if [ ! -f "$dir/build.ninja" ] &&
     ! meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1 -Ddebug=false \
         "-Dcpp_args=-g1 -fno-sanitize-recover=undefined -Wno-maybe-uninitialized -Wno-mismatched-new-delete"; then
    record asan 0 1 "meson setup build-asan failed"
    return
  fi
  # -O1 as the sanitizer docs advise (and it compiles faster than the default -O2).
  # -g1 (line tables, no variable or type info): a report still names file and line of
  # every frame, and a heavy file (proxy/rpc_stream.cc) compiles in 42 s instead of 62 s
  # with half the object size (measured on a busy 2-core machine).
  # -Wno-mismatched-new-delete: with -fsanitize=address g++ 12 reports one on Boost.Asio's
  # coroutine frames (awaitable_frame_base's sized operator delete, policy/https_get.cc).
  # -Wno-maybe-uninitialized: with -fsanitize=address g++ 12 reports false positives
  # inside libstdc++ (std::regex's std::function). Only what the two suites run is built
  # (not the benchmark's tools).
  if ! timeout "$ASAN_BUILD_TIMEOUT_S" ninja -j2 -C "$dir" tests/unit/unit_tests tests/integration/integration_tests \
       tests/fakes/fake_spark_server gateway/sparkgate; then
    record asan 0 1 "ninja -C build-asan failed or took over ${ASAN_BUILD_TIMEOUT_S}s"
    return
  fi
  echo "asan: build took $((SECONDS - start)) s"
  mkdir -p "$reports"
  local env=(
    "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=0:log_path=$reports/asan"
    "LSAN_OPTIONS=suppressions=$repo/tests/lsan.supp:print_suppressions=0"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan"
    # The harness: keep children's stderr that holds a report; allow for ASan's quarantine
    # in the one peak-RSS bound; give each child 10 s after SIGTERM to run LSan's check.
    "SPARKGATE_ITEST_SANITIZER_DIR=$reports"
    "SPARKGATE_ITEST_ASAN=1"
  )
  start=$SECONDS
  run_doctest asan-unit "$dir/tests/unit/unit_tests" "$UNIT_TIMEOUT_S" "${env[@]}"
  run_doctest asan-integ "$dir/tests/integration/integration_tests" "$INTEGRATION_TIMEOUT_S" "${env[@]}" \
    SPARKGATE_BIN="$dir/gateway/sparkgate" \
    FAKE_SPARK_BIN="$dir/tests/fakes/fake_spark_server"
  echo "asan: the two suites took $((SECONDS - start)) s"
  local log pattern=': runtime error: |ERROR: (AddressSanitizer|LeakSanitizer)'
  for log in "$work/asan-unit.log" "$work/asan-integ.log"; do
    if grep -qE "$pattern" "$log" 2>/dev/null; then
      cp "$log" "$reports/stderr.$(basename "$log" .log)"
    fi
  done
  local files
  files="$(find "$reports" -type f | sort)"
  if [ -z "$files" ]; then
    echo "asan: no AddressSanitizer, LeakSanitizer or UBSan report"
    record asan-report 1 0 "no sanitizer report"
  else
    local n
    n="$(wc -l <<<"$files")"
    echo "asan: $n sanitizer report(s):"
    while IFS= read -r f; do
      printf '\n--- %s ---\n' "$(basename "$f")"
      if grep -qE "$pattern" "$f"; then
        grep -E -A 60 "$pattern" "$f" | head -n 80
      else
        head -n 80 "$f"
      fi
    done <<<"$files"
    record asan-report 0 "$n" "sanitizer reports (see above)"
  fi
}

run_fuzz() {
  banner "fuzz: tests/fuzz/run.sh --seconds $FUZZ_SECONDS"
  local log="$work/fuzz.log" rc=0
  run_limited "$FUZZ_SUITE_TIMEOUT_S" "$log" bash tests/fuzz/run.sh --seconds "$FUZZ_SECONDS" --seed "$FUZZ_SEED" --runs "$FUZZ_RUNS" || rc=$?
  # One case per target: "N passed, N failed" is the script's last line.
  local line passed=0 failed=0 note="exit $rc"
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)"
  if [ -n "$line" ]; then
    passed="$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$line")"
    failed="$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")"
  else
    note="exit $rc, no summary line"
  fi
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="timed out after ${FUZZ_SUITE_TIMEOUT_S}s"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
  fi
  record fuzz "$passed" "$failed" "$note"
}

run_soak() {
  banner "soak: tests/soak/run.sh --seconds $SOAK_SECONDS"
  local log="$work/soak.log" rc=0
  run_limited "$SOAK_TIMEOUT_S" "$log" bash tests/soak/run.sh --build-dir "$repo/build" --seconds "$SOAK_SECONDS" \
    --sample-every "$SOAK_SAMPLE_EVERY" --restart-every "$SOAK_RESTART_EVERY" --out "$repo/build/soak/suite.json" || rc=$?
  # One case per check: soak_driver prints "  PASS  name: ..." or "  FAIL  name: ...".
  local passed failed note="exit $rc"
  passed="$(grep -cE '^  PASS  ' "$log")" || passed=0
  failed="$(grep -cE '^  FAIL  ' "$log")" || failed=0
  if ! grep -qE '^soak: (PASSED|FAILED)$' "$log"; then
    note="exit $rc, no verdict (crashed?)"
  fi
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="timed out after ${SOAK_TIMEOUT_S}s"
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1
  fi
  record soak "$passed" "$failed" "$note"
}

if [ "$install" -eq 1 ]; then
  banner "install dependencies and build"
  started=$SECONDS
  if ! bash deploy/install-deps.sh; then
    echo "deploy/install-deps.sh failed; running whatever suites can still run"
    record build 0 1 "install-deps/build failed"
  fi
  timings+=("$(printf '%-12s %6d s' install $((SECONDS - started)))")
fi

# Jaeger (for tests/e2e/test_tracing.py) is built from the Go module proxy: minutes of CPU
# on a fresh machine. Start it now at the lowest priority, so it uses what the suites before
# e2e leave idle; the e2e fixture waits for it (tests/e2e/jaeger_setup.sh holds a lock).
for suite in "${suites[@]}"; do
  if [ "$suite" = e2e ] && command -v go >/dev/null 2>&1; then
    echo "[run] building Jaeger in the background for e2e (log: $work/jaeger-setup.log)"
    nice -n 19 bash tests/e2e/jaeger_setup.sh >"$work/jaeger-setup.log" 2>&1 &
  fi
done

for suite in "${suites[@]}"; do
  started=$SECONDS
  case "$suite" in
    unit)
      run_doctest unit "$repo/build/tests/unit/unit_tests" "$UNIT_TIMEOUT_S"
      run_layering ;;
    integration)
      run_doctest integration "$repo/build/tests/integration/integration_tests" "$INTEGRATION_TIMEOUT_S" \
        SPARKGATE_BIN="$repo/build/gateway/sparkgate" \
        FAKE_SPARK_BIN="$repo/build/tests/fakes/fake_spark_server" ;;
    e2e)
      run_e2e ;;
    deploy)
      run_deploy ;;
    h2spec)
      run_h2spec ;;
    bench)
      run_bench_smoke ;;
    interop)
      run_interop ;;
    asan)
      run_asan ;;
    fuzz)
      run_fuzz ;;
    soak)
      run_soak ;;
  esac
  timings+=("$(printf '%-12s %6d s' "$suite" $((SECONDS - started)))")
done

banner "summary"
echo "wall-clock time per suite (total ${SECONDS} s):"
printf '  %s\n' "${timings[@]}"
if [ "${#failures[@]}" -gt 0 ]; then
  echo "what failed:"
  printf '%s\n' "${failures[@]}"
fi
printf '%s\n' "${summary[@]}"
printf '%d passed, %d failed\n' "$total_passed" "$total_failed"
[ "$total_failed" -eq 0 ]
