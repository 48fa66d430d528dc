// Checks of the generated kernels that call CBLAS for their dense products (shard_blas.inc).
#include "kernel_check.hpp"

#include "shard_blas.inc"
