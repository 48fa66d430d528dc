// Pass `classify`: the order groups are evaluated in within one step, the algebraic-loop check,
// which groups and parameters can influence a loss, and the class of every connection.
#include <boost/graph/breadth_first_search.hpp>
#include <boost/graph/reverse_graph.hpp>
#include <boost/graph/strong_components.hpp>
#include <boost/graph/visitors.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <string>
#include <vector>

#include "graph.hpp"
#include "loopgrad/analysis/analysis.hpp"

namespace loopgrad::analysis {

namespace {

using detail::Graph;

// The within-step graph: one edge per non-delayed connection.
Graph within_step_graph(const ir::Network& net) {
  Graph g(net.groups.size());
  for (const auto& c : net.connections)
    if (!c.delayed) boost::add_edge(static_cast<std::size_t>(c.from), static_cast<std::size_t>(c.to), g);
  return g;
}

// A cycle of non-delayed connections cannot be evaluated step by step. Finds the first such cycle
// (by declaration order of its members) and reports it with the connections that close it.
[[noreturn]] void report_algebraic_loop(const ir::Network& net, const Graph& g,
                                        const std::vector<int>& component, int cycle_component) {
  int start = -1;
  for (std::size_t v = 0; v < component.size(); ++v)
    if (component[v] == cycle_component) {
      start = static_cast<int>(v);
      break;
    }
  std::vector<std::size_t> pred(boost::num_vertices(g));
  for (std::size_t v = 0; v < pred.size(); ++v) pred[v] = v;
  boost::breadth_first_search(
      g, static_cast<std::size_t>(start),
      boost::visitor(boost::make_bfs_visitor(boost::record_predecessors(pred.data(), boost::on_tree_edge()))));
  // The closing edge u -> start with u in the same component; walk predecessors back from u.
  std::size_t closing = static_cast<std::size_t>(start);
  for (auto [e, end] = boost::in_edges(static_cast<std::size_t>(start), g); e != end; ++e) {
    const auto u = boost::source(*e, g);
    if (component[u] == cycle_component) {
      closing = u;
      break;
    }
  }
  std::vector<std::size_t> path{closing};
  while (path.back() != static_cast<std::size_t>(start)) path.push_back(pred[path.back()]);
  std::string cycle;
  for (auto it = path.rbegin(); it != path.rend(); ++it) cycle += net.groups[*it].name + " -> ";
  cycle += net.groups[static_cast<std::size_t>(start)].name;
  std::string closing_connection;
  for (const auto& c : net.connections)
    if (!c.delayed && c.from == static_cast<int>(closing) && c.to == start) closing_connection = c.name;
  throw AnalysisError(fmt::format(
      "network '{}': algebraic loop: {} is a cycle with no delay, so no step can be evaluated. "
      "Read one group of the cycle through delay(): for example write delay({}) instead of {} "
      "in the expression of '{}' (connection '{}').",
      net.name, cycle, net.groups[closing].name, net.groups[closing].name,
      net.groups[static_cast<std::size_t>(start)].name, closing_connection));
}

}  // namespace

const char* to_string(EdgeClass c) {
  switch (c) {
    case EdgeClass::feed_forward: return "feed-forward";
    case EdgeClass::feed_back: return "feed-back";
    case EdgeClass::terminating: return "terminating";
  }
  return "?";
}

void classify(const ir::Network& net, Analysis& a) {
  const auto n = net.groups.size();
  const Graph within = within_step_graph(net);

  // Algebraic loops: a strongly connected component of the within-step graph with more than one
  // group, or a group that reads itself without delay.
  std::vector<int> component(n);
  boost::strong_components(within, boost::make_iterator_property_map(component.begin(),
                                                                     boost::get(boost::vertex_index, within)));
  std::vector<int> members(n, 0);
  for (int c : component) ++members[static_cast<std::size_t>(c)];
  for (std::size_t v = 0; v < n; ++v) {
    bool self = boost::edge(v, v, within).second;
    if (members[static_cast<std::size_t>(component[v])] > 1 || self) {
      if (self)
        throw AnalysisError(fmt::format(
            "network '{}': algebraic loop: group '{}' reads its own value in the same step. "
            "Write delay({}) to read the previous step's value.",
            net.name, net.groups[v].name, net.groups[v].name));
      report_algebraic_loop(net, within, component, component[v]);
    }
  }

  std::vector<int> rank(n);
  for (std::size_t v = 0; v < n; ++v) rank[v] = static_cast<int>(v);
  a.group_order.clear();
  for (int v : detail::ranked_topological_order(within, rank))
    if (net.groups[static_cast<std::size_t>(v)].kind == ir::GroupKind::neuron) a.group_order.push_back(v);

  // Loss reachability over any number of steps: every connection, delayed or not, reversed,
  // searched from the outputs.
  Graph all(n);
  for (const auto& c : net.connections)
    boost::add_edge(static_cast<std::size_t>(c.from), static_cast<std::size_t>(c.to), all);
  auto reversed = boost::make_reverse_graph(all);
  std::vector<boost::default_color_type> color(n, boost::white_color);
  auto color_map = boost::make_iterator_property_map(color.begin(), boost::get(boost::vertex_index, all));
  boost::queue<std::size_t> queue;
  for (std::size_t v = 0; v < n; ++v)
    if (net.groups[v].is_output() && color[v] == boost::white_color)
      boost::breadth_first_visit(reversed, v, queue, boost::default_bfs_visitor(), color_map);
  a.influences_loss.assign(n, false);
  for (std::size_t v = 0; v < n; ++v) a.influences_loss[v] = color[v] != boost::white_color;

  a.param_reaches_loss.assign(net.params.size(), false);
  a.unreachable_params.clear();
  const auto users = ir::param_users(net);
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    // A shared parameter group reaches the loss through any of the groups that use it.
    for (int g : users[p]) a.param_reaches_loss[p] = a.param_reaches_loss[p] || a.influences_loss[static_cast<std::size_t>(g)];
    if (!a.param_reaches_loss[p]) a.unreachable_params.push_back(static_cast<int>(p));
  }
  // A network that trains nothing is a mistake in the spec, not a network to emit a kernel for:
  // its gradient would be zero on every step.
  if (std::none_of(net.groups.begin(), net.groups.end(), [](const ir::Group& g) { return g.is_output(); }))
    throw AnalysisError(fmt::format("network '{}' has no output, so nothing is trained; declare one with "
                                    "output(y = expr, loss)",
                                    net.name));
  if (!net.params.empty() && a.unreachable_params.size() == net.params.size()) {
    std::vector<std::string> names;
    for (const auto& p : net.params) names.push_back("'" + p.name + "'");
    if (names.size() > 6) {
      names.resize(6);
      names.back() = "...";
    }
    std::vector<std::string> outputs;
    for (const auto& g : net.groups)
      if (g.is_output()) outputs.push_back("'" + g.name + "'");
    throw AnalysisError(fmt::format(
        "network '{}': none of its parameters ({}) reaches the loss of an output ({}), so every gradient would be "
        "zero; make an output's expression read a group these parameters feed",
        net.name, fmt::join(names, ", "), fmt::join(outputs, ", ")));
  }

  a.connection_class.clear();
  for (const auto& c : net.connections) {
    if (!a.influences_loss[static_cast<std::size_t>(c.to)])
      a.connection_class.push_back(EdgeClass::terminating);
    else
      a.connection_class.push_back(c.delayed ? EdgeClass::feed_back : EdgeClass::feed_forward);
  }
}

}  // namespace loopgrad::analysis
