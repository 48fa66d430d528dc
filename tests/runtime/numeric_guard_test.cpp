// The learners' guard on non-finite numbers (the exact ones and the BPTT-style ones alike): a NaN or infinite input or target, or a loss
// that overflows (a target of 1e300), is thrown as NonFiniteValue under ExplosionPolicy::fail
// before the learner advances, so the run continues from where it was exactly as if the bad step
// had never been offered; warn reports it once; ignore lets it through. Messages print numbers in
// %g form.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../compare.hpp"
#include "../networks.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"

using namespace loopgrad;

namespace {

using Kernel = runtime::Interpreter<double>;

runtime::RtrlOptions<double> policy(runtime::ExplosionPolicy p) {
  runtime::RtrlOptions<double> o;
  o.explosion = p;
  return o;
}

// Feeds `learner` a good sequence, offering after every third step a bad one (one of `bad`) that
// must be refused, and feeds `reference` the good sequence alone: losses, gradients and states
// must agree bit for bit, and the refusals must name what was wrong.
template <class Learner, class State>
void check_refusals(Learner& learner, Learner& reference, const Kernel& k, const ir::Network& net, State state) {
  const auto params = runtime::initial_params<double>(net, 5);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 30, 9);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct Bad {
    std::vector<double> input, target;
    std::string message;
  };
  const std::vector<double> good_input(k.input_size(), 0.5), good_target(k.target_size(), 0.1);
  auto with = [](std::vector<double> v, std::size_t i, double x) {
    v[i] = x;
    return v;
  };
  const std::vector<Bad> bad = {
      {good_input, with(good_target, 1, nan), "non-finite target at step {}: entry 1 is nan; check the data"},
      {with(good_input, 0, inf), good_target, "non-finite input at step {}: entry 0 is inf; check the data"},
      {good_input, with(good_target, 0, 1e300), "non-finite loss at step {}: entry 0 is inf"},
  };
  int refused = 0;
  for (std::size_t t = 0; t < seq.size(); ++t) {
    INFO("step " << t + 1);
    if (t % 3 == 2) {
      const Bad& b = bad[t % bad.size()];
      std::string message = b.message;
      message.replace(message.find("{}"), 2, std::to_string(t + 1));
      const auto before = state(learner);
      CHECK_THROWS_WITH_AS(learner.observe(params, b.input.data(), b.target.data()), doctest::Contains(message.c_str()),
                           runtime::NonFiniteValue);
      CHECK(state(learner) == before);
      ++refused;
    }
    const double got = learner.observe(params, seq.inputs[t].data(), seq.target(t));
    const double want = reference.observe(params, seq.inputs[t].data(), seq.target(t));
    CHECK(got == want);
    REQUIRE(learner.gradient_ready() == reference.gradient_ready());
    if (learner.gradient_ready()) CHECK(learner.gradient() == reference.gradient());
    CHECK(state(learner) == state(reference));
  }
  CHECK(refused == 10);
}

}  // namespace

TEST_CASE("exact RTRL refuses non-finite inputs, targets and losses before it advances") {
  const auto net = dsl::lower(cells::elman_network<3, 5, 2>());
  const Kernel k(net);
  for (int accumulate : {1, 4}) {
    INFO("accumulate " << accumulate);
    runtime::ExactRtrl<Kernel, double> learner(k, accumulate, policy(runtime::ExplosionPolicy::fail));
    runtime::ExactRtrl<Kernel, double> reference(k, accumulate, policy(runtime::ExplosionPolicy::fail));
    check_refusals(learner, reference, k, net, [](const runtime::ExactRtrl<Kernel, double>& l) {
      auto s = l.rtrl().state();
      s.insert(s.end(), l.rtrl().sensitivity().begin(), l.rtrl().sensitivity().end());
      s.insert(s.end(), l.gradient().begin(), l.gradient().end());
      s.push_back(static_cast<double>(l.rtrl().steps()));
      s.push_back(l.gradient_ready() ? 1.0 : 0.0);
      return s;
    });
  }
}

TEST_CASE("the blocked exact learner refuses them too, with both schedules") {
  const auto net = dsl::lower(cells::elman_network<3, 5, 2>());
  const Kernel k(net);
  for (auto schedule :
       {runtime::BlockSchedule::block_end, runtime::BlockSchedule::real_time, runtime::BlockSchedule::background}) {
    using Learner = runtime::BlockedRtrl<Kernel, double>;
    Learner learner(k, 4, 2, policy(runtime::ExplosionPolicy::fail), schedule);
    Learner reference(k, 4, 2, policy(runtime::ExplosionPolicy::fail), schedule);
    check_refusals(learner, reference, k, net, [](const Learner& l) {
      auto s = l.state();
      s.insert(s.end(), l.sensitivity().begin(), l.sensitivity().end());
      s.insert(s.end(), l.gradient().begin(), l.gradient().end());
      s.push_back(static_cast<double>(l.steps()));
      s.push_back(static_cast<double>(l.block_steps()));
      s.push_back(l.gradient_ready() ? 1.0 : 0.0);
      return s;
    });
  }
}

TEST_CASE("truncated BPTT, the N-th order approximation and random truncation refuse them too") {
  const auto net = dsl::lower(cells::elman_network<3, 5, 2>());
  const Kernel k(net);
  auto state_of = [](const auto& l) {
    auto s = l.state();
    s.insert(s.end(), l.gradient().begin(), l.gradient().end());
    s.push_back(l.gradient_ready() ? 1.0 : 0.0);
    return s;
  };
  {
    runtime::TruncatedBptt<Kernel, double> learner(k, 2, 4, runtime::ExplosionPolicy::fail);
    runtime::TruncatedBptt<Kernel, double> reference(k, 2, 4, runtime::ExplosionPolicy::fail);
    check_refusals(learner, reference, k, net, state_of);
  }
  {
    runtime::NthOrder<Kernel, double> learner(k, 3, runtime::ExplosionPolicy::fail);
    runtime::NthOrder<Kernel, double> reference(k, 3, runtime::ExplosionPolicy::fail);
    check_refusals(learner, reference, k, net, state_of);
  }
  {
    // A refused step draws no random number: the cuts stay where the reference makes them.
    runtime::RandomTruncation<Kernel, double> learner(k, 0.3, 11, 0, runtime::ExplosionPolicy::fail);
    runtime::RandomTruncation<Kernel, double> reference(k, 0.3, 11, 0, runtime::ExplosionPolicy::fail);
    check_refusals(learner, reference, k, net, state_of);
  }
}

TEST_CASE("under warn a non-finite value is reported once and the step runs; under ignore it runs silently") {
  const auto net = dsl::lower(cells::elman_network<3, 5, 2>());
  const Kernel k(net);
  const auto params = runtime::initial_params<double>(net, 5);
  const std::vector<double> input(k.input_size(), 0.5), target = {std::numeric_limits<double>::quiet_NaN(), 0.1};
  for (auto p : {runtime::ExplosionPolicy::warn, runtime::ExplosionPolicy::ignore}) {
    runtime::ExactRtrl<Kernel, double> learner(k, 1, policy(p));
    CHECK_NOTHROW(learner.observe(params, input.data(), target.data()));
    CHECK(learner.rtrl().steps() == 1);
    bool any_nan = false;
    for (double g : learner.gradient()) any_nan = any_nan || std::isnan(g);
    CHECK(any_nan);
  }
}

TEST_CASE("messages print numbers in %g form and name a non-finite entry of Delta") {
  CHECK(runtime::format_number(110168288866829363838976.0) == "1.10168e+23");
  CHECK(runtime::format_number(0.25) == "0.25");
  std::vector<double> delta = {1.0, std::numeric_limits<double>::infinity(), 2.0};
  bool warned = false;
  CHECK_THROWS_WITH_AS(runtime::check_sensitivity_growth(delta, policy(runtime::ExplosionPolicy::fail), 7, warned),
                       "temporal gradient explosion at step 7: the sensitivity dR/dP reached a non-finite value (inf at "
                       "entry 1) (threshold 1e+08); lower the learning rate, clip gradients, or set an attenuation factor "
                       "below 1 (an approximation)",
                       runtime::TemporalGradientExplosion);
}

#if defined(__SSE__)
TEST_CASE("flush_subnormals: subnormal numbers are zero inside a step and only there, exceptions included") {
  // 1e-30f * 1e-10f = 1e-40f is subnormal in float: zero with flush-to-zero, nonzero without.
  const auto product = [] {
    volatile float a = 1e-30f, b = 1e-10f;
    return a * b;
  };
  // The thread's mode: MXCSR without its status flags (bits 0-5, raised by any computation).
  const auto mode = [] { return _mm_getcsr() & ~0x3Fu; };
  const unsigned before = mode();
  CHECK(product() != 0.0f);
  {
    const runtime::SubnormalsFlushed flushed(true);
    CHECK(product() == 0.0f);
  }
  CHECK(mode() == before);
  CHECK(product() != 0.0f);
  {
    const runtime::SubnormalsFlushed off(false);
    CHECK(product() != 0.0f);
  }
  CHECK_THROWS_AS(([] {
                    const runtime::SubnormalsFlushed flushed(true);
                    throw std::runtime_error("thrown inside");
                  }()),
                  std::runtime_error);
  CHECK(mode() == before);

  // A float LSTM run long enough for its sensitivity to decay: the learners with the option give
  // RTRL's gradients without it (float tolerance), and leave the thread's mode as it was, also
  // when a step is refused.
  using K = runtime::Interpreter<float>;
  const auto net = dsl::lower(cells::lstm_network<3, 5, 2>());
  const K k(net);
  const auto params = runtime::initial_params<float>(net, 2, 0.3);
  const auto seq = testing::random_sequence<float>(net, k.input_size(), 200, 4);
  runtime::RtrlOptions<float> flush;
  flush.flush_subnormals = true;
  flush.explosion = runtime::ExplosionPolicy::fail;
  runtime::ExactRtrl<K, float> plain(k);
  runtime::ExactRtrl<K, float> exact(k, 1, flush);
  runtime::BlockedRtrl<K, float> blocked(k, 7, 1, flush);
  double worst = 0;
  for (std::size_t t = 0; t < seq.size(); ++t) {
    plain.observe(params, seq.inputs[t].data(), seq.target(t));
    exact.observe(params, seq.inputs[t].data(), seq.target(t));
    blocked.observe(params, seq.inputs[t].data(), seq.target(t));
    CHECK(mode() == before);
    worst = std::max({worst, testing::relative_difference(exact.gradient().data(), plain.gradient().data(), params.size()),
                      testing::relative_difference(blocked.gradient().data(), plain.gradient().data(), params.size())});
  }
  CHECK(worst <= 1e-4);
  std::vector<float> bad(k.input_size(), std::numeric_limits<float>::quiet_NaN());
  CHECK_THROWS_AS(blocked.observe(params, bad.data(), seq.target(0)), runtime::NonFiniteValue);
  CHECK(mode() == before);
}
#endif
