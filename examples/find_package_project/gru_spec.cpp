// The network: a GRU cell from loopgrad's cell library reading a 2-value input, with one output.
#include <loopgrad/cells.hpp>
#include <loopgrad/generator.hpp>

namespace {
constexpr auto x = loopgrad::dsl::input<"x", 2>;
constexpr auto cell = loopgrad::cells::gru<"gru", 8>(x);
constexpr auto y = loopgrad::dsl::neuron<"y", 1>;
constexpr auto net = loopgrad::dsl::network<"gru_online">(
    x, cell, loopgrad::dsl::output(y = loopgrad::dsl::dense<"W_hy">(cell.h) + loopgrad::dsl::bias<"b_y">, loopgrad::dsl::mse));
}  // namespace

LOOPGRAD_GENERATOR(net)
