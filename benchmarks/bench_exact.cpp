// loopgrad_bench's rows for the exact algorithms where the scalar or the size differs from the
// main table (bench_networks.hpp, exact_networks()): Elman 256, LSTM 128 and GRU 128 in float, and
// Elman 512 and LSTM 256 in double. For each, side by side in the same run:
//   rtrl/<net>/pruned              one exact RTRL step on the generated kernel
//   blocked/<net>/accumulate:<m>   the blocked exact algorithm at the cost model's block length h,
//                                  a gradient every step (m = 1) and summed over m = h steps
//   blocked/<net>/background       the same, a gradient every step, with the background schedule
//   blocked/<net>/background_tuned the same at the block length tuned on this machine (bench.cpp)
//   delta_pass/<net>               one pass over the stored Delta with one adjoint
//   sweep/<net>                    the background schedule's gradient sweep alone (1.5 h steps)
//   bptt/<net>/<T>                 BPTT over T = 10, 100, 1000 steps
// The float networks' rows come again as <net>_ftz, run with RtrlOptions::flush_subnormals.
// Compiled for this machine like bench.cpp, in a translation unit of its own (the two compile in
// parallel).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <deque>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bench_networks.hpp"
#include "bench_rows.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/runtime/init.hpp"

// The kernels' headers (registered in register_exact_rows).
#define LOOPGRAD_BENCH_EXACT(ns, expression)
#include "bench_exact.inc"
#undef LOOPGRAD_BENCH_EXACT

namespace {

struct ExactEntry {
  loopgrad::analysis::Analysis analysis;
  std::vector<double> params;
  std::vector<float> params_float;
};

// `macs`: the sensitivity update's, as emitted; `step_values` and `workspace`: what one step keeps
// and the update's workspace (n_step_values, n_tangent).
template <class Kernel>
void register_exact(const std::string& name, const loopgrad::ir::Network& net, long long macs, std::size_t step_values,
                    std::size_t workspace) {
  using T = typename Kernel::Scalar;
  static std::deque<ExactEntry> entries;
  auto& e = entries.emplace_back();
  e.analysis = loopgrad::analysis::analyse(net);
  e.params = loopgrad::runtime::initial_params<double>(net, 1, 0.5);
  e.params_float = loopgrad::runtime::initial_params<float>(net, 1, 0.5);
  const ExactEntry* entry = &e;
  const auto params = [entry]() -> const std::vector<T>& {
    if constexpr (std::is_same_v<T, float>) return entry->params_float;
    else return entry->params;
  };
  // Bytes one stream holds, as bench.cpp counts them.
  const Kernel kernel;
  const bench::Memory memory{double(sizeof(T)) * double(kernel.state_size() + 2 * kernel.sensitivity_size() +
                                                        kernel.param_count() + step_values + workspace),
                             double(sizeof(T)) * double(step_values + kernel.target_size()),
                             double(sizeof(T)) * double(2 * kernel.state_size() + kernel.param_count())};
  // In float the rows come twice: as a user gets them, and with RtrlOptions::flush_subnormals
  // (<name>_ftz), since decaying sensitivities reach subnormal floats.
  std::vector<std::pair<std::string, bool>> variants{{name, false}};
  if (std::is_same_v<T, float>) variants.emplace_back(name + "_ftz", true);
  const int h = e.analysis.exact_cost.block_length;
  for (const auto& [row, flush] : variants) {
    const bool flush_subnormals = flush;
    benchmark::RegisterBenchmark(("rtrl/" + row + "/pruned").c_str(), [=](benchmark::State& s) {
      bench::rtrl_step(s, Kernel{}, params(), macs, entry->analysis.macs_per_step, memory, flush_subnormals);
    })->Unit(benchmark::kMicrosecond);
    using loopgrad::runtime::BlockSchedule;
    for (const auto& [accumulate, schedule] :
         {std::pair{1, BlockSchedule::block_end}, {h, BlockSchedule::block_end}, {1, BlockSchedule::background}})
      benchmark::RegisterBenchmark(("blocked/" + row + "/" + bench::blocked_row(accumulate, schedule)).c_str(),
                                   [=, accumulate = accumulate, schedule = schedule](benchmark::State& s) {
                                     bench::blocked_step(s, Kernel{}, params(), entry->analysis,
                                                         bench::blocked_row_length(entry->analysis, schedule),
                                                         accumulate, schedule, flush_subnormals);
                                   })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime()  // the background schedule's block end runs on another thread
          ->Iterations(bench::blocked_iterations(e.analysis, bench::blocked_row_length(e.analysis, schedule)));
    const std::string tuned = row + "/background_tuned";
    if (!flush && bench::tuned_row(e.analysis))
      benchmark::RegisterBenchmark(("blocked/" + tuned).c_str(),
                                   [=](benchmark::State& s) {
                                     bench::blocked_step(s, Kernel{}, params(), entry->analysis,
                                                         entry->analysis.exact_cost.background_block_length, 1,
                                                         BlockSchedule::background, false, tuned);
                                   })
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime()
          ->Iterations(bench::blocked_iterations(e.analysis, e.analysis.exact_cost.background_block_length));
    benchmark::RegisterBenchmark(("delta_pass/" + row).c_str(), [](benchmark::State& s) { bench::delta_pass(s, Kernel{}); })
        ->Unit(benchmark::kMicrosecond);
    const int background_h = e.analysis.exact_cost.background_block_length;
    benchmark::RegisterBenchmark(("sweep/" + row).c_str(),
                                 [=](benchmark::State& s) { bench::gradient_sweep(s, Kernel{}, params(), background_h); })
        ->Unit(benchmark::kMicrosecond);
    for (int T_ : flush ? std::vector<int>{1000} : std::vector<int>{10, 100, 1000})  // BPTT takes no such option
      benchmark::RegisterBenchmark(("bptt/" + row + "/" + std::to_string(T_)).c_str(),
                                   [=](benchmark::State& s) { bench::bptt<Kernel>(s, params(), T_); })
          ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

// Called by loopgrad_bench's main() before the run.
void register_exact_rows() {
#define LOOPGRAD_BENCH_EXACT(ns, expression) \
  register_exact<ns::Kernel>(#ns, expression, ns::emitted_macs_per_step, ns::n_step_values, ns::n_tangent);
  // clang-format off
  #include "bench_exact.inc"
  // clang-format on
#undef LOOPGRAD_BENCH_EXACT
}
