#pragma once
// The graph type the analysis passes share, and the one order they all use.
#include <boost/graph/adjacency_list.hpp>
#include <functional>
#include <queue>
#include <vector>

namespace loopgrad::analysis::detail {

using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS>;

// Topological order of an acyclic graph in which, among the vertices ready at any point, the one
// with the smallest `rank` comes first (Kahn's algorithm with a min-heap). boost::topological_sort
// is deterministic too, but orders by DFS finishing time; the analysis promises that declaration
// order breaks ties, so it ranks vertices by declaration.
inline std::vector<int> ranked_topological_order(const Graph& g, const std::vector<int>& rank) {
  const auto n = boost::num_vertices(g);
  std::vector<int> indegree(n, 0);
  for (auto [e, end] = boost::edges(g); e != end; ++e) ++indegree[boost::target(*e, g)];
  auto later = [&](int a, int b) { return rank[static_cast<std::size_t>(a)] > rank[static_cast<std::size_t>(b)]; };
  std::priority_queue<int, std::vector<int>, decltype(later)> ready(later);
  for (std::size_t v = 0; v < n; ++v)
    if (indegree[v] == 0) ready.push(static_cast<int>(v));
  std::vector<int> order;
  while (!ready.empty()) {
    const int v = ready.top();
    ready.pop();
    order.push_back(v);
    for (auto [e, end] = boost::out_edges(static_cast<std::size_t>(v), g); e != end; ++e)
      if (--indegree[boost::target(*e, g)] == 0) ready.push(static_cast<int>(boost::target(*e, g)));
  }
  return order;  // shorter than n if g has a cycle
}

}  // namespace loopgrad::analysis::detail
