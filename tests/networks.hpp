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

// The element-wise functions beyond the classic activations, division, and a parameter vector used as a
// value (a per-unit decay):
//   a = softplus(W_xa x + W_aa a')                                  positive
//   b = nu * b' + silu(W_ab a) + square(W_xb x) / 4                  nu: param<"nu", 3>
//   c = sqrt(a + 0.5) * exp(-square(b)) + log(1 + a) / (1 + square(b)) - 1 / (2 + a)
//   y = W_cy c + b_y, MSE
inline constexpr auto elementwise_ops_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto a = neuron<"a", 3>;
  constexpr auto b = neuron<"b", 3>;
  constexpr auto c = neuron<"c", 3>;
  constexpr auto y = neuron<"y", 2>;
  return network<"elementwise_ops">(
      x, a = softplus(dense<"W_xa">(x) + dense<"W_aa">(delay(a))),
      b = param<"nu", 3> * delay(b) + silu(dense<"W_ab">(a)) + square(dense<"W_xb">(x)) * 0.25,
      c = sqrt(a + 0.5) * exp(-square(b)) + log(1.0 + a) / (1.0 + square(b)) - 1.0 / (2.0 + a),
      output(y = dense<"W_cy">(c) + bias<"b_y">, mse));
}

// Every loss: an output per loss on one recurrent layer, two of them weighted.
inline constexpr auto losses_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto h = neuron<"h", 4>;
  constexpr auto y1 = neuron<"y1", 2>;
  constexpr auto y2 = neuron<"y2", 3>;
  constexpr auto y3 = neuron<"y3", 2>;
  constexpr auto y4 = neuron<"y4", 3>;
  constexpr auto y5 = neuron<"y5", 2>;
  return network<"losses">(x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h)) + bias<"b_h">),
                           output(y1 = dense<"W_1">(h), mse), output(y2 = dense<"W_2">(h), sum_of_squares),
                           output(y3 = dense<"W_3">(h), half_sum_of_squares, 0.25), output(y4 = dense<"W_4">(h) + bias<"b_4">, bce_with_logits),
                           output(y5 = dense<"W_5">(h), softmax_cross_entropy, 3.0));
}

// Connections reading expressions: a gated recurrence W_hh (g * delay(h)) (the implicit group
// W_hh_in), a nested source (A reads tanh(B (x * x)): groups B_in and A_in), a diagonal reading an
// expression of delay(h), and an output reading h plus a parameter vector.
inline constexpr auto expression_sources_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto g = neuron<"g", 4>;
  constexpr auto h = neuron<"h", 4>;
  constexpr auto y = neuron<"y", 2>;
  return network<"expression_sources">(
      x, g = sigmoid(dense<"W_xg">(x) + bias<"b_g">),
      h = tanh(dense<"W_hh">(g * delay(h)) + dense<"A">(tanh(dense<"B", 5>(x * x))) +
               diagonal<"w_s">(1.0 - square(delay(h)))),
      output(y = dense<"W_hy">(h + param<"c", 4>), mse));
}

// Weight sharing: U is the recurrent matrix of both layers (4 x 4 each time), b_h their bias, W
// reads two sources in one expression, d both layers' diagonal decay on the output side.
inline constexpr auto shared_weights_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto h1 = neuron<"h1", 4>;
  constexpr auto h2 = neuron<"h2", 4>;
  constexpr auto y = neuron<"y", 2>;
  return network<"shared_weights">(
      x, h1 = tanh(dense<"W_x">(x) + dense<"U">(delay(h1)) + bias<"b_h">),
      h2 = tanh(dense<"W">(h1) + dense<"W">(delay(h1)) + dense<"U">(delay(h2)) + bias<"b_h">),
      output(y = dense<"W_y">(diagonal<"d">(h1) + diagonal<"d">(h2)), mse));
}

// delay<K>: h reads itself 1 and 3 steps back, the output reads h 2 steps back (one chain of
// copies, h_delay1 and h_delay2, serves both).
inline constexpr auto long_delay_network() {
  using namespace dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto h = neuron<"h", 3>;
  constexpr auto y = neuron<"y", 2>;
  return network<"long_delay">(
      x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h)) + diagonal<"w_h3">(delay<3>(h)) + bias<"b_h">),
      output(y = dense<"W_hy">(h) + dense<"W_2y">(delay<2>(h)), mse));
}

// The element-wise cells stacked two deep: IndRNN under minLSTM, eLSTM under IndRNN, and minGRU
// under the RG-LRU (which reads a group of its own width).
inline constexpr auto indrnn_min_lstm_stack() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto l1 = cells::indrnn<"l1", 4>(x);
  constexpr auto l2 = cells::min_lstm<"l2", 3>(l1.h);
  constexpr auto y = neuron<"y", 2>;
  return network<"indrnn_min_lstm">(x, l1, l2, output(y = dense<"W_hy">(l2.h) + bias<"b_y">, mse));
}
inline constexpr auto elstm_indrnn_stack() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto l1 = cells::elstm<"l1", 4>(x);
  constexpr auto l2 = cells::indrnn<"l2", 3>(l1.h);
  constexpr auto y = neuron<"y", 2>;
  return network<"elstm_indrnn">(x, l1, l2, output(y = dense<"W_hy">(l2.h) + bias<"b_y">, mse));
}
inline constexpr auto min_gru_rg_lru_stack() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto l1 = cells::min_gru<"l1", 4>(x);
  constexpr auto l2 = cells::rg_lru<"l2", 4>(l1.h);
  constexpr auto y = neuron<"y", 2>;
  return network<"min_gru_rg_lru">(x, l1, l2, output(y = dense<"W_hy">(l2.h) + bias<"b_y">, mse));
}

// Two LRUs stacked (the setting of Zucchet et al.'s online LRU, here with exact cross-layer
// blocks): the second reads the first's output.
inline constexpr auto lru_stack() {
  using namespace dsl;
  constexpr auto x = input<"x", 3>;
  constexpr auto l1 = cells::lru<"l1", 4>(x);
  constexpr auto l2 = cells::lru<"l2", 2>(l1.y);
  constexpr auto y = neuron<"y", 2>;
  return network<"lru_stack">(x, l1, l2, output(y = dense<"W_hy">(l2.y) + bias<"b_y">, mse));
}

}  // namespace loopgrad::testing
