#!/usr/bin/env bash
# loopgrad::distributed on this machine, in one run: the throughput of examples/many_streams (64
# streams of an Elman 16 network, exact RTRL, an Adam update every step) on 1 rank of 1 and of 2
# threads and on 2 ranks of 1 thread, then the gradient sum alone (loopgrad_bench_ordered_sum) for
# |P| = 10^3 .. 10^7 on 1, 2 and 3 ranks. Usage: scripts/bench_many_streams.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build="${1:-build/release}"
steps="${2:-3000}"
program="$build/examples/many_streams/many_streams"
[ -x "$program" ] || { echo "no $program: build the many_streams target first" >&2; exit 1; }
# Root may run mpiexec only when asked; containers often forbid the cross-process copy (CMA).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for config in "1 1" "1 2" "2 1"; do
  set -- $config
  echo "== $1 rank(s) x $2 thread(s)"
  mpiexec -n "$1" --bind-to none "$program" --steps "$steps" --threads "$2"
done
sum="$build/benchmarks/loopgrad_bench_ordered_sum"
if [ -x "$sum" ]; then
  for ranks in 1 2 3; do mpiexec -n "$ranks" --oversubscribe --bind-to none "$sum"; done
fi
