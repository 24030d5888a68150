#!/usr/bin/env bash
# The benchmark's ~10-second smoke run: every scenario against every target with tiny
# sizes and one repetition. It checks that the benchmark still works (every process
# starts, every RPC succeeds); its figures mean nothing. Exit status 0 when it works.
#
#   tests/bench/smoke.sh [--no-install] [--build-dir DIR]
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" --quick "$@"
