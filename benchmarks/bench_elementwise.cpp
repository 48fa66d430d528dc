// loopgrad_bench's rows for the element-wise cells (bench_networks.hpp, elementwise_networks()):
// IndRNN, minGRU, minLSTM, the RG-LRU and the eLSTM at 1024 units, the LRU at 1024 complex units, minGRU stacks of 2 and 4 layers at 256
// units, and the dense LSTMs of about the stacks' parameter counts. For each, side by side in the
// same run:
//   forward/<net>         the forward pass alone (forward and next_state)
//   rtrl/<net>/pruned     one exact RTRL step on the generated kernel, with the counters
//                         stored (Delta's values, Kernel::sensitivity_size()), recurrent_params
//                         (the values of the parameter groups that reach a recurrent state: the
//                         structural minimum of a single element-wise layer; the LRU's is twice
//                         that, each unit's parameters reaching both halves), params, macs (as
//                         emitted) and min_macs (the analysis's count)
// docs/benchmarks.md, "Element-wise cells", divides the two rows' ns_per_step.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "bench_networks.hpp"
#include "bench_rows.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/runtime/init.hpp"

// The kernels' headers (registered in register_elementwise_rows).
#define LOOPGRAD_BENCH_ELEMENTWISE(ns, expression)
#include "bench_elementwise.inc"
#undef LOOPGRAD_BENCH_ELEMENTWISE

namespace {

struct ElementwiseEntry {
  loopgrad::analysis::Analysis analysis;
  std::vector<double> params;
  double recurrent_params = 0;
};

template <class Kernel>
void register_elementwise(const std::string& name, const loopgrad::ir::Network& net, long long macs,
                          std::size_t step_values, std::size_t workspace) {
  static std::deque<ElementwiseEntry> entries;
  auto& e = entries.emplace_back();
  e.analysis = loopgrad::analysis::analyse(net);
  e.params = loopgrad::runtime::initial_params<double>(net, 1, 0.5);
  std::set<int> recurrent;
  for (const auto& params : e.analysis.state_params) recurrent.insert(params.begin(), params.end());
  for (int p : recurrent) e.recurrent_params += net.params[static_cast<std::size_t>(p)].size();
  const ElementwiseEntry* entry = &e;
  const Kernel kernel;
  const bench::Memory memory{8.0 * double(kernel.state_size() + 2 * kernel.sensitivity_size() + kernel.param_count() +
                                          step_values + workspace),
                             8.0 * double(step_values + kernel.target_size()),
                             8.0 * double(2 * kernel.state_size() + kernel.param_count())};
  benchmark::RegisterBenchmark(("forward/" + name).c_str(),
                               [=](benchmark::State& s) { bench::forward_only(s, Kernel{}, entry->params); })
      ->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark(("rtrl/" + name + "/pruned").c_str(), [=](benchmark::State& s) {
    bench::rtrl_step(s, Kernel{}, entry->params, macs, entry->analysis.macs_per_step, memory);
    s.counters["stored"] = static_cast<double>(Kernel{}.sensitivity_size());
    s.counters["recurrent_params"] = entry->recurrent_params;
    s.counters["params"] = static_cast<double>(Kernel{}.param_count());
  })->Unit(benchmark::kMicrosecond);
}

}  // namespace

// Called by loopgrad_bench's main() before the run.
void register_elementwise_rows() {
#define LOOPGRAD_BENCH_ELEMENTWISE(ns, expression) \
  register_elementwise<ns::Kernel>(#ns, expression, ns::emitted_macs_per_step, ns::n_step_values, ns::n_tangent);
  // clang-format off
  #include "bench_elementwise.inc"
  // clang-format on
#undef LOOPGRAD_BENCH_ELEMENTWISE
}
