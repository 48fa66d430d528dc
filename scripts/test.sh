#!/usr/bin/env bash
# Installs what is missing, then builds and runs the whole test suite twice: an optimised build,
# and a debug build with AddressSanitizer and UndefinedBehaviorSanitizer. Then, built with clang
# (whose UndefinedBehaviorSanitizer also flags arithmetic on a null pointer), the generated
# kernels' tests under both sanitizers, and each libFuzzer target of the file readers for 60 s
# (scripts/fuzz.sh). All must pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# PyTorch: the interop tests' oracle; clang: UBSan and libFuzzer; Doxygen: the documentation check;
# chromium and Graphviz: the inspector page, drawn and opened in a real browser; Open MPI:
# loopgrad::distributed, tested under mpirun with 1, 2 and 3 ranks.
bash scripts/deps.sh python3-torch clang-14 doxygen chromium graphviz libopenmpi-dev openmpi-bin
jobs="$(nproc)"
echo "== loopgrad: Release build and tests"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DLOOPGRAD_REQUIRE_DOXYGEN=ON -DLOOPGRAD_REQUIRE_BROWSER=ON \
  -DLOOPGRAD_REQUIRE_MPI=ON
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs"
echo "== loopgrad: Debug build with AddressSanitizer + UndefinedBehaviorSanitizer and tests"
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DLOOPGRAD_SANITIZE=ON -DLOOPGRAD_REQUIRE_MPI=ON
cmake --build build/sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build/sanitize --output-on-failure -j"$jobs"
echo "== loopgrad: clang build with AddressSanitizer + UndefinedBehaviorSanitizer: generated kernels and fuzzers"
cmake -S . -B build/clang -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=Debug -DLOOPGRAD_SANITIZE=ON \
  -DLOOPGRAD_FUZZ=ON -DLOOPGRAD_BUILD_EXAMPLES=OFF -DLOOPGRAD_BUILD_BENCHMARKS=OFF
cmake --build build/clang -j"$jobs" --target test_codegen fuzz_safetensors fuzz_checkpoint
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build/clang/tests/test_codegen
bash scripts/fuzz.sh build/clang 60
