#!/usr/bin/env bash
# Installs what is missing, builds loopgrad (Release), runs loopgrad_bench and writes its JSON to
# build/release/bench.json and the summary tables to build/release/bench.md. Extra arguments go to
# the benchmark (e.g. --benchmark_filter=lstm).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$(nproc)" --target loopgrad_bench
./build/release/benchmarks/loopgrad_bench --benchmark_out=build/release/bench.json --benchmark_out_format=json "$@"
python3 benchmarks/summarize.py build/release/bench.json > build/release/bench.md
cat build/release/bench.md
