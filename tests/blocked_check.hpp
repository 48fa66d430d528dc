#pragma once
// The check of the blocked exact algorithm on any kernel (the interpreter or a generated one):
// BlockedRtrl beside ExactRtrl on one kernel, fed the same steps, must hand out the same
// gradients at every step, the same losses and states, and at every block end RTRL's Delta_N.
// With `adam`, the reference's gradient updates the shared parameters every time it is ready, so
// both run through the same sequence of changing parameters.
#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "compare.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace loopgrad::testing {

struct BlockedCase {
  int block_length = 1;
  int accumulate = 1;
  bool adam = false;
  double attenuation = 1;
  runtime::BlockSchedule schedule = runtime::BlockSchedule::block_end;
};

inline const char* schedule_label(runtime::BlockSchedule s) {
  switch (s) {
    case runtime::BlockSchedule::real_time: return ", real-time schedule";
    case runtime::BlockSchedule::background: return ", background schedule";
    case runtime::BlockSchedule::block_end: break;
  }
  return "";
}

// Returns the worst relative difference seen; CHECKs each against `tolerance`.
template <class Kernel, class T>
double check_blocked(const Kernel& kernel, const ir::Network& net, const runtime::Sequence<T>& seq, BlockedCase c,
                     double tolerance) {
  INFO("block length " << c.block_length << ", accumulate " << c.accumulate << (c.adam ? ", Adam every update" : ", fixed parameters")
                       << ", attenuation " << c.attenuation << schedule_label(c.schedule));
  runtime::RtrlOptions<T> options;
  options.attenuation = T(c.attenuation);
  options.explosion = runtime::ExplosionPolicy::ignore;
  runtime::ExactRtrl<Kernel, T> reference(kernel, c.accumulate, options);
  runtime::BlockedRtrl<Kernel, T> blocked(kernel, c.block_length, c.accumulate, options, c.schedule);
  // RTRL's Delta at the block boundaries not yet checked (with real_time and background one is
  // complete a block later).
  std::vector<std::pair<std::int64_t, std::vector<T>>> boundaries;
  auto params = runtime::initial_params<T>(net, 11, 0.8);
  runtime::Adam<T> adam;
  adam.rate = T(0.01);
  double worst = 0;
  auto check = [&](double d) {
    worst = std::max(worst, d);
    CHECK(d <= tolerance);
  };
  for (std::size_t t = 0; t < seq.size(); ++t) {
    INFO("step " << t);
    const T want = reference.observe(params, seq.inputs[t].data(), seq.target(t));
    const T got = blocked.observe(params, seq.inputs[t].data(), seq.target(t));
    check(relative_difference(&got, &want, 1));
    REQUIRE(blocked.gradient_ready() == reference.gradient_ready());
    check(relative_difference(blocked.state().data(), reference.rtrl().state().data(), kernel.state_size()));
    if (blocked.block_steps() == 0) boundaries.emplace_back(static_cast<std::int64_t>(t + 1), reference.rtrl().sensitivity());
    while (!boundaries.empty() && boundaries.front().first <= blocked.sensitivity_step()) {
      if (boundaries.front().first == blocked.sensitivity_step())
        check(relative_difference(blocked.sensitivity().data(), boundaries.front().second.data(), kernel.sensitivity_size()));
      boundaries.erase(boundaries.begin());
    }
    CHECK(boundaries.size() <= 2);
    if (reference.gradient_ready()) {
      check(relative_difference(blocked.gradient().data(), reference.gradient().data(), params.size()));
      if (c.adam) adam.apply(params, reference.gradient());
    }
  }
  return worst;
}

// The block lengths for a network of n_R state units and a sequence of T steps: 1, 2, 3,
// 7, n_R and longer than T; each with fixed parameters and with Adam, and once accumulated over 4
// steps and once attenuated. The real-time schedule at 2, 7 and n_R with Adam, and accumulated and
// attenuated; the background schedule at 1, 7 and n_R with Adam, and accumulated and attenuated.
inline std::vector<BlockedCase> blocked_cases(std::size_t state_units, std::size_t steps) {
  std::vector<BlockedCase> out;
  for (int h : {1, 2, 3, 7, static_cast<int>(state_units), static_cast<int>(steps) + 1})
    for (bool adam : {false, true}) out.push_back({h, 1, adam, 1});
  out.push_back({3, 4, true, 1});
  out.push_back({5, 2, false, 0.7});
  for (const auto schedule : {runtime::BlockSchedule::real_time, runtime::BlockSchedule::background}) {
    const bool real_time = schedule == runtime::BlockSchedule::real_time;
    for (int h : {real_time ? 2 : 1, 7, static_cast<int>(state_units)}) out.push_back({h, 1, true, 1, schedule});
    out.push_back({3, 4, true, 1, schedule});
    out.push_back({5, 2, false, 0.7, schedule});
  }
  return out;
}

}  // namespace loopgrad::testing
