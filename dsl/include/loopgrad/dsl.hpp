#pragma once
// loopgrad's compile-time DSL: declare neuron groups and connections, gather them with
// network<"name">(...), and lower(net) to the IR that the analysis and generator read.
//
//   using namespace loopgrad::dsl;
//   constexpr auto x = input<"x", 3>;
//   constexpr auto h = neuron<"h", 16>;
//   constexpr auto y = neuron<"y", 2>;
//   constexpr auto net = network<"elman">(
//       h = tanh(dense<"W_xh">(x) + dense<"W_hh">(delay(h)) + bias<"b_h">),
//       output(y = dense<"W_hy">(h) + bias<"b_y">, mse));
//   loopgrad::ir::Network ir = lower(net);
#include "loopgrad/dsl/connection.hpp"
#include "loopgrad/dsl/expression.hpp"
#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/dsl/lower.hpp"
#include "loopgrad/dsl/network.hpp"
#include "loopgrad/dsl/output.hpp"
