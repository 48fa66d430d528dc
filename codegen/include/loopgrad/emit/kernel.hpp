#pragma once
// The kernel emitter: one self-contained C++ header for one analysed network. The header needs
// only the C++ standard library and contains, in the namespace of the options:
//   Params, Gradient, State, Sensitivity, Input, Target   storage with named, documented views
//   Kernel      the kernel interface of docs/design.md, section 2, on flat arrays, the same as the
//               reference interpreter's, so every training algorithm runs on both
//   forward_step, rtrl_step   the typed entry points: a plain forward step, and one exact RTRL
//               step (forward, loss, gradient by Eqn. 5, sensitivity update by Eqn. 4)
// The sensitivity update does only the structurally nonzero work the analysis found, and every
// cross term and sensitivity block it computes is named in a comment.
#include <cstddef>
#include <string>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::emit {

/// The generated kernel's scalar type.
enum class ScalarType { float32, float64 };
const char* to_string(ScalarType s);  ///< "float", "double"

/// Options of emit_kernel(): the generated header's namespace, scalar type and products.
struct KernelOptions {
  std::string namespace_name;        ///< empty: the network's name
  ScalarType scalar = ScalarType::float64;  ///< double (the default) or float
  std::string regenerate_command;    ///< printed in the header's first lines
  /// 0 (the default): the header is self-contained. N > 0: every dense product of the sensitivity
  /// update with at least N flops (2 x rows x inner x columns) is a call to CBLAS's dgemm/sgemm
  /// instead of emitted loops; the header then includes <cblas.h> and the app links a CBLAS
  /// (OpenBLAS). Worth it for large shapes: see docs/benchmarks.md.
  long long blas_min_flops = 0;
  /// The cache budget of one column panel of the sensitivity update: where a parameter group's
  /// blocks are formed a panel of columns at a time (every block full, every term a dense product
  /// or a pass over a block of the same pattern), the panel is as wide as lets the part of every
  /// block it touches fit in this many bytes (96 to 960 columns). The default suits an L2 of 1 to
  /// 2 MiB.
  std::size_t panel_bytes = std::size_t{1} << 20;
};

/// The header's text. Deterministic: the same network and options give the same bytes. Throws
/// std::invalid_argument when a group or parameter name is not usable as a C++ identifier.
std::string emit_kernel(const ir::Network& net, const analysis::Analysis& a, const KernelOptions& options);

}  // namespace loopgrad::emit
