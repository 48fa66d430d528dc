#pragma once
// Reports on an analysed network: Graphviz DOT, the JSON report, and a text summary. Each reads
// the network and its analysis only.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::emit {

/// The graph in DOT: one node per group (its size, and for a neuron group its expression,
/// ir::expression, cut at 60 characters), loops drawn as clusters, feed-forward edges solid,
/// feed-back edges dashed blue, terminating edges dotted grey; pruned cross terms, the MACs and the
/// exact algorithm listed in a note (`legend`; the inspector, which has its own, draws it without).
std::string to_dot(const ir::Network& net, const analysis::Analysis& a, bool legend = true);

/// One line: the exact algorithm the cost model picks (analysis::ExactCost), with its figures.
std::string exact_choice(const analysis::Analysis& a);

/// Empty when the gradient is exact; otherwise what the approximation (layer_local) dropped, in
/// sentences joined by `separator` (a header comment passes "\n// "): the states named, each
/// dropped block Delta(state, parameter group), and that the gradient is not exact.
std::string approximation_note(const ir::Network& net, const analysis::Analysis& a, std::string_view separator);

/// The JSON report (fields documented in README.md, "Reports").
nlohmann::json to_json(const ir::Network& net, const analysis::Analysis& a);

/// A few lines for a terminal: classes, loops, pruned cross terms, MACs pruned vs dense, and the
/// exact algorithm the cost model picks.
std::string summary(const ir::Network& net, const analysis::Analysis& a);

/// The files write_reports() wrote.
struct ReportPaths {
  std::filesystem::path dot;  ///< the Graphviz graph
  std::filesystem::path json;  ///< the JSON report
  std::filesystem::path html;  ///< the inspector page (loopgrad/emit/inspector.hpp)
};

/// Writes `dir/NETWORK.dot`, `dir/NETWORK.json` and `dir/NETWORK.html` (NETWORK: the network's
/// name; the page's graph drawn by Graphviz when it is installed), all through temporary files
/// renamed into place, so a failed write leaves no half file. Throws std::runtime_error naming the path.
ReportPaths write_reports(const ir::Network& net, const analysis::Analysis& a,
                          const std::filesystem::path& dir);

}  // namespace loopgrad::emit
