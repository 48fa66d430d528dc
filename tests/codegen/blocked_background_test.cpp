// BlockedRtrl's background schedule under ThreadSanitizer, on generated kernels: the block end's
// rows on a second thread while the learner's thread runs the next block, the parameters changing
// every step. Its gradients are the block_end schedule's to rounding (both are exact RTRL's:
// test_codegen and test_runtime check them against it), bit for bit the same on every run; a copy,
// a move and a snapshot restored, each taken while a block end runs, go on bit for bit as the
// original does.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <vector>

#include "../compare.hpp"
#include "k_lstm_f.hpp"
#include "k_multi_loop.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"

namespace {

using loopgrad::runtime::BlockedRtrl;
using loopgrad::runtime::BlockSchedule;

template <class Kernel, class T>
void check_background(double tolerance) {
  using Learner = BlockedRtrl<Kernel, T>;
  const Kernel k;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  auto random = [&](std::size_t n) {
    std::vector<T> v(n);
    for (auto& x : v) x = T(u(rng));
    return v;
  };
  constexpr int h = 6;
  constexpr std::size_t steps = 8 * h + 3;
  std::vector<T> params = random(k.param_count());
  Learner block_end(k, h, 1, {}, BlockSchedule::block_end), background(k, h, 1, {}, BlockSchedule::background),
      again(k, h, 1, {}, BlockSchedule::background);
  std::optional<Learner> copied, moved, restored;
  double worst = 0;
  for (std::size_t t = 0; t < steps; ++t) {
    INFO("step " << t);
    const auto input = random(k.input_size()), target = random(k.target_size());
    const T want = block_end.observe(params, input.data(), target.data());
    const T got = background.observe(params, input.data(), target.data());
    CHECK(got == want);  // the forward pass is the same
    again.observe(params, input.data(), target.data());
    worst = std::max(worst, loopgrad::testing::relative_difference(background.gradient().data(), block_end.gradient().data(),
                                                                 k.param_count()));
    CHECK(again.gradient() == background.gradient());
    for (auto* other : {&copied, &moved, &restored})
      if (other->has_value()) {
        (*other)->observe(params, input.data(), target.data());
        CHECK((*other)->gradient() == background.gradient());
      }
    // Mid-block, the previous block's end running on the other thread.
    if (t == 2 * h + 1) {
      copied.emplace(background);
      restored.emplace(k, h, 1, loopgrad::runtime::RtrlOptions<T>{}, BlockSchedule::background);
      restored->restore(background.snapshot());
    }
    if (t == 4 * h + 2) {
      moved.emplace(std::move(*copied));
      copied.reset();
    }
    // New parameters every step: each stored step is reversed with the ones it ran with.
    for (std::size_t i = 0; i < params.size(); ++i) params[i] -= T(0.01) * block_end.gradient()[i];
  }
  CHECK(worst <= tolerance);
  CHECK(background.state() == block_end.state());
  CHECK(moved.has_value());
  CHECK(restored->steps() == background.steps());
}

}  // namespace

TEST_CASE("the background schedule's gradients are the block_end schedule's, on the multi-loop network") {
  check_background<k_multi_loop::Kernel, double>(1e-12);
}

TEST_CASE("the background schedule's gradients are the block_end schedule's, on the float LSTM") {
  check_background<k_lstm_f::Kernel, float>(1e-4);
}
