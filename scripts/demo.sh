#!/usr/bin/env bash
# Installs what is missing, builds what the demo needs (Release) and runs it. The test command
# (scripts/test.sh) builds everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$(nproc)" --target loopgrad_demo
echo "reports (Graphviz and JSON) of every cell and example network: cmake --build build/release, then build/release/reports/"
./build/release/examples/demo/loopgrad_demo "$@"
