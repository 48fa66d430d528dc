// The stacked RNN at T = 2 against the closed-form BPTT equations of section 2.1 of
// seeds/001 ("Mathematics of Backpropagation Through Time"), written out here in the seed's
// row-vector notation (Z = X W + b) with the corrections below. Our dense weights are (to x from),
// the transposes of the seed's (from x to).
//
// What is wrong in the seed's printed algebra, and corrected here:
//  - Eqns. (4), (5), (7), (8): the recurrent term multiplies by W, but with Z_t = H_{t-1} W the
//    gradient flows back through W^T: dL/dH_{t-1} = (dL/dZ_t) W^T.
//  - Eqns. (5), (8): the first term has a doubled factor, (H_{t-1})^T ((H_{t-1})^T dL/dZ_t); it is
//    (H_{t-1})^T dL/dZ_t. The second term has a spurious leading (W)^T; it is
//    (H_{t-2})^T ((dL/dZ_t W^T) * phi'(Z_{t-1})).
//  - Eqns. (7), (8): the gradient reaching layer 1 at t-1 misses the path through layer 2's
//    recurrence, H1_{t-1} -> Z2_{t-1} -> H2_{t-1} -> Z2_t. The correct
//    dL/dZ1_{t-1} = ((dL/dZ1_t) W_h1h1^T + (dL/dZ2_{t-1}) W_h1h2^T) * phi'(Z1_{t-1}).
//  - Eqn. (4): its shape is h1 x h2 (printed h x h2).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "loopgrad/cells/stacked_rnn.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/rtrl.hpp"

using namespace loopgrad;

namespace {

// Row-major matrices in the seed's orientation.
struct Mat {
  std::size_t rows = 0, cols = 0;
  std::vector<double> v;
  Mat(std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c, 0.0) {}
  double& operator()(std::size_t i, std::size_t j) { return v[i * cols + j]; }
  double operator()(std::size_t i, std::size_t j) const { return v[i * cols + j]; }
};
Mat mul(const Mat& a, const Mat& b) {
  Mat out(a.rows, b.cols);
  for (std::size_t i = 0; i < a.rows; ++i)
    for (std::size_t j = 0; j < b.cols; ++j)
      for (std::size_t k = 0; k < a.cols; ++k) out(i, j) += a(i, k) * b(k, j);
  return out;
}
Mat transpose(const Mat& a) {
  Mat out(a.cols, a.rows);
  for (std::size_t i = 0; i < a.rows; ++i)
    for (std::size_t j = 0; j < a.cols; ++j) out(j, i) = a(i, j);
  return out;
}
Mat add(Mat a, const Mat& b) {
  for (std::size_t i = 0; i < a.v.size(); ++i) a.v[i] += b.v[i];
  return a;
}
Mat hadamard(Mat a, const Mat& b) {
  for (std::size_t i = 0; i < a.v.size(); ++i) a.v[i] *= b.v[i];
  return a;
}
Mat tanh_of(Mat a) {
  for (auto& x : a.v) x = std::tanh(x);
  return a;
}
Mat tanh_derivative(const Mat& z) {
  Mat out = z;
  for (auto& x : out.v) x = 1 - std::tanh(x) * std::tanh(x);
  return out;
}
Mat row(const std::vector<double>& v) {
  Mat out(1, v.size());
  out.v = v;
  return out;
}
// The seed's W (from x to) out of our parameter group (to x from).
Mat seed_weight(const runtime::Interpreter<double>& k, const std::vector<double>& params, const char* name) {
  const auto& net = k.network();
  const int p = net.find_param(name);
  const auto& param = net.params[static_cast<std::size_t>(p)];
  Mat ours(static_cast<std::size_t>(param.rows), static_cast<std::size_t>(param.cols));
  std::copy_n(params.begin() + static_cast<long>(k.param_offset(p)), param.size(), ours.v.begin());
  return transpose(ours);  // biases (n x 1) become the seed's row vectors too
}
std::vector<double> grad_of(const runtime::Interpreter<double>& k, const std::vector<double>& g, const char* name) {
  const int p = k.network().find_param(name);
  return {g.begin() + static_cast<long>(k.param_offset(p)),
          g.begin() + static_cast<long>(k.param_offset(p)) + k.network().params[static_cast<std::size_t>(p)].size()};
}
// Compare our gradient of a (to x from) group with the seed's (from x to) closed form.
void check_same(const runtime::Interpreter<double>& k, const std::vector<double>& g, const char* name, const Mat& seed) {
  const auto ours = grad_of(k, g, name);
  const Mat expected = transpose(seed);
  REQUIRE(ours.size() == expected.v.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    worst = std::max(worst, std::abs(ours[i] - expected.v[i]));
    scale = std::max(scale, std::abs(expected.v[i]));
  }
  INFO(name << ": max abs difference " << worst << ", max magnitude " << scale);
  CHECK(scale > 0);
  CHECK(worst <= 1e-12 * scale);
}

}  // namespace

TEST_CASE("stacked RNN, T = 2: gradients equal the corrected closed-form equations of the seed") {
  constexpr std::size_t D = 3, H1 = 4, H2 = 5, A = 3;
  const auto net = dsl::lower(cells::stacked_rnn_network<D, H1, H2, A>());
  const runtime::Interpreter<double> k(net);
  const auto params = runtime::initial_params<double>(net, 21, 2.0);

  std::mt19937_64 rng(22);
  std::normal_distribution<double> normal;
  std::vector<double> x1(D), x2(D), h1_0(H1), h2_0(H2);
  for (auto* v : {&x1, &x2, &h1_0, &h2_0})
    for (auto& e : *v) e = normal(rng);
  std::vector<double> onehot(A, 0.0);
  onehot[1] = 1;

  // Ours: RTRL with the loss at t = 2 only (t = 1 has no target), from (H1_0, H2_0).
  runtime::Rtrl<runtime::Interpreter<double>, double> rtrl(k);
  std::copy(h1_0.begin(), h1_0.end(), rtrl.state().begin() + static_cast<long>(k.state_offset(0)));
  std::copy(h2_0.begin(), h2_0.end(), rtrl.state().begin() + static_cast<long>(k.state_offset(1)));
  rtrl.step(params, x1.data(), nullptr);
  rtrl.step(params, x2.data(), onehot.data());
  const auto g = rtrl.gradient();

  // The seed's forward pass.
  const Mat Wxh1 = seed_weight(k, params, "stack_W_xh1"), Wh1h1 = seed_weight(k, params, "stack_W_h1h1"),
            Wh1h2 = seed_weight(k, params, "stack_W_h1h2"), Wh2h2 = seed_weight(k, params, "stack_W_h2h2"),
            Wh2a = seed_weight(k, params, "W_h2a"), b1 = seed_weight(k, params, "stack_b_h1"),
            b2 = seed_weight(k, params, "stack_b_h2"), ba = seed_weight(k, params, "b_a");
  const Mat X1 = row(x1), X2 = row(x2), H1_0 = row(h1_0), H2_0 = row(h2_0);
  const Mat Z1_1 = add(add(mul(X1, Wxh1), mul(H1_0, Wh1h1)), b1), H1_1 = tanh_of(Z1_1);
  const Mat Z2_1 = add(add(mul(H1_1, Wh1h2), mul(H2_0, Wh2h2)), b2), H2_1 = tanh_of(Z2_1);
  const Mat Z1_2 = add(add(mul(X2, Wxh1), mul(H1_1, Wh1h1)), b1), H1_2 = tanh_of(Z1_2);
  const Mat Z2_2 = add(add(mul(H1_2, Wh1h2), mul(H2_1, Wh2h2)), b2), H2_2 = tanh_of(Z2_2);
  const Mat Z3 = add(mul(H2_2, Wh2a), ba);
  double lse = 0;
  for (double z : Z3.v) lse += std::exp(z);
  Mat A2 = Z3;
  for (auto& z : A2.v) z = std::exp(z) / lse;

  // (1)-(8), corrected.
  const Mat dZ3 = add(A2, hadamard(row(onehot), row(std::vector<double>(A, -1.0))));         // (1)
  const Mat dWh2a = mul(transpose(H2_2), dZ3);                                                // (2)
  const Mat dZ2_2 = hadamard(mul(dZ3, transpose(Wh2a)), tanh_derivative(Z2_2));               // (3)
  const Mat dZ2_1 = hadamard(mul(dZ2_2, transpose(Wh2h2)), tanh_derivative(Z2_1));
  const Mat dWh1h2 = add(mul(transpose(H1_2), dZ2_2), mul(transpose(H1_1), dZ2_1));           // (4)
  const Mat dWh2h2 = add(mul(transpose(H2_1), dZ2_2), mul(transpose(H2_0), dZ2_1));           // (5)
  const Mat dZ1_2 = hadamard(mul(dZ2_2, transpose(Wh1h2)), tanh_derivative(Z1_2));            // (6)
  const Mat dZ1_1 = hadamard(add(mul(dZ1_2, transpose(Wh1h1)), mul(dZ2_1, transpose(Wh1h2))),  // the path the
                             tanh_derivative(Z1_1));                                          // seed misses
  const Mat dWxh1 = add(mul(transpose(X2), dZ1_2), mul(transpose(X1), dZ1_1));                // (7)
  const Mat dWh1h1 = add(mul(transpose(H1_1), dZ1_2), mul(transpose(H1_0), dZ1_1));           // (8)

  check_same(k, g, "W_h2a", dWh2a);
  check_same(k, g, "stack_W_h1h2", dWh1h2);
  check_same(k, g, "stack_W_h2h2", dWh2h2);
  check_same(k, g, "stack_W_xh1", dWxh1);
  check_same(k, g, "stack_W_h1h1", dWh1h1);
  check_same(k, g, "b_a", dZ3);
  check_same(k, g, "stack_b_h2", add(dZ2_2, dZ2_1));
  check_same(k, g, "stack_b_h1", add(dZ1_2, dZ1_1));

  // The seed's Eqn. (7) as printed (W for W^T, and without the path through layer 2) is not the
  // gradient: it differs from the correct one by far more than rounding.
  const Mat printed_dZ1_1 = hadamard(mul(dZ1_2, Wh1h1), tanh_derivative(Z1_1));
  const Mat printed_dWxh1 = add(mul(transpose(X2), dZ1_2), mul(transpose(X1), printed_dZ1_1));
  double gap = 0;
  for (std::size_t i = 0; i < dWxh1.v.size(); ++i) gap = std::max(gap, std::abs(printed_dWxh1.v[i] - dWxh1.v[i]));
  MESSAGE("seed's printed Eqn. (7) is off by up to " << gap);
  CHECK(gap > 1e-3);
}
