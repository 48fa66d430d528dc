#pragma once
// GRU with exactly PyTorch's equations and gate order (r, z, n):
//   r = sigmoid(W_ir x + b_ir + W_hr h' + b_hr)
//   z = sigmoid(W_iz x + b_iz + W_hz h' + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h' + b_hn))
//   h = (1 - z) * n + z * h'
// where h' is the previous step's h.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// A GRU layer of H units reading X, its groups and parameters named after Prefix (PyTorch's
/// equations, above); what gru<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct gru_cell {
  static constexpr auto r = dsl::neuron<dsl::join<Prefix, "_r">(), H>;  ///< reset gate, Prefix_r
  static constexpr auto z = dsl::neuron<dsl::join<Prefix, "_z">(), H>;  ///< update gate, Prefix_z
  static constexpr auto n = dsl::neuron<dsl::join<Prefix, "_n">(), H>;  ///< candidate, Prefix_n
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< hidden state (the layer's output), Prefix_h

  /// W_i<Gate> x + b_i<Gate>: a gate's input-side term.
  template <dsl::fixed_string Gate>
  static constexpr auto input_side() {
    using namespace dsl;
    return dense<join<Prefix, join<"_W_i", Gate>()>()>(X{}) + bias<join<Prefix, join<"_b_i", Gate>()>()>;
  }
  /// W_h<Gate> h' + b_h<Gate>: a gate's hidden-side term (reset-gated for n).
  template <dsl::fixed_string Gate>
  static constexpr auto hidden_side() {
    using namespace dsl;
    return dense<join<Prefix, join<"_W_h", Gate>()>()>(delay(h)) + bias<join<Prefix, join<"_b_h", Gate>()>()>;
  }

  /// The four definitions (r, z, n, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(r = sigmoid(input_side<"r">() + hidden_side<"r">()),
                                   z = sigmoid(input_side<"z">() + hidden_side<"z">()),
                                   n = tanh(input_side<"n">() + r * hidden_side<"n">()),
                                   h = (1.0 - z) * n + z * delay(h));
  }
};

/// gru<"l1", 128>(x): a GRU layer of 128 units reading x, named l1_r ... l1_h, l1_W_ir ... l1_b_hn.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto gru(const X&) {
  return gru_cell<Prefix, H, X>{};
}

/// A whole network for reports, tests and benchmarks: input x (In), GRU layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto gru_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto cell = gru<"gru", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"gru">(x, cell, output(y = dense<"W_hy">(cell.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
