// embed's network: a small Elman layer predicting the next value of a signal.
#include "loopgrad/cells/elman.hpp"
#include "loopgrad/generator.hpp"

LOOPGRAD_GENERATOR((loopgrad::cells::elman_network<1, 8, 1>()))
