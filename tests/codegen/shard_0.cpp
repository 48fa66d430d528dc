// Checks of the generated kernels listed in shard_0.inc (written by generate_test_kernels).
#include "kernel_check.hpp"

#include "shard_0.inc"
