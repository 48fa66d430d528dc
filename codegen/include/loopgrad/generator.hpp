#pragma once
// The generator every spec file links against. A spec declares a network with the DSL and hands
// it to one call:
//
//   #include <loopgrad/dsl.hpp>
//   #include <loopgrad/generator.hpp>
//   constexpr auto net = loopgrad::dsl::network<"elman">(...);
//   LOOPGRAD_GENERATOR(net)          // defines main()
//
// A second argument maps PyTorch's state_dict onto the network's parameter groups
// (loopgrad/ir/torch_layout.hpp); the generated header then carries it as its torch_tensors table,
// and an app reads and writes PyTorch's files with nothing but that header
// (loopgrad/runtime/kernel_io.hpp):
//
//   LOOPGRAD_GENERATOR((cells::lstm_network<3, 64, 1>()),
//                      ir::join({ir::torch_lstm_layout("lstm", "rnn."), ir::torch_linear_layout("W_hy", "b_y", "out.")}))
//
// The resulting program writes the kernel header, the Graphviz DOT file, the JSON report and the
// inspector page:
//   --header PATH        the kernel header
//   --dot PATH           the graph
//   --json PATH          the analysis report
//   --html PATH          the inspector: one self-contained page with the graph (drawn by Graphviz
//                        when `dot` is on the PATH), the loops, cross terms and sensitivity blocks
//   --out-dir DIR        all four as DIR/<network>.hpp, .dot, .json, .html (explicit paths win)
//   --namespace NAME     namespace of the kernel (default: the network's name)
//   --scalar float|double  (default: double)
//   --quiet              no summary on stdout
//   --help
// Errors (a bad option, an unwritable path, a network that cannot be analysed) are one line on
// stderr and a non-zero exit status; nothing is left half written.
#include <vector>

#include "loopgrad/ir/network.hpp"
#include "loopgrad/ir/torch_layout.hpp"

namespace loopgrad {

/// A spec program's main() (what LOOPGRAD_GENERATOR defines): parses the options above, analyses
/// `net` and writes what they ask for; returns the exit status.
int generator_main(int argc, char** argv, const ir::Network& net);

/// generator_main for `net` with `tensors` as its map of PyTorch's tensors (ir::Network::tensors).
inline int generator_main(int argc, char** argv, ir::Network net, std::vector<ir::TensorMapping> tensors) {
  net.tensors = std::move(tensors);
  return generator_main(argc, argv, net);
}

}  // namespace loopgrad

/// Defines main() for a spec file: the generator of network `network_value` (a dsl::network), and,
/// when a second argument is given, its map of PyTorch's tensors (an ir::TensorLayout).
#define LOOPGRAD_GENERATOR(network_value, ...) \
  int main(int argc, char** argv) {           \
    return ::loopgrad::generator_main(argc, argv, ::loopgrad::dsl::lower(network_value) __VA_OPT__(, __VA_ARGS__)); \
  }
