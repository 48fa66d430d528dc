#pragma once
// The benchmark rows every network shares, on a generated kernel of either scalar type: an exact
// RTRL step, the blocked exact algorithm, one pass over Delta and BPTT over T steps. Used by
// bench.cpp (the networks of bench_networks.hpp) and bench_exact.cpp (the exact algorithms in
// float and at larger sizes).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/runtime/block_length_tuning.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/rtrl.hpp"

namespace bench {

template <class T = double>
std::vector<T> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(normal(rng));
  return v;
}

inline benchmark::Counter per_step_ns() {
  return benchmark::Counter(1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Bytes one stream holds: RTRL's buffers (state, Delta and the next Delta, one step's values, the
// workspace, the gradient), and BPTT's history of T steps (values and targets).
struct Memory {
  double rtrl;
  double bptt_per_step;
  double bptt_fixed;
};

template <class Kernel, class T>
void rtrl_step(benchmark::State& state, const Kernel& kernel, const std::vector<T>& params, long long macs,
               long long min_macs, Memory memory, bool flush_subnormals = false) {
  loopgrad::runtime::RtrlOptions<T> options;
  options.explosion = loopgrad::runtime::ExplosionPolicy::ignore;
  options.flush_subnormals = flush_subnormals;
  loopgrad::runtime::Rtrl<Kernel, T> rtrl(kernel, options);
  const auto input = random_vector<T>(kernel.input_size(), 1);
  const auto target = random_vector<T>(kernel.target_size(), 2);
  for (auto _ : state) {
    benchmark::DoNotOptimize(rtrl.step(params, input.data(), target.data()));
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_step"] = per_step_ns();
  state.counters["macs"] = static_cast<double>(macs);
  state.counters["min_macs"] = static_cast<double>(min_macs);
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(macs), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["rtrl_bytes"] = memory.rtrl;
  for (int e = 2; e <= 5; ++e) {
    const double steps = std::pow(10.0, e);
    state.counters["bptt_bytes_T1e" + std::to_string(e)] = memory.bptt_fixed + steps * memory.bptt_per_step;
  }
}

// The blocked exact algorithm (BlockedRtrl) on the generated kernel at block length h, a gradient
// every step (accumulate = 1) or summed over h steps (accumulate = h), with either schedule. After
// two untimed blocks (the learner's buffers reach their size) runs whole blocks (a multiple of h
// steps, about the row's registered iterations: 2e10 multiply-adds of the cost model, at least two
// blocks) and times every step, for the mean, the median, the 99th percentile and the largest
// step. With `tuned_row` (the row's name; the background schedule) h is first measured on this
// machine by tune_background_block_length from the cost model's pick, untimed, its trials printed
// to stderr under that name; the counter model_block_length keeps the model's.
template <class Kernel, class T>
void blocked_step(benchmark::State& state, const Kernel& kernel, const std::vector<T>& params,
                  const loopgrad::analysis::Analysis& a, int h, int accumulate, loopgrad::runtime::BlockSchedule schedule,
                  bool flush_subnormals = false, const std::string& tuned_row = {}) {
  loopgrad::runtime::RtrlOptions<T> options;
  options.explosion = loopgrad::runtime::ExplosionPolicy::ignore;
  options.flush_subnormals = flush_subnormals;
  const auto input = random_vector<T>(kernel.input_size(), 1);
  const auto target = random_vector<T>(kernel.target_size(), 2);
  const int model_h = h;
  const bool tune = !tuned_row.empty();
  if (tune) {
    loopgrad::runtime::BlockLengthTuningOptions tuning;
    tuning.on_trial = [&](const loopgrad::runtime::BlockLengthTrial& t) {
      std::fprintf(stderr, "%s: block length %d: mean step %.3g ms, %lld waits%s\n", tuned_row.c_str(), t.block_length,
                   t.mean_ns * 1e-6, static_cast<long long>(t.waits), t.fits ? "" : " (does not fit)");
    };
    h = loopgrad::runtime::tune_background_block_length(kernel, params, input.data(), target.data(), tuning, options)
            .block_length;
  }
  loopgrad::runtime::BlockedRtrl<Kernel, T> blocked(kernel, h, accumulate, options, schedule);
  for (int j = 0; j < 2 * h; ++j) blocked.observe(params, input.data(), target.data());
  std::vector<double> times;
  times.reserve(static_cast<std::size_t>(state.max_iterations + h));
  while (state.KeepRunningBatch(h))  // whole blocks: at least max_iterations steps
    for (int j = 0; j < h; ++j) {
      const auto start = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(blocked.observe(params, input.data(), target.data()));
      benchmark::ClobberMemory();
      times.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count());
    }
  std::sort(times.begin(), times.end());
  const double model = static_cast<double>(loopgrad::analysis::blocked_macs_per_step(a, h));
  state.counters["ns_per_step"] = per_step_ns();
  state.counters["block_length"] = h;
  if (tune) state.counters["model_block_length"] = model_h;
  state.counters["accumulate"] = accumulate;
  state.counters["model_macs"] = model;
  state.counters["model_rtrl_macs"] = static_cast<double>(a.exact_cost.rtrl_macs);
  state.counters["chosen_blocked"] = a.exact_cost.choice == loopgrad::analysis::ExactAlgorithm::blocked ? 1 : 0;
  state.counters["median_ns"] = times[times.size() / 2];
  state.counters["p99_ns"] = times[times.size() * 99 / 100];
  state.counters["max_ns"] = times.back();
  // What the learner holds: Delta_s and the Delta being built, the stored steps and parameter
  // vectors, and the block end's buffers.
  state.counters["blocked_bytes"] = double(blocked.memory_bytes());
}

// The floor of an exact step with a gradient every step on a dense recurrence: one pass over the
// stored Delta with one adjoint (the kernel's apply_sensitivity, Eqn. 5). Bytes read per second.
template <class Kernel>
void delta_pass(benchmark::State& state, const Kernel& kernel) {
  using T = typename Kernel::Scalar;
  const auto delta = random_vector<T>(kernel.sensitivity_size(), 5);
  const auto adjoint = random_vector<T>(kernel.state_size(), 6);
  std::vector<T> gradient(kernel.param_count(), T(0));
  for (auto _ : state) {
    kernel.apply_sensitivity(delta.data(), adjoint.data(), gradient.data());
    benchmark::ClobberMemory();
  }
  state.counters["bytes_per_s"] =
      benchmark::Counter(double(sizeof(T)) * double(kernel.sensitivity_size()), benchmark::Counter::kIsIterationInvariantRate);
}

// The background schedule's gradient sweep alone at block length h: one adjoint column reversed
// through 1.5 h stored steps (on average: the current block's steps and all of the closing
// block's, until the block end on the second thread is done) with the kernel's reverse pass over
// columns, the dense parameters' terms of as many steps added as one product as BlockedRtrl's
// sweep adds (its steps_per_product). With delta_pass it gives what the background schedule's
// caller does at least every step. Kernels without a reverse pass over columns skip the row.
template <class Kernel>
void gradient_sweep(benchmark::State& state, const Kernel& kernel, const std::vector<typename Kernel::Scalar>& params,
                    int h) {
  using T = typename Kernel::Scalar;
  if constexpr (requires(const typename Kernel::Step* const* held, T* x) {
                  kernel.reverse_columns(x, *held[0], std::size_t{1}, x, x, x, std::size_t{1}, x, x);
                  kernel.dense_gradients(held, std::size_t{1}, std::size_t{1}, x, x, std::size_t{1}, x);
                }) {
    const std::size_t block = static_cast<std::size_t>(std::max(h, 1));
    const std::size_t flush = loopgrad::runtime::BlockedRtrl<Kernel, T>::steps_per_product(kernel, block, 1);
    const std::size_t n = 3 * block / 2, S = kernel.state_size(), P = kernel.param_count();  // n >= 1: block >= 1
    std::vector<typename Kernel::Step> stored(n);
    std::vector<T> r(S, T(0));
    for (std::size_t j = 0; j < n; ++j) {
      const auto input = random_vector<T>(kernel.input_size(), static_cast<unsigned>(j));
      kernel.forward(params.data(), r.data(), input.data(), stored[j]);
      kernel.next_state(stored[j], r.data());
    }
    const auto seed = random_vector<T>(S, 10);
    std::vector<T> adjoint(S), prev(S), gradient(P, T(0));
    std::vector<T> dense(flush * Kernel::dense_adjoint_rows), work(Kernel::column_workspace(1, flush));
    std::vector<const typename Kernel::Step*> held(flush);
    for (auto _ : state) {
      std::copy(seed.begin(), seed.end(), adjoint.begin());
      std::size_t k = 0;
      for (std::size_t j = n; j-- > 0;) {
        kernel.reverse_columns(params.data(), stored[j], 1, adjoint.data(), prev.data(), gradient.data(), P,
                               dense.data() + k * Kernel::dense_adjoint_rows, work.data());
        held[k++] = &stored[j];
        adjoint.swap(prev);
        if (k == flush || j == 0) {
          kernel.dense_gradients(held.data(), k, 1, dense.data(), gradient.data(), P, work.data());
          k = 0;
        }
      }
      benchmark::ClobberMemory();
    }
    state.counters["swept_steps"] = static_cast<double>(n);
    state.counters["ns_per_swept_step"] =
        benchmark::Counter(1e-9 * static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  } else {
    state.SkipWithError("the kernel has no reverse pass over columns");
  }
}

// The sensitivity update alone (Eqn. 4: Kernel::sensitivity_update after one forward pass), for
// the efficiency of the emitted dense products against OpenBLAS on the same shapes (the blas/ row).
template <class Kernel>
void update_pass(benchmark::State& state, const Kernel& kernel, const std::vector<typename Kernel::Scalar>& params,
                 long long macs) {
  using T = typename Kernel::Scalar;
  const auto delta_prev = random_vector<T>(kernel.sensitivity_size(), 7);
  std::vector<T> delta_next(kernel.sensitivity_size());
  const auto recurrent = random_vector<T>(kernel.state_size(), 8);
  const auto input = random_vector<T>(kernel.input_size(), 9);
  typename Kernel::Step step;
  kernel.forward(params.data(), recurrent.data(), input.data(), step);
  for (auto _ : state) {
    kernel.sensitivity_update(params.data(), step, delta_prev.data(), delta_next.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(macs), benchmark::Counter::kIsIterationInvariantRate);
}

// The forward pass alone (forward and next_state), the unit the exact step is measured in.
template <class Kernel>
void forward_only(benchmark::State& state, const Kernel& kernel, const std::vector<typename Kernel::Scalar>& params) {
  using T = typename Kernel::Scalar;
  typename Kernel::Step step;
  std::vector<T> r(kernel.state_size(), T(0));
  const auto input = random_vector<T>(kernel.input_size(), 1);
  for (auto _ : state) {
    kernel.forward(params.data(), r.data(), input.data(), step);
    kernel.next_state(step, r.data());
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_step"] = per_step_ns();
}

// Whether a network gets the row blocked/<net>/background_tuned: the cost model picks the blocked
// algorithm (the tuner starts from the kernel's recommended background block length, 0 where RTRL
// is picked), and a step costs at most 3e8 multiply-adds by the model (the tuner's trials run five
// blocks each: a few seconds on Elman 256 and LSTM 128).
inline bool tuned_row(const loopgrad::analysis::Analysis& a) {
  const int h = a.exact_cost.background_block_length;
  return a.exact_cost.choice == loopgrad::analysis::ExactAlgorithm::blocked && h >= 1 &&
         loopgrad::analysis::blocked_macs_per_step(a, h) <= 300'000'000;
}

// The last part of a blocked row's name: accumulate:<m> with the block-end schedule, else the
// schedule's name (real_time, background).
inline std::string blocked_row(int accumulate, loopgrad::runtime::BlockSchedule schedule) {
  return schedule == loopgrad::runtime::BlockSchedule::block_end ? "accumulate:" + std::to_string(accumulate)
                                                                 : loopgrad::runtime::schedule_name(schedule);
}

// The block length of a blocked row: the cost model's pick for its schedule (the background
// schedule's own, ExactCost::background_block_length; the others run at block_length).
inline int blocked_row_length(const loopgrad::analysis::Analysis& a, loopgrad::runtime::BlockSchedule schedule) {
  return schedule == loopgrad::runtime::BlockSchedule::background ? a.exact_cost.background_block_length
                                                                   : a.exact_cost.block_length;
}

// Steps for blocked_step: whole blocks, about 2e10 multiply-adds by the model, at least two blocks.
inline benchmark::IterationCount blocked_iterations(const loopgrad::analysis::Analysis& a, int h) {
  const double per_step = std::max<double>(1.0, static_cast<double>(loopgrad::analysis::blocked_macs_per_step(a, h)));
  const auto blocks = static_cast<benchmark::IterationCount>(std::ceil(std::min(2e10 / per_step, 2e5) / h));
  return std::max<benchmark::IterationCount>(2, blocks) * h;
}

// Full BPTT over T steps with the generated kernel: the same exact gradient at step T without the
// sensitivity.
template <class Kernel>
void bptt(benchmark::State& state, const std::vector<typename Kernel::Scalar>& params, int steps) {
  using Scalar = typename Kernel::Scalar;
  const Kernel kernel;
  loopgrad::runtime::Sequence<Scalar> seq;
  for (int t = 0; t < steps; ++t) {
    seq.inputs.push_back(random_vector<Scalar>(kernel.input_size(), static_cast<unsigned>(t)));
    seq.targets.emplace_back(random_vector<Scalar>(kernel.target_size(), static_cast<unsigned>(t) + 7));
  }
  for (auto _ : state) benchmark::DoNotOptimize(loopgrad::runtime::bptt_gradient(kernel, params, seq).loss);
  state.counters["T"] = steps;
}

}  // namespace bench
