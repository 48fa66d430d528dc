// chaotic_online's network: a GRU cell of 8 units reading the current value, a linear output.
#include "loopgrad/cells/gru.hpp"
#include "loopgrad/generator.hpp"

LOOPGRAD_GENERATOR((loopgrad::cells::gru_network<1, 8, 1>()))
