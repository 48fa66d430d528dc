// Checks of the generated kernels listed in shard_2.inc (written by generate_test_kernels).
#include "kernel_check.hpp"

#include "shard_2.inc"
