#pragma once
// The main() of a small program that writes the DOT and JSON reports of some networks:
//   program --out DIR     write DIR/<network>.dot and DIR/<network>.json for every network
//   program --help
// Returns the process exit status; errors are one line on stderr.
#include <vector>

#include "loopgrad/ir/network.hpp"

namespace loopgrad::emit {

/// The program's main(): parses the options above and writes the reports of `networks`; returns
/// the exit status.
int report_main(int argc, char** argv, const std::vector<ir::Network>& networks);

}  // namespace loopgrad::emit
