// The exactness contract (docs/design.md, section 1): with parameters held fixed, the summed RTRL
// gradient equals the BPTT gradient to rounding, and both equal central finite differences.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "../codegen/random_network.hpp"
#include "../networks.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "loopgrad/runtime/rtrl.hpp"

using namespace loopgrad;
using runtime::Interpreter;
using runtime::Sequence;

namespace {

// Random inputs; targets on most steps (some steps have none): one-hot for softmax outputs,
// uniform values for MSE outputs.
template <class T>
Sequence<T> random_sequence(const Interpreter<T>& k, std::size_t steps, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-1, 1);
  Sequence<T> seq;
  for (std::size_t t = 0; t < steps; ++t) {
    std::vector<T> x(k.input_size());
    for (auto& v : x) v = static_cast<T>(normal(rng));
    seq.inputs.push_back(x);
    if (t % 7 == 3) {
      seq.targets.emplace_back();
      continue;
    }
    std::vector<T> target;
    for (const auto& g : k.network().groups) {
      if (!g.is_output()) continue;
      std::vector<T> part(static_cast<std::size_t>(g.size), T(0));
      if (g.loss == ir::Loss::softmax_cross_entropy)
        part[rng() % part.size()] = T(1);
      else
        for (auto& v : part) v = static_cast<T>(uniform(rng));
      target.insert(target.end(), part.begin(), part.end());
    }
    seq.targets.emplace_back(target);
  }
  return seq;
}

template <class T>
std::vector<T> rtrl_gradient_sum(const Interpreter<T>& k, const std::vector<T>& params, const Sequence<T>& seq,
                                 T* loss = nullptr) {
  runtime::Rtrl<Interpreter<T>, T> rtrl(k);
  std::vector<T> sum(k.param_count(), T(0));
  T l = 0;
  for (std::size_t t = 0; t < seq.size(); ++t) {
    l += rtrl.step(params, seq.inputs[t].data(), seq.target(t));
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += rtrl.gradient()[i];
  }
  if (loss) *loss = l;
  return sum;
}

double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// (b) RTRL == BPTT over 50 steps, and (c) both == central finite differences.
template <class N>
void check_exact(const N& spec, unsigned seed) {
  const auto net = dsl::lower(spec);
  const Interpreter<double> k(net);
  const auto params = runtime::initial_params<double>(net, seed);
  const auto seq = random_sequence(k, 50, seed + 1);
  double rtrl_loss = 0;
  const auto rtrl = rtrl_gradient_sum(k, params, seq, &rtrl_loss);
  const auto bptt = runtime::bptt_gradient(k, params, seq);
  INFO("network " << net.name);
  CHECK(std::abs(rtrl_loss - bptt.loss) <= 1e-12 * std::abs(bptt.loss));
  const double err = relative_error(rtrl, bptt.gradient);
  MESSAGE(net.name << ": RTRL vs BPTT relative error " << err);
  CHECK(err <= 1e-10);
  // Every parameter group gets a nonzero gradient unless it reaches no loss.
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    double norm = 0;
    for (int i = 0; i < net.params[p].size(); ++i) norm += std::abs(bptt.gradient[k.param_offset(static_cast<int>(p)) + i]);
    INFO("parameter " << net.params[p].name);
    CHECK((norm > 0) == static_cast<bool>(k.analysis().param_reaches_loss[p]));
  }
  // Central differences on every parameter value.
  const double h = 1e-5;
  double worst = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto plus = params, minus = params;
    plus[i] += h;
    minus[i] -= h;
    const double fd = (runtime::sequence_loss(k, plus, seq) - runtime::sequence_loss(k, minus, seq)) / (2 * h);
    worst = std::max(worst, std::abs(fd - rtrl[i]) / std::max(1.0, std::abs(fd)));
  }
  MESSAGE(net.name << ": worst finite-difference error " << worst);
  CHECK(worst <= 1e-6);
}

}  // namespace

TEST_CASE("Elman: RTRL == BPTT == finite differences") { check_exact(cells::elman_network<3, 5, 2>(), 11); }
TEST_CASE("stacked RNN: RTRL == BPTT == finite differences") { check_exact(cells::stacked_rnn_network<3, 4, 5, 3>(), 12); }
TEST_CASE("LSTM: RTRL == BPTT == finite differences") { check_exact(cells::lstm_network<3, 4, 2>(), 13); }
TEST_CASE("GRU: RTRL == BPTT == finite differences") { check_exact(cells::gru_network<3, 4, 2>(), 14); }
TEST_CASE("diagonal RNN: RTRL == BPTT == finite differences") { check_exact(cells::diagonal_rnn_network<3, 6, 2>(), 15); }
TEST_CASE("multi-loop network: RTRL == BPTT == finite differences") { check_exact(testing::multi_loop_network(), 16); }
TEST_CASE("every op and activation: RTRL == BPTT == finite differences") { check_exact(testing::all_ops_network(), 17); }
TEST_CASE("every loss (mean, sum and half sum of squares, BCE with logits, softmax cross-entropy): RTRL == BPTT == finite differences") {
  check_exact(testing::losses_network(), 23);
}
TEST_CASE("eLSTM: RTRL == BPTT == finite differences") { check_exact(cells::elstm_network<3, 5, 2>(), 29); }
TEST_CASE("LRU (real form, cos and sin of the phase): RTRL == BPTT == finite differences") {
  check_exact(cells::lru_network<3, 4, 2>(), 31);
}
TEST_CASE("two-layer stacks of the element-wise cells: RTRL == BPTT == finite differences") {
  check_exact(testing::indrnn_min_lstm_stack(), 25);
  check_exact(testing::min_gru_rg_lru_stack(), 26);
  check_exact(testing::elstm_indrnn_stack(), 30);
  check_exact(testing::lru_stack(), 32);
}
TEST_CASE("delay<K>: RTRL == BPTT == finite differences") { check_exact(testing::long_delay_network(), 24); }

TEST_CASE("connections reading expressions: RTRL == BPTT == finite differences") {
  check_exact(testing::expression_sources_network(), 27);
}

TEST_CASE("shared weights: RTRL == BPTT == finite differences") { check_exact(testing::shared_weights_network(), 28); }

TEST_CASE("delay<3>(c) is c three steps back, zero before step 4") {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto c = neuron<"c", 2>;
  constexpr auto y = neuron<"y", 2>;
  const auto net = lower(network<"shift">(x, c = linear(x), output(y = linear(delay<3>(c)), mse)));
  // The chain of copies: c_delay1 = delay(c), c_delay2 = delay(c_delay1); y reads delay(c_delay2).
  REQUIRE(net.find_group("c_delay1") >= 0);
  REQUIRE(net.find_group("c_delay2") >= 0);
  CHECK(net.find_group("c_delay3") < 0);
  const Interpreter<double> k(net);
  std::vector<double> state(k.state_size(), 0.0);
  Interpreter<double>::Step step;
  std::vector<std::vector<double>> inputs;
  for (int t = 0; t < 8; ++t) {
    inputs.push_back({0.5 * t + 1, -2.0 * t});
    k.forward(nullptr, state.data(), inputs.back().data(), step);
    const auto& out = step.values[static_cast<std::size_t>(net.groups[static_cast<std::size_t>(net.find_group("y"))].value_op())];
    for (std::size_t i = 0; i < 2; ++i) CHECK(out[i] == (t >= 3 ? inputs[static_cast<std::size_t>(t - 3)][i] : 0.0));
    k.next_state(step, state.data());
  }
}

TEST_CASE("IndRNN: RTRL == BPTT == finite differences") { check_exact(cells::indrnn_network<3, 5, 2>(), 19); }
TEST_CASE("minGRU: RTRL == BPTT == finite differences") { check_exact(cells::min_gru_network<3, 5, 2>(), 20); }
TEST_CASE("minLSTM: RTRL == BPTT == finite differences") { check_exact(cells::min_lstm_network<3, 5, 2>(), 21); }
TEST_CASE("RG-LRU: RTRL == BPTT == finite differences") { check_exact(cells::rg_lru_network<5, 2>(), 22); }
TEST_CASE("exp, log, softplus, sqrt, silu, square, division and a parameter vector as a value: RTRL == BPTT == finite differences") {
  check_exact(testing::elementwise_ops_network(), 18);
}

TEST_CASE("a nonzero initial state and float: RTRL still matches BPTT") {
  const auto net = dsl::lower(cells::lstm_network<3, 4, 2>());
  const Interpreter<float> k(net);
  const auto params = runtime::initial_params<float>(net, 5);
  const auto seq = random_sequence(k, 30, 6);
  std::vector<float> r0(k.state_size());
  for (std::size_t i = 0; i < r0.size(); ++i) r0[i] = 0.1f * static_cast<float>(i % 5) - 0.2f;
  runtime::Rtrl<Interpreter<float>, float> rtrl(k);
  rtrl.state() = r0;
  std::vector<double> sum(k.param_count(), 0.0), bptt(k.param_count());
  for (std::size_t t = 0; t < seq.size(); ++t) {
    rtrl.step(params, seq.inputs[t].data(), seq.target(t));
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += rtrl.gradient()[i];
  }
  const auto b = runtime::bptt_gradient(k, params, seq, r0);
  for (std::size_t i = 0; i < bptt.size(); ++i) bptt[i] = b.gradient[i];
  CHECK(relative_error(sum, bptt) <= 1e-5);
}

TEST_CASE("online SGD with exact gradients lowers the loss on a memory task") {
  // y_N = x_{N-2}: needs the recurrence, and the gradient across two steps.
  const auto net = dsl::lower(cells::elman_network<1, 8, 1>());
  const Interpreter<double> k(net);
  auto params = runtime::initial_params<double>(net, 3);
  runtime::Rtrl<Interpreter<double>, double> rtrl(k);
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> u(-1, 1);
  double x1 = 0, x2 = 0, first = 0, last = 0;
  for (int t = 0; t < 6000; ++t) {
    const double x = u(rng), target = x2;
    const double c = rtrl.step(params, &x, &target);
    runtime::Sgd<double>{0.05}.apply(params, rtrl.gradient());
    if (t < 500) first += c / 500;
    if (t >= 5500) last += c / 500;
    x2 = x1;
    x1 = x;
  }
  MESSAGE("mean loss, first 500 steps " << first << ", last 500 " << last);
  CHECK(last < 0.2 * first);
}

TEST_CASE("neuron-level patterns: Delta's actual nonzeros match the analysis's structural count") {
  // Independent of the pattern propagation: run the interpreter and record the entries of each
  // stored block that are ever not zero. All inside the pattern; without relu (whose derivative
  // can be exactly 0) exactly as many.
  auto check = [](const ir::Network& net, bool exact) {
    INFO("network " << net.name);
    const Interpreter<double> k(net);
    const auto params = runtime::initial_params<double>(net, 4);
    const auto seq = random_sequence(k, 25, 5);
    runtime::Rtrl<Interpreter<double>, double> rtrl(k);
    std::vector<bool> seen(k.sensitivity_size(), false);
    for (std::size_t t = 0; t < seq.size(); ++t) {
      rtrl.step(params, seq.inputs[t].data(), seq.target(t));
      for (std::size_t i = 0; i < seen.size(); ++i) seen[i] = seen[i] || rtrl.sensitivity()[i] != 0.0;
    }
    for (const auto& b : k.analysis().sensitivity_blocks) {
      if (!b.nonzero) continue;
      const int s = k.state_of(b.state);
      const auto off = k.sensitivity_offset(s, b.param);
      const auto size = static_cast<std::size_t>(net.groups[static_cast<std::size_t>(b.state)].size) *
                        static_cast<std::size_t>(net.params[static_cast<std::size_t>(b.param)].size());
      std::int64_t actual = 0, outside = 0;
      const auto& pattern = k.analysis().pattern(b.state, b.param);
      const auto cols = static_cast<std::size_t>(pattern.cols);
      for (std::size_t i = 0; i < size; ++i) {
        if (!seen[off + i]) continue;
        ++actual;
        const auto c = static_cast<std::int64_t>(i % cols);
        bool inside = false;
        for (const auto& run : pattern.rows[i / cols]) inside = inside || (run.begin <= c && c < run.end);
        outside += inside ? 0 : 1;
      }
      INFO("block d " << net.groups[static_cast<std::size_t>(b.state)].name << " / d "
                      << net.params[static_cast<std::size_t>(b.param)].name);
      CHECK(outside == 0);  // every entry that became nonzero lies inside the pattern
      CHECK(actual <= b.nonzeros);
      if (exact) CHECK(actual == b.nonzeros);
    }
  };
  check(dsl::lower(cells::diagonal_rnn_network<3, 6, 2>()), true);
  check(dsl::lower(testing::multi_loop_network()), true);
  check(dsl::lower(cells::lstm_network<3, 4, 2>()), true);
  for (unsigned seed = 1; seed <= 80; ++seed) check(testing::random_network(seed), false);
}
