// loopgrad_bench's rows rtrl/<net>/portable: the pruned kernels compiled without -march, as a build
// with LOOPGRAD_PORTABLE (or loopgrad_add_network(... PORTABLE)) compiles them, beside the rest of
// the benchmark, which is compiled for this machine as loopgrad_add_network compiles by default.
// The kernels here live in namespaces of their own (<net>_portable), so no kernel function is
// shared with the native translation unit.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstddef>

#include "kernel_types.hpp"

// clang-format off
#define LOOPGRAD_BENCH_PORTABLE(ns)
#include "bench_portable.inc"
#undef LOOPGRAD_BENCH_PORTABLE
// clang-format on

namespace {

// One exact RTRL step of a generated kernel (its rtrl_step), the parameters fixed.
template <class K>
void portable_step(benchmark::State& state) {
  typename K::Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.05 * std::sin(double(i) + 1.0);
  typename K::State r;
  typename K::Sensitivity delta;
  typename K::Input input;
  for (std::size_t i = 0; i < input.flat.size(); ++i) input.flat[i] = 0.5 * std::cos(double(i));
  typename K::Target target;
  for (std::size_t i = 0; i < target.flat.size(); ++i) target.flat[i] = 0.25;
  typename K::Gradient gradient;
  typename K::Step step;
  for (auto _ : state) {
    benchmark::DoNotOptimize(K::rtrl_step(params, r, delta, input, &target, gradient, step));
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_step"] =
      benchmark::Counter(1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace

// Called by loopgrad_bench's main() before the run.
void register_portable_rows() {
#define LOOPGRAD_BENCH_PORTABLE(ns)                                                                      \
  {                                                                                                      \
    using K = LOOPGRAD_KERNEL_TYPES(ns##_portable);                                                      \
    benchmark::RegisterBenchmark("rtrl/" #ns "/portable", &portable_step<K>)->Unit(benchmark::kMicrosecond); \
  }
  // clang-format off
  #include "bench_portable.inc"
  // clang-format on
#undef LOOPGRAD_BENCH_PORTABLE
}
