#pragma once
// LSTM with exactly PyTorch's equations and gate order (i, f, g, o), one dense connection and one
// bias per gate and side, so that torch.nn.LSTM's weight_ih/weight_hh/bias_ih/bias_hh split row
// block by row block into W_i*, W_h*, b_i*, b_h*:
//   i = sigmoid(W_ii x + b_ii + W_hi h' + b_hi)      f = sigmoid(W_if x + b_if + W_hf h' + b_hf)
//   g = tanh(W_ig x + b_ig + W_hg h' + b_hg)         o = sigmoid(W_io x + b_io + W_ho h' + b_ho)
//   c = f * c' + i * g                               h = o * tanh(c)
// where h', c' are the previous step's h and c.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An LSTM layer of H units reading X, its groups and parameters named after Prefix (PyTorch's
/// equations, above); what lstm<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct lstm_cell {
  static constexpr auto i = dsl::neuron<dsl::join<Prefix, "_i">(), H>;  ///< input gate, Prefix_i
  static constexpr auto f = dsl::neuron<dsl::join<Prefix, "_f">(), H>;  ///< forget gate, Prefix_f
  static constexpr auto g = dsl::neuron<dsl::join<Prefix, "_g">(), H>;  ///< cell candidate, Prefix_g
  static constexpr auto o = dsl::neuron<dsl::join<Prefix, "_o">(), H>;  ///< output gate, Prefix_o
  static constexpr auto c = dsl::neuron<dsl::join<Prefix, "_c">(), H>;  ///< cell state, Prefix_c
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< hidden state (the layer's output), Prefix_h

  /// W_i<Gate> x + b_i<Gate> + W_h<Gate> h' + b_h<Gate>: one gate's input before its activation.
  template <dsl::fixed_string Gate>
  static constexpr auto pre_activation() {
    using namespace dsl;
    return dense<join<Prefix, join<"_W_i", Gate>()>()>(X{}) + bias<join<Prefix, join<"_b_i", Gate>()>()> +
           dense<join<Prefix, join<"_W_h", Gate>()>()>(delay(h)) + bias<join<Prefix, join<"_b_h", Gate>()>()>;
  }

  /// The six definitions (i, f, g, o, c, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(i = sigmoid(pre_activation<"i">()), f = sigmoid(pre_activation<"f">()),
                                   g = tanh(pre_activation<"g">()), o = sigmoid(pre_activation<"o">()),
                                   c = f * delay(c) + i * g, h = o * tanh(c));
  }
};

/// lstm<"l1", 128>(x): an LSTM layer of 128 units reading x, named l1_i ... l1_h, l1_W_ii ... l1_b_ho.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto lstm(const X&) {
  return lstm_cell<Prefix, H, X>{};
}

/// A whole network for reports, tests and benchmarks: input x (In), LSTM layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto lstm_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto cell = lstm<"lstm", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"lstm">(x, cell, output(y = dense<"W_hy">(cell.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
