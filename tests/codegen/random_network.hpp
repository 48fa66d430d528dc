#pragma once
// Random valid networks, built directly as IR: random sizes 1..12, 1..5 recurrent states, dense,
// diagonal, sparse and identity connections, delays, skip connections, terminating branches,
// products of groups, every activation, MSE and softmax outputs. The same seed always gives the
// same network.
#include "loopgrad/ir/network.hpp"

namespace loopgrad::testing {

ir::Network random_network(unsigned seed);

}  // namespace loopgrad::testing
