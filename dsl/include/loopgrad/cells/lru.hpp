#pragma once
// The Linear Recurrent Unit (LRU) of Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu and De,
// "Resurrecting Recurrent Neural Networks for Long Sequences" (ICML 2023), in real form. The
// complex diagonal recurrence
//   lambda = exp(-exp(nu_log) + i exp(theta_log))      one eigenvalue per unit, |lambda| < 1
//   h = lambda * h' + exp(gamma_log) * ((B_re + i B_im) x)
//   y = Re((C_re + i C_im) h) + D * x
// with h = h_re + i h_im written out in real arithmetic, each unit a 2 x 2 rotation-and-decay:
//   a_re = exp(-exp(nu_log)) * cos(exp(theta_log))     a_im: the same with sin
//   g    = exp(gamma_log)                              the input normalisation, per unit
//   h_re = a_re * h_re' - a_im * h_im' + g * (B_re x)
//   h_im = a_im * h_re' + a_re * h_im' + g * (B_im x)
//   y    = C_re h_re - C_im h_im + D * x               (of the input's width)
// The parameterisation (nu_log, theta_log, gamma_log, B_re, B_im, C_re, C_im, D) is that of the
// minimal-LRU JAX implementation (lru/model.py, class LRU), whose initialisation draws
// r_min <= |lambda| <= r_max and a phase up to max_phase, and sets gamma_log = log(sqrt(1 - |lambda|^2)).
// The rotation is a product of element-wise groups (the pair h_re, h_im is one loop), so the
// analysis keeps each unit's Delta rows to its own parameters: a unit's B_re, B_im rows and its
// three per-unit values reach both h_re and h_im, twice the recurrent |P| values in all.
// Differences from the reference: a sequence is run step by step (the reference scans it in
// parallel, the same values), and there is no batch or layer norm, GLU or skip around the layer
// (stack them in the DSL if wanted).
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// An LRU layer of H complex units reading X, named after Prefix; what lru<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct lru_cell {
  static constexpr auto a_re = dsl::neuron<dsl::join<Prefix, "_a_re">(), H>;  ///< Re(lambda), Prefix_a_re
  static constexpr auto a_im = dsl::neuron<dsl::join<Prefix, "_a_im">(), H>;  ///< Im(lambda), Prefix_a_im
  static constexpr auto g = dsl::neuron<dsl::join<Prefix, "_g">(), H>;        ///< exp(gamma_log), Prefix_g
  static constexpr auto h_re = dsl::neuron<dsl::join<Prefix, "_h_re">(), H>;  ///< Re(h), Prefix_h_re
  static constexpr auto h_im = dsl::neuron<dsl::join<Prefix, "_h_im">(), H>;  ///< Im(h), Prefix_h_im
  static constexpr auto y = dsl::neuron<dsl::join<Prefix, "_y">(), X::size>;  ///< the layer's output, Prefix_y
  /// The six definitions (a_re, a_im, g, h_re, h_im, y), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    constexpr auto nu_log = param<join<Prefix, "_nu_log">(), H>;
    constexpr auto theta_log = param<join<Prefix, "_theta_log">(), H>;
    return boost::hana::make_tuple(
        a_re = exp(-exp(nu_log)) * cos(exp(theta_log)), a_im = exp(-exp(nu_log)) * sin(exp(theta_log)),
        g = exp(param<join<Prefix, "_gamma_log">(), H>),
        h_re = a_re * delay(h_re) - a_im * delay(h_im) + g * dense<join<Prefix, "_B_re">()>(X{}),
        h_im = a_im * delay(h_re) + a_re * delay(h_im) + g * dense<join<Prefix, "_B_im">()>(X{}),
        y = dense<join<Prefix, "_C_re">()>(h_re) - dense<join<Prefix, "_C_im">()>(h_im) +
            param<join<Prefix, "_D">(), X::size> * X{});
  }
};

/// lru<"l1", 128>(x): an LRU layer of 128 complex units reading x; its output l1.y has x's width.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto lru(const X&) {
  return lru_cell<Prefix, H, X>{};
}

/// A whole network: input x (In), LRU layer (H complex units), linear readout of its output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto lru_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = lru<"lru", H>(x);
  constexpr auto out = neuron<"out", Out>;
  return network<"lru">(x, layer, output(out = dense<"W_y">(layer.y) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
