// deep_online's network: four minGRU layers of HIDDEN units (128 unless the build defines it)
// stacked on two inputs (a sign and a marker), and a linear readout of the top layer. The build generates it twice: the
// exact kernel, and one with LAYER_LOCAL "*" (each layer's sensitivity keeps only its own
// parameters), so that the example can run both on the same network.
#include "loopgrad/cells/min_gru.hpp"
#include "loopgrad/generator.hpp"

#ifndef HIDDEN
#define HIDDEN 128
#endif

constexpr auto deep_online_network() {
  using namespace loopgrad::dsl;
  constexpr auto x = input<"x", 2>;
  constexpr auto l1 = loopgrad::cells::min_gru<"l1", HIDDEN>(x);
  constexpr auto l2 = loopgrad::cells::min_gru<"l2", HIDDEN>(l1.h);
  constexpr auto l3 = loopgrad::cells::min_gru<"l3", HIDDEN>(l2.h);
  constexpr auto l4 = loopgrad::cells::min_gru<"l4", HIDDEN>(l3.h);
  constexpr auto y = neuron<"y", 1>;
  return network<"deep_online">(x, l1, l2, l3, l4, output(y = dense<"W_hy">(l4.h) + bias<"b_y">, mse));
}

LOOPGRAD_GENERATOR((deep_online_network()))
