#pragma once
// The inspector: one self-contained HTML page per network that shows what the analysis found and
// what the kernel will compute. It reads the network and its analysis only, like the other reports
// (loopgrad/emit/report.hpp); the graph comes in already rendered (render_svg).
#include <optional>
#include <string>

#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::emit {

/// The page: the graph (`svg`, Graphviz's rendering of to_dot; when it is empty the page says how
/// to get one), every group with its expression (activations and element-wise products spelled
/// out), the loops in evaluation order, the cross-term matrix (nonzero, pruned, Recurrency-
/// Abstraction violations marked), the grid of sensitivity blocks (state x parameter group, with
/// the values stored and the multiply-adds per step of each; intermediate groups' workspace blocks
/// below), and the totals pruned against dense. No external file, script or font: it opens from disk.
std::string to_html(const ir::Network& net, const analysis::Analysis& a, const std::string& svg);

/// `dot` rendered to SVG by Graphviz's `dot` program when one is on the PATH; std::nullopt when
/// there is none (the page then says how to install it). Throws std::runtime_error when `dot`
/// exists but fails, with what it printed.
std::optional<std::string> render_svg(const std::string& dot);

}  // namespace loopgrad::emit
