#pragma once
// Elman RNN layer: h_N = tanh(W_xh x_N + W_hh h_{N-1} + b_h).
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An Elman layer of H tanh units reading X, named after Prefix; what elman<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct elman_cell {
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< the layer's units, Prefix_h
  /// The layer's one definition (h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(
        h = tanh(dense<join<Prefix, "_W_xh">()>(X{}) + dense<join<Prefix, "_W_hh">()>(delay(h)) +
                 bias<join<Prefix, "_b_h">()>));
  }
};

/// elman<"l1", 16>(x): a layer of 16 tanh units reading x, named l1_h, l1_W_xh, l1_W_hh, l1_b_h.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto elman(const X&) {
  return elman_cell<Prefix, H, X>{};
}

/// A whole network for reports and tests: input x (In), Elman layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto elman_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = elman<"rnn", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"elman">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
