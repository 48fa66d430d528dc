#pragma once
// The generator every spec file links against. A spec declares a network with the DSL and hands
// it to one call:
//
//   #include <loopgrad/dsl.hpp>
//   #include <loopgrad/generator.hpp>
//   constexpr auto net = loopgrad::dsl::network<"elman">(...);
//   LOOPGRAD_GENERATOR(net)          // defines main()
//
// The resulting program writes the kernel header, the Graphviz DOT file and the JSON report:
//   --header PATH        the kernel header
//   --dot PATH           the graph
//   --json PATH          the analysis report
//   --out-dir DIR        all three as DIR/<network>.hpp, .dot, .json (explicit paths win)
//   --namespace NAME     namespace of the kernel (default: the network's name)
//   --scalar float|double  (default: double)
//   --quiet              no summary on stdout
//   --help
// Errors (a bad option, an unwritable path, a network that cannot be analysed) are one line on
// stderr and a non-zero exit status; nothing is left half written.
#include "loopgrad/ir/network.hpp"

namespace loopgrad {

/// A spec program's main() (what LOOPGRAD_GENERATOR defines): parses the options above, analyses
/// `net` and writes what they ask for; returns the exit status.
int generator_main(int argc, char** argv, const ir::Network& net);

}  // namespace loopgrad

/// Defines main() for a spec file: the generator of network `network_value` (a dsl::network).
#define LOOPGRAD_GENERATOR(network_value) \
  int main(int argc, char** argv) { return ::loopgrad::generator_main(argc, argv, ::loopgrad::dsl::lower(network_value)); }
