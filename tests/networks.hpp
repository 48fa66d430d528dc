#pragma once
// Networks the tests share, beyond the cell library's.
#include "loopgrad/cells.hpp"
#include "loopgrad/dsl.hpp"

namespace loopgrad::testing {

// Four states in three loops:
//   a = tanh(W_xa x + W_aa a' + W_ba b' + b_a)          reads b' -> D[a,b] != 0
//   b = sigmoid(S_ab a (sparse) + w_bb * b' + b_b)      reads a  -> D[b,a] != 0 (both: not RA)
//   c = tanh(W_bc b + W_cc c') * sigmoid(W_xc x)        a product of groups
//   d = tanh(W_cd c + w_dd * d')                        terminating: d reaches no loss
//   y = W_cy c + W_ay a + b_y, MSE                      W_ay skips b and c
inline constexpr auto multi_loop_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto a = neuron<"a", 4>;
  constexpr auto b = neuron<"b", 3>;
  constexpr auto c = neuron<"c", 2>;
  constexpr auto d = neuron<"d", 2>;
  constexpr auto y = neuron<"y", 2>;
  return network<"multi_loop">(
      x, a = tanh(dense<"W_xa">(x) + dense<"W_aa">(delay(a)) + dense<"W_ba">(delay(b)) + bias<"b_a">),
      b = sigmoid(sparse<"S_ab", mask{link{0, 0}, link{1, 2}, link{2, 3}, link{0, 3}}>(a) +
                  diagonal<"w_bb">(delay(b)) + bias<"b_b">),
      c = tanh(dense<"W_bc">(b) + dense<"W_cc">(delay(c))) * sigmoid(dense<"W_xc">(x)),
      d = tanh(dense<"W_cd">(c) + diagonal<"w_dd">(delay(d))),
      output(y = dense<"W_cy">(c) + dense<"W_ay">(a) + bias<"b_y">, mse));
}

// Every activation and element-wise op: relu, linear, constants, subtraction, negation, and an
// explicit identity connection.
inline constexpr auto all_ops_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto u = neuron<"u", 3>;
  constexpr auto v = neuron<"v", 3>;
  constexpr auto y = neuron<"y", 3>;
  return network<"all_ops">(
      u = relu(dense<"W_xu">(x) + dense<"W_uu">(delay(u)) + bias<"b_u">) - 0.5 * sigmoid(identity<"skip_vu">(delay(v))),
      v = linear(2.0 * diagonal<"w_uv">(u) - diagonal<"w_vv">(delay(v))) + (-tanh(bias<"b_v">)),
      output(y = dense<"W_uy">(u) + identity<"copy_vy">(v), softmax_cross_entropy));
}

}  // namespace loopgrad::testing
