#pragma once
// The two-layer stacked RNN of the BPTT derivation in the seeds (tanh layers, softmax output,
// cross-entropy) over a 28-character alphabet (a-z, space, period), 24 units per layer.
#include "loopgrad/cells/stacked_rnn.hpp"

namespace char_rnn {
inline constexpr std::size_t alphabet = 28;
inline constexpr auto network() { return loopgrad::cells::stacked_rnn_network<alphabet, 24, 24, alphabet>(); }
}  // namespace char_rnn
