#pragma once
// The background schedule's block length, measured on the machine that runs it.
//
// Under BlockSchedule::background the block end runs on a second thread while the caller steps
// through the next block; the caller's step grows with the block length h (its gradient sweeps
// back about 1.5 h steps), so the best h is the least at which the block end still fits in the
// next block's steps. The cost model (ExactCost::background_block_length, the kernel's
// recommended_background_block_length()) predicts that h from weights fitted on a few machines;
// how fast a block end runs beside the caller depends on the machine's caches and memory bus (on
// an AMD Zen 4 machine the model's 107 for Elman 256 and LSTM 128 left room: 96 and 77 still fit
// there; on an Intel one a block length that fit on paper overran in one run of three).
// tune_background_block_length measures candidates instead: one short run of
// the learner per candidate, on the caller's parameters and one input, no gradient applied. A
// candidate fits when no block's last step waited for the block end before it
// (BlockedRtrl::background_waits): the count, not a step time, decides.
//
// The choice does not touch exactness: every block length gives RTRL's gradients to rounding.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/runtime/blocked_rtrl.hpp"

namespace loopgrad::runtime {

/// What one trial measured: the caller's step times (ns) over whole blocks, and how many of those
/// blocks' last steps waited for a block end still running (BlockedRtrl::background_waits).
struct TrialSteps {
  std::vector<double> step_ns;  ///< every timed step, in order
  std::int64_t waits = 0;       ///< block ends a block's last step waited for
};

/// One candidate block length's trial, summarised.
struct BlockLengthTrial {
  int block_length = 0;  ///< h
  double mean_ns = 0;    ///< the caller's mean step
  double median_ns = 0;  ///< its median step
  double max_ns = 0;     ///< its largest step (a block's last step: it finishes and starts a block end)
  std::int64_t waits = 0;  ///< block ends that did not fit in the next block's steps
  bool fits = false;       ///< no wait
};

/// What tune_background_block_length picked, and every trial it ran, in order.
struct BlockLengthTuning {
  int block_length = 0;                  ///< the pick, for BlockedRtrl with BlockSchedule::background
  std::vector<BlockLengthTrial> trials;  ///< every trial, in the order run
};

/// How search_block_length and tune_background_block_length search.
struct BlockLengthTuningOptions {
  /// Each smaller candidate is this share of the one before (rounded down, at least one less);
  /// each larger one the one before divided by it (rounded up, at least one more).
  double shrink = 0.9;
  int timed_blocks = 3;    ///< blocks timed per trial, after two untimed ones
  int max_trials = 12;     ///< trials in all; the search ends with what it has then
  /// Called after every trial (progress: a trial of Elman 256 takes about 3 s).
  std::function<void(const BlockLengthTrial&)> on_trial;
};

/// Summarises one trial: mean, median and largest step (nanoseconds), its waits, and whether it
/// fits (no wait).
inline BlockLengthTrial summarize_trial(int block_length, TrialSteps trial) {
  auto& step_ns = trial.step_ns;
  if (step_ns.empty())
    throw std::invalid_argument("summarize_trial: the trial at block length " + std::to_string(block_length) +
                                " timed no steps");
  BlockLengthTrial t;
  t.block_length = block_length;
  double sum = 0;
  for (double x : step_ns) sum += x;
  t.mean_ns = sum / static_cast<double>(step_ns.size());
  std::sort(step_ns.begin(), step_ns.end());
  t.median_ns = step_ns[step_ns.size() / 2];
  t.max_ns = step_ns.back();
  t.waits = trial.waits;
  t.fits = trial.waits == 0;
  return t;
}

/// The search, on any trial runner: `measure(h)` returns the caller's step times (ns) over whole
/// blocks at block length h and the waits among them. From `start` (the cost model's pick) it
/// shrinks h by `shrink` while the trials fit, and picks the candidate one above the least that
/// fit: the least one fit with an unknown margin (the next smaller waited), the one above it with
/// about 1 / shrink of it. If `start` itself does not fit, it grows h until a candidate fits and
/// picks the one above that (the one above the last tried if none fits within max_trials). At
/// block length 1 (nothing smaller to try) it picks 1 if that fits. Throws std::invalid_argument
/// for a start below 1 or a shrink outside (0, 1).
inline BlockLengthTuning search_block_length(int start, const std::function<TrialSteps(int)>& measure,
                                             const BlockLengthTuningOptions& options = {}) {
  if (start < 1)
    throw std::invalid_argument("search_block_length: the starting block length is " + std::to_string(start) +
                                "; give the kernel's recommended_background_block_length() (at least 1)");
  if (!(options.shrink > 0 && options.shrink < 1))
    throw std::invalid_argument("search_block_length: shrink must lie strictly between 0 and 1");
  const auto smaller = [&](int h) { return std::min(h - 1, static_cast<int>(std::floor(h * options.shrink))); };
  const auto larger = [&](int h) { return std::max(h + 1, static_cast<int>(std::ceil(h / options.shrink))); };
  BlockLengthTuning out;
  const auto trial = [&](int h) {
    out.trials.push_back(summarize_trial(h, measure(h)));
    if (options.on_trial) options.on_trial(out.trials.back());
    return out.trials.back().fits;
  };
  int h = start;
  if (trial(h)) {
    int above = h;  // the candidate one above the least that fit so far (h itself at the start)
    while (h > 1 && static_cast<int>(out.trials.size()) < options.max_trials) {
      const int next = std::max(smaller(h), 1);
      if (!trial(next)) break;
      above = h;
      h = next;
    }
    out.block_length = h == 1 ? 1 : above;  // h is the least that fit: the loop moves only to fitting lengths
    return out;
  }
  while (static_cast<int>(out.trials.size()) < options.max_trials) {
    h = larger(h);
    if (trial(h)) break;
  }
  out.block_length = larger(h);
  return out;
}

/// The caller's step times (ns) under the background schedule at block length h, and the waits
/// among them: a fresh learner, two untimed blocks (its buffers reach their size, its block ends
/// start), then `timed_blocks` blocks, every step observing `input` and `target` with `params`
/// (nothing is applied).
template <class Kernel, class T>
TrialSteps time_background_steps(const Kernel& kernel, int h, const std::vector<T>& params, const T* input,
                                 const T* target, int timed_blocks = 3, RtrlOptions<T> options = {}) {
  BlockedRtrl<Kernel, T> learner(kernel, h, 1, options, BlockSchedule::background);
  for (int j = 0; j < 2 * h; ++j) learner.observe(params, input, target);
  const std::int64_t waits_before = learner.background_waits();
  TrialSteps out;
  out.step_ns.reserve(static_cast<std::size_t>(std::max(timed_blocks, 1) * h));
  for (int j = 0; j < std::max(timed_blocks, 1) * h; ++j) {
    const auto begin = std::chrono::steady_clock::now();
    learner.observe(params, input, target);
    out.step_ns.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - begin).count());
  }
  out.waits = learner.background_waits() - waits_before;
  return out;
}

/// The background schedule's block length for this kernel on this machine: search_block_length
/// from the cost model's pick (kernel.recommended_background_block_length()), each candidate timed
/// by time_background_steps. Pass the parameters and an input and target like the ones training
/// will see (the step's cost does not depend on their values, but subnormal numbers can).
/// Give the pick to BlockedRtrl (or ExactOnline's block_length) with BlockSchedule::background.
/// Throws std::invalid_argument where the cost model picks RTRL (a recommended block length of 0:
/// the blocked algorithm costs more there; search_block_length takes any start).
template <class Kernel, class T>
BlockLengthTuning tune_background_block_length(const Kernel& kernel, const std::vector<T>& params, const T* input,
                                               const T* target, const BlockLengthTuningOptions& options = {},
                                               RtrlOptions<T> rtrl_options = {}) {
  const int start = kernel.recommended_background_block_length();
  if (start < 1)
    throw std::invalid_argument(
        "tune_background_block_length: the cost model picks RTRL for this network (its recommended background "
        "block length is 0), so there is no blocked schedule to tune; use ExactRtrl, or call search_block_length "
        "with a start of your own");
  const auto measure = [&](int h) {
    return time_background_steps(kernel, h, params, input, target, options.timed_blocks, rtrl_options);
  };
  return search_block_length(start, measure, options);
}

}  // namespace loopgrad::runtime
