#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite twice: an optimised build,
# and a debug build with AddressSanitizer and UndefinedBehaviorSanitizer. Both must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh python3-torch  # PyTorch: the oracle of the interop tests
jobs="$(nproc)"
echo "== loopgrad: Release build and tests"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs"
echo "== loopgrad: Debug build with AddressSanitizer + UndefinedBehaviorSanitizer and tests"
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DLOOPGRAD_SANITIZE=ON
cmake --build build/sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/sanitize --output-on-failure -j"$jobs"
