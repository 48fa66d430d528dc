// Every generated test kernel in one translation unit, compiled by CTest with the strictest
// warnings and no include path but the kernels' own directory: the headers need nothing but the
// C++ standard library.
#define LOOPGRAD_CHECK_KERNEL(ns, scalar, expression, ...)
#include "shard_0.inc"
#include "shard_1.inc"
#include "shard_2.inc"
#include "shard_3.inc"

int main() { return 0; }
