#!/usr/bin/env bash
# Installs what is missing, builds loopgrad (Release) and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$(nproc)"
echo "reports (Graphviz and JSON) of every cell and example network: build/release/reports/"
./build/release/examples/demo/loopgrad_demo "$@"
