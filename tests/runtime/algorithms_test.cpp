// The training algorithms against independent computations: N-th order and truncated BPTT reduce
// to full BPTT where they should, truncated BPTT equals finite differences of the hand-unrolled,
// detached computation, the random-truncation estimate is unbiased, attenuation 0 is the
// 1st-order approximation, exploding sensitivities are caught, and the optimizers and clipping
// follow their closed forms; the layer_local approximation equals a BPTT with the same paths cut.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "../networks.hpp"
#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/clipping.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

using namespace loopgrad;
using Kernel = runtime::Interpreter<double>;

namespace {

runtime::Sequence<double> sequence(const Kernel& k, std::size_t steps, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  runtime::Sequence<double> seq;
  for (std::size_t t = 0; t < steps; ++t) {
    std::vector<double> x(k.input_size()), y(k.target_size());
    for (auto& v : x) v = normal(rng);
    for (auto& v : y) v = 0.5 * normal(rng);
    seq.inputs.push_back(x);
    seq.targets.emplace_back(y);
  }
  return seq;
}

double max_abs_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

// Sum of the gradients a learner hands out over a sequence, parameters fixed.
template <class Learner>
std::vector<double> summed_gradient(Learner& learner, const std::vector<double>& params, const runtime::Sequence<double>& seq) {
  std::vector<double> sum(params.size(), 0.0);
  for (std::size_t t = 0; t < seq.size(); ++t) {
    learner.observe(params, seq.inputs[t].data(), seq.target(t));
    if (learner.gradient_ready())
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += learner.gradient()[i];
  }
  return sum;
}

}  // namespace

TEST_CASE("N-th order with N >= T, truncated BPTT with k1 = k2 = T, and RTRL all equal full BPTT") {
  const Kernel k(dsl::lower(testing::multi_loop_network()));
  const auto params = runtime::initial_params<double>(k.network(), 1);
  const auto seq = sequence(k, 12, 2);
  const auto full = runtime::bptt_gradient(k, params, seq).gradient;
  const double scale = max_abs(full);

  runtime::NthOrder<Kernel, double> nth(k, 12);
  CHECK(max_abs_difference(summed_gradient(nth, params, seq), full) <= 1e-12 * scale);
  runtime::TruncatedBptt<Kernel, double> whole(k, 12, 12);
  CHECK(max_abs_difference(summed_gradient(whole, params, seq), full) <= 1e-12 * scale);
  runtime::ExactRtrl<Kernel, double> rtrl(k);
  CHECK(max_abs_difference(summed_gradient(rtrl, params, seq), full) <= 1e-12 * scale);
  runtime::ExactRtrl<Kernel, double> accumulated(k, 4);
  CHECK(max_abs_difference(summed_gradient(accumulated, params, seq), full) <= 1e-12 * scale);
  // ...while a short N does not.
  runtime::NthOrder<Kernel, double> short_nth(k, 1);
  CHECK(max_abs_difference(summed_gradient(short_nth, params, seq), full) > 1e-3 * scale);
}

TEST_CASE("truncated BPTT(2, 3) equals finite differences of the hand-unrolled computation") {
  // At step 4, TBPTT(k1 = 2, k2 = 3) gives d(C_3 + C_4)/dP through steps 2, 3, 4 only: the state
  // after step 1 is held fixed. Unrolled by hand: start from that state, run steps 2..4 with the
  // perturbed parameters, add C_3 and C_4, and difference.
  const Kernel k(dsl::lower(cells::elman_network<2, 3, 1>()));
  const auto params = runtime::initial_params<double>(k.network(), 3, 1.5);
  const auto seq = sequence(k, 4, 4);
  runtime::TruncatedBptt<Kernel, double> tbptt(k, 2, 3);
  std::vector<double> at_step_4;
  for (std::size_t t = 0; t < 4; ++t) {
    tbptt.observe(params, seq.inputs[t].data(), seq.target(t));
    CHECK(tbptt.gradient_ready() == (t % 2 == 1));
    if (t == 3) at_step_4 = tbptt.gradient();
  }
  Kernel::Step step;
  std::vector<double> r1(k.state_size(), 0.0);
  k.forward(params.data(), r1.data(), seq.inputs[0].data(), step);
  k.next_state(step, r1.data());
  auto unrolled = [&](const std::vector<double>& p) {
    std::vector<double> r = r1;
    double loss = 0;
    for (std::size_t t = 1; t < 4; ++t) {
      k.forward(p.data(), r.data(), seq.inputs[t].data(), step);
      if (t >= 2) loss += k.loss(step, seq.target(t));
      k.next_state(step, r.data());
    }
    return loss;
  };
  double worst = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto plus = params, minus = params;
    plus[i] += 1e-6;
    minus[i] -= 1e-6;
    const double fd = (unrolled(plus) - unrolled(minus)) / 2e-6;
    worst = std::max(worst, std::abs(fd - at_step_4[i]));
  }
  MESSAGE("TBPTT(2, 3) vs finite differences of the unrolled computation: " << worst);
  CHECK(worst <= 1e-7);
}

TEST_CASE("random truncation is unbiased: the mean over many draws is the full gradient") {
  const Kernel k(dsl::lower(cells::elman_network<2, 3, 1>()));
  const auto params = runtime::initial_params<double>(k.network(), 5, 1.5);
  const auto seq = sequence(k, 10, 6);
  const auto full = runtime::bptt_gradient(k, params, seq).gradient;
  const int draws = 4000;
  const std::size_t n = params.size();
  std::vector<double> mean(n, 0.0), square(n, 0.0);
  bool differs = false;
  for (int d = 0; d < draws; ++d) {
    runtime::RandomTruncation<Kernel, double> rt(k, 0.3, static_cast<std::uint64_t>(d) + 1);
    auto g = summed_gradient(rt, params, seq);
    rt.flush(params);
    for (std::size_t i = 0; i < n; ++i) g[i] += rt.gradient()[i];
    differs = differs || max_abs_difference(g, full) > 1e-6;
    for (std::size_t i = 0; i < n; ++i) {
      mean[i] += g[i] / draws;
      square[i] += g[i] * g[i] / draws;
    }
  }
  double worst_z = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double standard_error = std::sqrt(std::max(square[i] - mean[i] * mean[i], 0.0) / draws);
    const double z = std::abs(mean[i] - full[i]) / std::max(standard_error, 1e-12);
    worst_z = std::max(worst_z, z);
  }
  MESSAGE("random truncation over " << draws << " draws: largest |mean - full| is " << worst_z
                                    << " standard errors (bound: 5 over " << n << " parameters)");
  CHECK(differs);  // single draws are truncated...
  CHECK(worst_z < 5.0);  // ...but right on average
}

TEST_CASE("attenuation 0 is the 1st-order approximation") {
  // With gamma = 0, Delta_(N-1) keeps only the immediate term dR_(N-1)/dP, so Eqn. 5 backpropagates
  // C_N through step N and step N-1: exactly the N-th order approximation with N = 1.
  const Kernel k(dsl::lower(cells::gru_network<2, 3, 2>()));
  const auto params = runtime::initial_params<double>(k.network(), 7);
  const auto seq = sequence(k, 15, 8);
  runtime::RtrlOptions<double> zero;
  zero.attenuation = 0.0;
  runtime::ExactRtrl<Kernel, double> attenuated(k, 1, zero);
  runtime::NthOrder<Kernel, double> nth1(k, 1);
  for (std::size_t t = 0; t < seq.size(); ++t) {
    attenuated.observe(params, seq.inputs[t].data(), seq.target(t));
    nth1.observe(params, seq.inputs[t].data(), seq.target(t));
    CHECK(max_abs_difference(attenuated.gradient(), nth1.gradient()) <= 1e-13);
  }
}

TEST_CASE("a temporal gradient explosion is reported by policy") {
  using namespace dsl;
  constexpr auto x = input<"x", 1>;
  constexpr auto h = neuron<"h", 2>;
  constexpr auto y = neuron<"y", 1>;
  const Kernel k(lower(network<"unstable">(x, h = linear(dense<"W_xh">(x) + dense<"W_hh">(delay(h))),
                                            output(y = dense<"W_hy">(h), mse))));
  std::vector<double> params = {1, 1, 3, 0, 0, 3, 1, 1};  // W_hh = 3 I: |Delta| grows like 3^N
  const double one = 1, target = 0;
  runtime::RtrlOptions<double> options;
  options.explosion = runtime::ExplosionPolicy::fail;
  options.explosion_threshold = 1e6;
  runtime::Rtrl<Kernel, double> rtrl(k, options);
  int steps = 0;
  try {
    for (; steps < 100; ++steps) rtrl.step(params, &one, &target);
    FAIL("no explosion reported");
  } catch (const runtime::TemporalGradientExplosion& e) {
    CHECK(std::string(e.what()).find("temporal gradient explosion at step") != std::string::npos);
  }
  CHECK(steps == 12);  // 3^12 * 12 > 1e6 > 3^11 * 11
  options.explosion = runtime::ExplosionPolicy::ignore;
  runtime::Rtrl<Kernel, double> quiet(k, options);
  for (int t = 0; t < 20; ++t) quiet.step(params, &one, &target);
  CHECK(quiet.sensitivity_max() > 1e9);
}

TEST_CASE("optimizers follow their closed forms") {
  std::vector<double> p = {1.0, -2.0};
  const std::vector<double> g = {0.5, -4.0};
  runtime::Sgd<double> sgd{0.1};
  sgd.apply(p, g);
  CHECK(p[0] == doctest::Approx(0.95));
  CHECK(p[1] == doctest::Approx(-1.6));

  p = {1.0, -2.0};
  runtime::Momentum<double> momentum{0.1, 0.9, {}};
  momentum.apply(p, g);
  momentum.apply(p, g);  // v = g, then 1.9 g
  CHECK(p[0] == doctest::Approx(1.0 - 0.1 * (0.5 + 0.95)));
  CHECK(p[1] == doctest::Approx(-2.0 - 0.1 * (-4.0 - 7.6)));

  p = {1.0, -2.0};
  runtime::Adam<double> adam;
  adam.rate = 0.01;
  adam.apply(p, g);  // the first bias-corrected step is rate * g / (|g| + eps)
  CHECK(p[0] == doctest::Approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8)));
  CHECK(p[1] == doctest::Approx(-2.0 + 0.01 * 4.0 / (4.0 + 1e-8)));
  CHECK(adam.steps == 1);
}

TEST_CASE("clipping by global norm and by value") {
  std::vector<double> g = {3.0, 4.0};
  CHECK(runtime::clip_by_global_norm(g, 1.0) == doctest::Approx(5.0));
  CHECK(g[0] == doctest::Approx(0.6));
  CHECK(g[1] == doctest::Approx(0.8));
  std::vector<double> h = {3.0, -4.0, 0.5};
  CHECK(runtime::clip_by_value(h, 1.0) == 2);
  CHECK(h == std::vector<double>{1.0, -1.0, 0.5});
}

namespace {

// BPTT with the adjoint paths that the layer_local approximation cuts, written from its
// definition and not from the analysis's blocks: parameter group p's gradient flows back across a
// step boundary only through the states `keeps(state name, parameter name)` allows; within a
// step every path is kept.
template <class Keeps>
std::vector<double> cut_bptt_gradient(const Kernel& k, const std::vector<double>& params,
                                      const runtime::Sequence<double>& seq, Keeps keeps) {
  const auto& net = k.network();
  const auto& states = k.analysis().states;
  std::vector<Kernel::Step> steps(seq.size());
  std::vector<double> state(k.state_size(), 0.0);
  for (std::size_t t = 0; t < seq.size(); ++t) {
    k.forward(params.data(), state.data(), seq.inputs[t].data(), steps[t]);
    k.next_state(steps[t], state.data());
  }
  std::vector<double> gradient(k.param_count(), 0.0);
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const std::size_t begin = k.param_offset(int(p)), end = begin + std::size_t(net.params[p].size());
    std::vector<double> adjoint(k.state_size(), 0.0), prev(k.state_size()), step_gradient(k.param_count());
    for (std::size_t t = seq.size(); t-- > 0;) {
      std::fill(step_gradient.begin(), step_gradient.end(), 0.0);
      k.reverse(params.data(), steps[t], seq.target(t), adjoint.data(), step_gradient.data(), prev.data());
      for (std::size_t i = begin; i < end; ++i) gradient[i] += step_gradient[i];
      for (std::size_t s = 0; s < states.size(); ++s) {
        const auto& group = net.groups[std::size_t(states[s])];
        const bool kept = keeps(group.name, net.params[p].name);
        for (std::size_t i = 0; i < std::size_t(group.size); ++i)
          adjoint[k.state_offset(s) + i] = kept ? prev[k.state_offset(s) + i] : 0.0;
      }
    }
  }
  return gradient;
}

// Largest |a_i - b_i| over parameter group p, relative to the largest |b_i| of the whole vector.
double group_difference(const Kernel& k, int p, const std::vector<double>& a, const std::vector<double>& b) {
  const std::size_t begin = k.param_offset(p), end = begin + std::size_t(k.network().params[std::size_t(p)].size());
  double m = 0;
  for (std::size_t i = begin; i < end; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m / max_abs(b);
}

analysis::AnalysisOptions layer_local(std::vector<std::string> states) {
  analysis::AnalysisOptions options;
  options.layer_local = std::move(states);
  return options;
}

}  // namespace

TEST_CASE("layer_local drops exactly the cross-layer blocks, and RTRL on it equals BPTT with those paths cut") {
  const auto net = dsl::lower(cells::stacked_rnn_network<3, 4, 5, 3>());
  const Kernel exact(net);
  const Kernel approx(net, analysis::analyse(net, layer_local({"*"})));
  const auto& a = approx.analysis();
  auto param = [&](const char* name) { return net.find_param(name); };
  const int h1 = net.find_group("stack_h1"), h2 = net.find_group("stack_h2");

  // By hand: h1 keeps its three parameter groups; h2 drops layer 1's (it read them through h1) and
  // keeps its own three; nothing else changes. Dense blocks: 5 x (4 x 3 + 4 x 4 + 4) = 160 values.
  CHECK(exact.analysis().exact());
  CHECK_FALSE(a.exact());
  CHECK(a.layer_local_states == std::vector<int>{h1, h2});
  const std::vector<std::pair<int, int>> dropped = {
      {h2, param("stack_W_xh1")}, {h2, param("stack_W_h1h1")}, {h2, param("stack_b_h1")}};
  CHECK(a.dropped_blocks == dropped);
  CHECK(a.state_params[0] == exact.analysis().state_params[0]);
  CHECK(a.state_params[1] == std::vector<int>{param("stack_W_h1h2"), param("stack_W_h2h2"), param("stack_b_h2")});
  CHECK(exact.analysis().sensitivity_values - a.sensitivity_values == 160);
  CHECK(a.exact_cost.choice == analysis::ExactAlgorithm::rtrl);
  CHECK_THROWS_AS((runtime::BlockedRtrl<Kernel, double>(approx, 3)), std::invalid_argument);

  const auto params = runtime::initial_params<double>(net, 3, 0.9);
  const auto seq = sequence(approx, 50, 7);
  runtime::ExactRtrl<Kernel, double> rtrl(approx);
  const auto got = summed_gradient(rtrl, params, seq);
  // A parameter group of layer l crosses a step boundary only through layer l's state.
  auto layer = [](const std::string& name) { return name.ends_with("h1") ? 1 : name.ends_with("h2") ? 2 : 0; };
  const auto want = cut_bptt_gradient(approx, params, seq, [&](const std::string& state, const std::string& p) {
    return layer(p) == 0 || layer(p) == layer(state);
  });
  CHECK(max_abs_difference(got, want) <= 1e-10 * max_abs(want));
  // Layer 2's and the readout's gradients are exact (no block of theirs was dropped); layer 1's
  // are not: the approximation is not the exact gradient under another name.
  const auto full = runtime::bptt_gradient(exact, params, seq).gradient;
  for (const char* name : {"stack_W_h1h2", "stack_W_h2h2", "stack_b_h2", "W_h2a", "b_a"})
    CHECK_MESSAGE(group_difference(exact, param(name), got, full) <= 1e-10, name);
  for (const char* name : {"stack_W_xh1", "stack_W_h1h1", "stack_b_h1"})
    CHECK_MESSAGE(group_difference(exact, param(name), got, full) > 1e-4, name);
}

TEST_CASE("layer_local on one state of the multi-loop network: c drops the loop {a, b}'s parameters") {
  const auto net = dsl::lower(testing::multi_loop_network());
  const Kernel approx(net, analysis::analyse(net, layer_local({"c"})));
  const auto& a = approx.analysis();
  // c's loop owns W_bc, W_cc and W_xc; a's and b's weights reach c only through b, a state of the
  // loop {a, b}. d reaches no loss, so it stores nothing and drops nothing.
  const std::vector<std::string> foreign = {"W_xa", "W_aa", "W_ba", "b_a", "S_ab", "w_bb", "b_b"};
  const int c = net.find_group("c");
  std::vector<std::pair<int, int>> dropped;
  for (const auto& name : foreign) dropped.emplace_back(c, net.find_param(name));
  std::sort(dropped.begin(), dropped.end());
  auto got_dropped = a.dropped_blocks;
  std::sort(got_dropped.begin(), got_dropped.end());
  CHECK(got_dropped == dropped);
  CHECK(a.layer_local_states == std::vector<int>{c});

  const auto params = runtime::initial_params<double>(net, 4, 0.9);
  const auto seq = sequence(approx, 50, 8);
  runtime::ExactRtrl<Kernel, double> rtrl(approx);
  const auto got = summed_gradient(rtrl, params, seq);
  const auto want = cut_bptt_gradient(approx, params, seq, [&](const std::string& state, const std::string& p) {
    return state != "c" || std::find(foreign.begin(), foreign.end(), p) == foreign.end();
  });
  CHECK(max_abs_difference(got, want) <= 1e-10 * max_abs(want));
}

TEST_CASE("layer_local: names that are not states, and a named state that an unnamed one reads, are refused") {
  using namespace dsl;
  const auto stacked = dsl::lower(cells::stacked_rnn_network<3, 4, 5, 3>());
  auto message = [](const ir::Network& net, std::vector<std::string> states) {
    try {
      (void)analysis::analyse(net, layer_local(std::move(states)));
    } catch (const analysis::AnalysisError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message(stacked, {"h9"}) ==
        "network 'stacked_rnn': layer_local names 'h9', which is no group of the network; name states (groups read "
        "through delay(): stack_h1, stack_h2) or '*'");
  CHECK(message(stacked, {"a"}).find("names 'a', which is not a recurrent state") != std::string::npos);
  // Naming the bottom layer alone drops nothing: every block it holds is its own.
  CHECK(analysis::analyse(stacked, layer_local({"stack_h1"})).exact());
  // Without pruning every block is kept, so the two options contradict each other.
  auto unpruned = layer_local({"*"});
  unpruned.prune = false;
  CHECK_THROWS_WITH_AS((void)analysis::analyse(stacked, unpruned),
                       "network 'stacked_rnn': layer_local drops sensitivity blocks and prune = false keeps every "
                       "block; ask for one of them",
                       analysis::AnalysisError);

  constexpr auto x = input<"x", 2>;
  constexpr auto h1 = neuron<"h1", 3>;
  constexpr auto h2 = neuron<"h2", 3>;
  constexpr auto h3 = neuron<"h3", 3>;
  constexpr auto y = neuron<"y", 1>;
  const auto three = dsl::lower(network<"three">(
      x, h1 = tanh(dense<"A">(x) + dense<"U1">(delay(h1))), h2 = tanh(dense<"B">(h1) + dense<"U2">(delay(h2))),
      h3 = tanh(dense<"C">(h2) + dense<"U3">(delay(h3))), output(y = dense<"D">(h3), mse)));
  CHECK(message(three, {"h2"}) ==
        "network 'three': layer_local names the state 'h2' but not 'h3', which reads 'h2' within a step and keeps "
        "parameter 'A' that 'h2' drops; name 'h3' too (or '*')");
  CHECK(message(three, {"h2", "h3"}) == "no error");
}
