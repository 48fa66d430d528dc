#pragma once
// Element-wise (diagonal) recurrent layer: h_N = tanh(W_xh x_N + w_hh * h_{N-1} + b_h), with one
// recurrent weight per unit. Each unit's recurrence only sees itself, which keeps its
// sensitivity row-sparse.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An element-wise recurrent layer of H tanh units reading X, named after Prefix; what diagonal_rnn<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct diagonal_rnn_cell {
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< the layer's units, Prefix_h
  /// The layer's one definition (h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(
        h = tanh(dense<join<Prefix, "_W_xh">()>(X{}) + diagonal<join<Prefix, "_w_hh">()>(delay(h)) +
                 bias<join<Prefix, "_b_h">()>));
  }
};

/// diagonal_rnn<"d", 1024>(x): 1024 tanh units reading x, each with its own recurrent weight, named
/// d_h, d_W_xh, d_w_hh, d_b_h.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto diagonal_rnn(const X&) {
  return diagonal_rnn_cell<Prefix, H, X>{};
}

/// A whole network for reports, tests and benchmarks: input x (In), diagonal layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto diagonal_rnn_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = diagonal_rnn<"diag", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"diagonal_rnn">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
