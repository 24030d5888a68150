#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ (a campaign, or the short regression run of
# tests/run.sh) and reports one case per target.
#
#   tests/fuzz/run.sh [--seconds N] [--seed S] [--runs R] [--merge] [target...]
#
# Builds build-fuzz/ first if needed (CXX=clang++, -Dfuzz=true: every object instrumented
# with -fsanitize=fuzzer-no-link,address,undefined; ninja -j2). Then runs each named target
# (default: all, i.e. every tests/fuzz/fuzz_<target>.cc) for N seconds (default 300) on a
# temporary copy of its seed corpus tests/fuzz/corpus/<target>/, so the checked-in corpus
# is not polluted. With --merge, the inputs that found new coverage are minimized into the
# checked-in corpus afterwards (libFuzzer -merge=1); review them before committing.
#
# Per target it prints executions, coverage (cov/ft of libFuzzer's final stats line),
# corpus size and crashes. A crash, a sanitizer report (ASan, UBSan, LeakSanitizer), an
# out-of-memory, a timeout or a failed invariant is a failure; the reproducer is kept in
# build-fuzz/artifacts/<target>/ (run the target binary on it to reproduce). The last line
# is `N passed, N failed`; the exit status is non-zero if anything failed.
#
# --seed S fixes libFuzzer's random seed; --runs R stops each target after R inputs. With
# both, a run executes the same inputs on every machine (the regression run of
# tests/run.sh); --seconds still bounds it. Defaults: random seed, no run limit.
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_INPUT_TIMEOUT_S (one input, default
# 10), FUZZ_RSS_LIMIT_MB (default 2048).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

seconds=300
fuzz_seed=""
fuzz_runs=""
merge=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a value}"; shift ;;
    --seconds=*) seconds="${1#--seconds=}" ;;
    --seed) fuzz_seed="${2:?--seed needs a value}"; shift ;;
    --runs) fuzz_runs="${2:?--runs needs a value}"; shift ;;
    --merge) merge=1 ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "tests/fuzz/run.sh: unknown option: $1" >&2; exit 2 ;;
    *) targets+=("$1") ;;
  esac
  shift
done
case "$seconds" in ''|*[!0-9]*) echo "tests/fuzz/run.sh: --seconds needs a whole number" >&2; exit 2 ;; esac

all_targets=()
for f in tests/fuzz/fuzz_*.cc; do
  t="${f#tests/fuzz/fuzz_}"
  all_targets+=("${t%.cc}")
done
[ "${#targets[@]}" -gt 0 ] || targets=("${all_targets[@]}")

build="${FUZZ_BUILD_DIR:-build-fuzz}"
timeout_s="${FUZZ_INPUT_TIMEOUT_S:-10}"
rss_mb="${FUZZ_RSS_LIMIT_MB:-2048}"

passed=0
failed=0

build_ok=1
if [ ! -f "$build/build.ninja" ]; then
  echo "== configuring $build (clang, -Dfuzz=true)"
  # meson puts ccache in front of the compiler only when CC/CXX are not set, so name it here.
  launcher=""
  command -v ccache >/dev/null 2>&1 && launcher="ccache "
  # -g1: line tables only (a crash's stack still names file and line), for a faster build.
  if ! CC="${launcher}clang" CXX="${launcher}clang++" meson setup "$build" -Dfuzz=true -Doptimization=0 -Ddebug=false -Dcpp_args=-g1 \
       >"$repo/.fuzz-setup.log" 2>&1; then
    cat "$repo/.fuzz-setup.log"
    build_ok=0
  fi
  rm -f "$repo/.fuzz-setup.log"
fi
if [ "$build_ok" -eq 1 ]; then
  echo "== building $build"
  ninja -j2 -C "$build" || build_ok=0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

results=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$t"
  printf '\n===== fuzz %s (%ss) =====\n' "$t" "$seconds"
  if [ "$build_ok" -ne 1 ] || [ ! -x "$bin" ]; then
    echo "fuzz $t: $bin is missing (unknown target, or the build failed)"
    results+=("$(printf '%-18s FAIL  binary missing' "$t")")
    failed=$((failed + 1))
    continue
  fi
  corpus="$work/corpus-$t"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$corpus/"
  seeds="$(find "$corpus" -type f | wc -l)"
  artifacts="$build/artifacts/$t"
  rm -rf "$artifacts"
  mkdir -p "$artifacts"
  extra=()
  case "$t" in
    http2_server) extra+=(-max_len=16384) ;;
  esac
  [ -z "$fuzz_seed" ] || extra+=(-seed="$fuzz_seed")
  [ -z "$fuzz_runs" ] || extra+=(-runs="$fuzz_runs")
  log="$work/$t.log"
  rc=0
  # -max_total_time bounds the campaign; timeout(1) only catches a wedged process.
  timeout --kill-after=30 $((seconds + 120)) "$bin" "$corpus" \
    -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" </dev/null >"$log" 2>&1 || rc=$?
  # Keep the tail of the log on the console: the stats, or the report of a failure.
  grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)' "$log" | tail -n 40
  cp "$log" "$artifacts/fuzz.log"

  execs="$(sed -nE 's/^stat::number_of_executed_units:[[:space:]]*([0-9]+).*/\1/p' "$log" | tail -n1)"
  final="$(grep -E '^#[0-9]+[[:space:]].*cov: [0-9]+' "$log" | tail -n1)"
  cov="$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$final")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$final")"
  units="$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$final")"
  [ -n "$execs" ] || execs="$(sed -nE 's/^#([0-9]+)[[:space:]].*/\1/p' <<<"$final")"
  crashes="$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)"

  verdict=PASS
  note=""
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    verdict=FAIL
    note="exit $rc"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note="wedged: killed after $((seconds + 120))s"
    [ "$crashes" -gt 0 ] && note="$note; reproducer(s) in $artifacts/"
    failed=$((failed + 1))
  elif [ -z "$execs" ] || [ "$execs" -eq 0 ]; then
    verdict=FAIL
    note="no executions reported"
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
  line="$(printf '%-18s %s  executions %s  cov %s  ft %s  corpus %s (seeds %s)  crashes %s' \
    "$t" "$verdict" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "$seeds" "$crashes")"
  [ -n "$note" ] && line="$line  ($note)"
  results+=("$line")
  echo "$line"

  if [ "$merge" -eq 1 ] && [ "$verdict" = PASS ]; then
    mkdir -p "tests/fuzz/corpus/$t"
    before="$(find "tests/fuzz/corpus/$t" -type f | wc -l)"
    "$bin" -merge=1 "tests/fuzz/corpus/$t" "$corpus" </dev/null >"$work/$t.merge.log" 2>&1 \
      || { echo "fuzz $t: merge failed"; tail -n 20 "$work/$t.merge.log"; }
    after="$(find "tests/fuzz/corpus/$t" -type f | wc -l)"
    echo "fuzz $t: merged $((after - before)) new input(s) into tests/fuzz/corpus/$t/"
  fi
done

printf '\n===== fuzz summary =====\n'
printf '%s\n' "${results[@]}"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
