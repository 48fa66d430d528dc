#include "loopgrad/generator.hpp"
#include "network.hpp"

LOOPGRAD_GENERATOR(char_rnn::network())
