#include "loopgrad/emit/report_main.hpp"

#include <fmt/format.h>

#include <exception>
#include <filesystem>
#include <string_view>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/report.hpp"

namespace loopgrad::emit {

int report_main(int argc, char** argv, const std::vector<ir::Network>& networks) {
  const std::string_view program = argc > 0 ? argv[0] : "loopgrad-reports";
  std::filesystem::path out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      fmt::print("usage: {} --out DIR\nWrites DIR/<network>.dot (Graphviz), DIR/<network>.json (analysis "
                 "report) and DIR/<network>.html (the inspector) for:",
                 program);
      for (const auto& n : networks) fmt::print(" {}", n.name);
      fmt::print("\n");
      return 0;
    }
    if (arg == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else {
      fmt::print(stderr, "{}: unknown option '{}'; usage: {} --out DIR (or --help)\n", program, arg, program);
      return 2;
    }
  }
  if (out.empty()) {
    fmt::print(stderr, "{}: missing --out DIR; usage: {} --out DIR (or --help)\n", program, program);
    return 2;
  }
  try {
    for (const auto& net : networks) {
      const auto paths = write_reports(net, analysis::analyse(net), out);
      fmt::print("{}: wrote {}, {} and {}\n", net.name, paths.dot.string(), paths.json.string(), paths.html.string());
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
  return 0;
}

}  // namespace loopgrad::emit
