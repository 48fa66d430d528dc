#pragma once
// The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin and Hawk: De, Smith, Fernando et al.,
// "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models"
// (arXiv:2402.19427, 2024), section 2.4, real-valued:
//   r = sigmoid(W_a x + b_a)                  recurrence gate
//   i = sigmoid(W_x x + b_x)                  input gate
//   a = exp(-c * softplus(Lambda) * r)        c = 8: a = sigma(-Lambda)^(c r), in log space
//   h = a * h' + sqrt(1 - a^2) * (i * x)
// where h' is the previous step's h and Lambda holds one value per unit. As in the reference
// implementation (google-deepmind/recurrentgemma: log_a = -8 * gate_a * softplus(a_param)),
// computed in log space. Differences from it, for exact gradients: the gates' weights are dense
// here (the reference's are block-diagonal, one block per head); the derivative of the square root
// is exact (the reference bounds it at 1000 for bfloat16 training); and a sequence has no reset
// (the reference takes the multiplier as 1 at a document's first token). The input x has the
// layer's width H. The recurrence is element-wise: exact RTRL stores |P| values.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An RG-LRU layer of H units reading X (of H values), named after Prefix; what rg_lru<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct rg_lru_cell {
  static_assert(X::size == H, "loopgrad: the RG-LRU's input must have the layer's width (h = a * h' + sqrt(1 - a^2) * (i * x)); put a dense connection in front of it");
  static constexpr auto r = dsl::neuron<dsl::join<Prefix, "_r">(), H>;  ///< recurrence gate, Prefix_r
  static constexpr auto i = dsl::neuron<dsl::join<Prefix, "_i">(), H>;  ///< input gate, Prefix_i
  static constexpr auto a = dsl::neuron<dsl::join<Prefix, "_a">(), H>;  ///< the step's decay, Prefix_a
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< hidden state, Prefix_h
  /// The four definitions (r, i, a, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(r = sigmoid(dense<join<Prefix, "_W_a">()>(X{}) + bias<join<Prefix, "_b_a">()>),
                                   i = sigmoid(dense<join<Prefix, "_W_x">()>(X{}) + bias<join<Prefix, "_b_x">()>),
                                   a = exp(-8.0 * softplus(param<join<Prefix, "_Lambda">(), H>) * r),
                                   h = a * delay(h) + sqrt(1.0 - square(a)) * (i * X{}));
  }
};

/// rg_lru<"l1", 128>(x): an RG-LRU layer of 128 units reading x (128 values).
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto rg_lru(const X&) {
  return rg_lru_cell<Prefix, H, X>{};
}

/// A whole network: input x (H), RG-LRU layer (H), linear output with MSE.
template <std::size_t H, std::size_t Out>
constexpr auto rg_lru_network() {
  using namespace dsl;
  constexpr auto x = input<"x", H>;
  constexpr auto layer = rg_lru<"rglru", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"rg_lru">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
