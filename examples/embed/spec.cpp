// embed's network: a small Elman layer predicting the next value of a signal. EMBED_HIDDEN, the
// layer's width, can be set per generated network (loopgrad_add_network's COMPILE_DEFINITIONS).
#include "loopgrad/cells/elman.hpp"
#include "loopgrad/generator.hpp"

#ifndef EMBED_HIDDEN
#define EMBED_HIDDEN 8
#endif

LOOPGRAD_GENERATOR((loopgrad::cells::elman_network<1, EMBED_HIDDEN, 1>()))
