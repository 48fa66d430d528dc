#pragma once
// IndRNN: the independently recurrent network of Li, Li, Cook, Zhu and Gao, "Independently
// Recurrent Neural Network (IndRNN): Building A Longer and Deeper RNN" (CVPR 2018), Eqn. 2:
//   h = relu(W x + u * h' + b)
// where h' is the previous step's h and u holds one recurrent weight per unit (a diagonal
// connection), so each unit's recurrence sees only itself and exact RTRL stores |P| values.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An IndRNN layer of H ReLU units reading X, named after Prefix; what indrnn<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct indrnn_cell {
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< the layer's units, Prefix_h
  /// The layer's one definition (h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(h = relu(dense<join<Prefix, "_W">()>(X{}) + diagonal<join<Prefix, "_u">()>(delay(h)) +
                                            bias<join<Prefix, "_b">()>));
  }
};

/// indrnn<"l1", 128>(x): an IndRNN layer of 128 units reading x, named l1_h, l1_W, l1_u, l1_b.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto indrnn(const X&) {
  return indrnn_cell<Prefix, H, X>{};
}

/// A whole network for reports, tests and benchmarks: input x (In), IndRNN layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto indrnn_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = indrnn<"ind", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"indrnn">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
