// many_streams' network: an Elman layer of 16 tanh units reading one input, a linear output.
#include "loopgrad/cells/elman.hpp"
#include "loopgrad/generator.hpp"

LOOPGRAD_GENERATOR((loopgrad::cells::elman_network<1, 16, 1>()))
