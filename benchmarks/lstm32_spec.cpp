// The benchmarked network: an LSTM cell of 32 units reading 4 inputs, a linear output with MSE.
#include "loopgrad/cells/lstm.hpp"
#include "loopgrad/generator.hpp"

LOOPGRAD_GENERATOR((loopgrad::cells::lstm_network<4, 32, 2>()))
