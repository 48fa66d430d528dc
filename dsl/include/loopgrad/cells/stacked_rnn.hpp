#pragma once
// The two-layer stacked RNN of the BPTT derivation (seeds/001, section 1.2), in column form:
//   H1_N = tanh(W_xh1 X_N + W_h1h1 H1_{N-1} + b_h1)
//   H2_N = tanh(W_h1h2 H1_N + W_h2h2 H2_{N-1} + b_h2)
//   A_N  = softmax(W_h2a H2_N + b_a), trained with cross-entropy.
// The seed writes row vectors (X W); each weight here is the transpose of the seed's.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// The two tanh layers of the stacked RNN (H1 then H2 units) reading X, named after Prefix; what
/// stacked_rnn<>() returns.
template <dsl::fixed_string Prefix, std::size_t H1, std::size_t H2, class X>
struct stacked_rnn_cell {
  static constexpr auto h1 = dsl::neuron<dsl::join<Prefix, "_h1">(), H1>;  ///< the first layer, Prefix_h1
  static constexpr auto h2 = dsl::neuron<dsl::join<Prefix, "_h2">(), H2>;  ///< the second layer, Prefix_h2
  /// The two definitions (h1, h2), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(
        h1 = tanh(dense<join<Prefix, "_W_xh1">()>(X{}) + dense<join<Prefix, "_W_h1h1">()>(delay(h1)) +
                  bias<join<Prefix, "_b_h1">()>),
        h2 = tanh(dense<join<Prefix, "_W_h1h2">()>(h1) + dense<join<Prefix, "_W_h2h2">()>(delay(h2)) +
                  bias<join<Prefix, "_b_h2">()>));
  }
};

/// stacked_rnn<"s", 64, 32>(x): two stacked tanh layers reading x, named s_h1, s_h2, s_W_xh1 ... s_b_h2.
template <dsl::fixed_string Prefix, std::size_t H1, std::size_t H2, class X>
constexpr auto stacked_rnn(const X&) {
  return stacked_rnn_cell<Prefix, H1, H2, X>{};
}

/// The seed's network: D inputs, two tanh layers, A classes with softmax cross-entropy.
template <std::size_t D, std::size_t H1, std::size_t H2, std::size_t A>
constexpr auto stacked_rnn_network() {
  using namespace dsl;
  constexpr auto x = input<"x", D>;
  constexpr auto layers = stacked_rnn<"stack", H1, H2>(x);
  constexpr auto a = neuron<"a", A>;
  return network<"stacked_rnn">(
      x, layers, output(a = dense<"W_h2a">(layers.h2) + bias<"b_a">, softmax_cross_entropy));
}

}  // namespace loopgrad::cells
