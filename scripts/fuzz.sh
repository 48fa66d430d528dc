#!/usr/bin/env bash
# Runs loopgrad's libFuzzer targets (tests/fuzz) for a bounded time each, from the seed corpus in
# the repository. A finding (crash, sanitizer report, leak, timeout, an exception the readers must
# not throw) stops the fuzzer with a non-zero status and the input that caused it under
# BUILD_DIR/fuzz/findings. Usage: scripts/fuzz.sh BUILD_DIR [SECONDS]   (default 60 per target)
# BUILD_DIR is a clang build configured with -DLOOPGRAD_FUZZ=ON (scripts/test.sh makes one).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS]}"
seconds="${2:-60}"
for target in safetensors checkpoint; do
  exe="$build/tests/fuzz/fuzz_$target"
  [ -x "$exe" ] || { echo "loopgrad: $exe is not built (configure a clang build with -DLOOPGRAD_FUZZ=ON)" >&2; exit 1; }
  work="$build/fuzz/corpus/$target"   # what the fuzzer finds is kept here, the seeds stay as they are
  findings="$build/fuzz/findings/$target/"
  mkdir -p "$work" "$findings"
  echo "== loopgrad: fuzzing the $target reader for ${seconds} s"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$exe" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$findings" "$work" "tests/fuzz/corpus/$target"
done
