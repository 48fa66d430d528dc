#pragma once
// Random valid networks, built directly as IR: random sizes 1..12, 1..5 recurrent states, dense,
// diagonal, sparse and identity connections, delays, skip connections, terminating branches,
// products of groups, tanh, sigmoid, relu and linear, MSE and softmax outputs. Seeds above
// random_first_corpus (the second corpus) also draw shared dense weights, parameter vectors as
// factors, divisions, exp, log, softplus, sqrt, silu, square, cos and sin (inside their domains),
// delay<2> through a copy group, every loss and loss weights. The same seed always gives the
// same network.
#include "loopgrad/ir/network.hpp"

namespace loopgrad::testing {

/// Seeds 1..60: the first corpus, as it was before the second one was added.
inline constexpr unsigned random_first_corpus = 60;

ir::Network random_network(unsigned seed);

}  // namespace loopgrad::testing
