#!/usr/bin/env bash
# Installs the Debian 12 packages loopgrad needs, only those missing, and the packages named as
# arguments (the test command adds python3-torch, the PyTorch oracle). Needs root (or sudo).
set -euo pipefail
packages=(g++ cmake make libboost-dev libboost-graph-dev libfmt-dev doctest-dev nlohmann-json3-dev libbenchmark-dev libopenblas-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "loopgrad: installing missing packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "loopgrad: run as root or install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
