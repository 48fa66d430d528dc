// The demo's spec: loopgrad_add_network builds this into the generator of demo_kernel.hpp.
#include "demo_network.hpp"
#include "loopgrad/generator.hpp"

LOOPGRAD_GENERATOR(demo::network())
