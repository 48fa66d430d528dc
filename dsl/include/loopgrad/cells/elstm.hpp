#pragma once
// The element-wise LSTM (eLSTM, a "quasi-LSTM") of Irie, Gopalakrishnan and Schmidhuber,
// "Exploring the Promise and Limits of Real-Time Recurrent Learning" (2023), as the paper's
// official code writes it (github.com/IDSIA/rtrl-elstm, QuasiLSTMlayer, whose RTRL twin checks
// its hand-derived sensitivities against autograd):
//   z = tanh(W_z x + w_z * c' + b_z)           cell input; w_z one recurrent weight per unit
//   f = sigmoid(W_f x + w_f * c' + b_f)        forget gate
//   c = f * c' + (1 - f) * z                   cell state, the only recurrent state
//   o = sigmoid(W_ox x + W_oc c + b_o)         output gate, read from c at this step
//   h = c * o                                  the layer's output
// where c' is the previous step's c. The reference's output gate is one linear layer over the
// concatenation [x; c]; W_ox and W_oc are its two halves. Only c recurs, through the element-wise
// weights w_z and w_f, so exact RTRL stores the sensitivities of c to W_z, W_f, w_z, w_f, b_z and
// b_f, 2 H In + 4 H values, each parameter reaching one unit; the output gate reaches no state. The
// paper derives this RTRL by hand for one layer; loopgrad derives it, and its stacks, from the spec.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An eLSTM layer of H units reading X, named after Prefix; what elstm<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct elstm_cell {
  static constexpr auto z = dsl::neuron<dsl::join<Prefix, "_z">(), H>;  ///< cell input, Prefix_z
  static constexpr auto f = dsl::neuron<dsl::join<Prefix, "_f">(), H>;  ///< forget gate, Prefix_f
  static constexpr auto c = dsl::neuron<dsl::join<Prefix, "_c">(), H>;  ///< cell state, Prefix_c
  static constexpr auto o = dsl::neuron<dsl::join<Prefix, "_o">(), H>;  ///< output gate, Prefix_o
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< the layer's output, Prefix_h
  /// The five definitions (z, f, c, o, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(
        z = tanh(dense<join<Prefix, "_W_z">()>(X{}) + diagonal<join<Prefix, "_w_z">()>(delay(c)) + bias<join<Prefix, "_b_z">()>),
        f = sigmoid(dense<join<Prefix, "_W_f">()>(X{}) + diagonal<join<Prefix, "_w_f">()>(delay(c)) +
                    bias<join<Prefix, "_b_f">()>),
        c = f * delay(c) + (1.0 - f) * z,
        o = sigmoid(dense<join<Prefix, "_W_ox">()>(X{}) + dense<join<Prefix, "_W_oc">()>(c) + bias<join<Prefix, "_b_o">()>),
        h = c * o);
  }
};

/// elstm<"l1", 128>(x): an eLSTM layer of 128 units reading x; read its output as .h.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto elstm(const X&) {
  return elstm_cell<Prefix, H, X>{};
}

/// A whole network: input x (In), eLSTM layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto elstm_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = elstm<"elstm", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"elstm">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
