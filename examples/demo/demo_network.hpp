#pragma once
// The demo's network: a fast tanh layer h and a slow element-wise memory m fed by h, both
// recurrent, with a skip connection from h to the output. The analysis finds two loops in order
// (h, then m), prunes the cross term D[h,m] (m never feeds back into h), and keeps Delta of h
// free of m's parameters.
#include "loopgrad/dsl.hpp"

namespace demo {

inline constexpr auto network() {
  using namespace loopgrad::dsl;
  constexpr auto x = input<"x", 1>;
  constexpr auto h = neuron<"h", 12>;
  constexpr auto m = neuron<"m", 6>;
  constexpr auto y = neuron<"y", 1>;
  return loopgrad::dsl::network<"demo">(
      x, h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h)) + bias<"b_h">),
      m = tanh(dense<"W_hm">(h) + diagonal<"w_mm">(delay(m)) + bias<"b_m">),
      output(y = dense<"W_hy">(h) + dense<"W_my">(m) + bias<"b_y">, mse));
}

}  // namespace demo
