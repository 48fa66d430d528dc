// Pass `find_loops`: the recurrent states, every cross term D^{kl} as structurally nonzero or
// zero, the loops (strongly connected components of the state graph) in their evaluation order,
// and the pairs of states for which the Recurrency-Abstraction prediction does not hold.
#include <boost/graph/strong_components.hpp>

#include "graph.hpp"
#include "loopgrad/analysis/analysis.hpp"

namespace loopgrad::analysis {

bool Analysis::cross_term(int to_state, int from_state) const {
  const int k = state_index[static_cast<std::size_t>(to_state)];
  const int l = state_index[static_cast<std::size_t>(from_state)];
  if (k < 0 || l < 0) return false;
  return cross_terms[static_cast<std::size_t>(k) * states.size() + static_cast<std::size_t>(l)].nonzero;
}

void find_loops(const ir::Network& net, Analysis& a) {
  const auto n = net.groups.size();

  // Within-step reachability, filled in reverse evaluation order so that every successor is done.
  a.reaches_within_step.assign(n, std::vector<bool>(n, false));
  for (std::size_t g = 0; g < n; ++g) a.reaches_within_step[g][g] = true;
  std::vector<int> order;  // inputs first (they have no within-step predecessors), then neurons
  for (std::size_t g = 0; g < n; ++g)
    if (net.groups[g].kind == ir::GroupKind::input) order.push_back(static_cast<int>(g));
  order.insert(order.end(), a.group_order.begin(), a.group_order.end());
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const auto g = static_cast<std::size_t>(*it);
    for (const auto& c : net.connections)
      if (!c.delayed && c.from == static_cast<int>(g))
        for (std::size_t h = 0; h < n; ++h)
          if (a.reaches_within_step[static_cast<std::size_t>(c.to)][h]) a.reaches_within_step[g][h] = true;
  }

  // States: groups read through delay(), in declaration order.
  a.states.clear();
  a.state_index.assign(n, -1);
  for (std::size_t g = 0; g < n; ++g)
    for (const auto& c : net.connections)
      if (c.delayed && c.from == static_cast<int>(g)) {
        a.state_index[g] = static_cast<int>(a.states.size());
        a.states.push_back(static_cast<int>(g));
        break;
      }
  const auto K = a.states.size();
  a.reaches_state.assign(n, false);
  for (std::size_t g = 0; g < n; ++g)
    if (net.groups[g].kind != ir::GroupKind::input)
      for (int state : a.states)
        if (a.reaches_within_step[g][static_cast<std::size_t>(state)]) a.reaches_state[g] = true;

  // D^{kl} != 0 iff delay(l) feeds some group m (a feed-back connection l -> m) from which a
  // within-step path reaches k.
  a.cross_terms.clear();
  detail::Graph state_graph(K);
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t l = 0; l < K; ++l) {
      bool nonzero = false;
      for (const auto& c : net.connections)
        if (c.delayed && c.from == a.states[l] &&
            a.reaches_within_step[static_cast<std::size_t>(c.to)][static_cast<std::size_t>(a.states[k])])
          nonzero = true;
      a.cross_terms.push_back({a.states[k], a.states[l], nonzero});
      if (nonzero) boost::add_edge(l, k, state_graph);
    }

  // Loops: strongly connected components of the state graph, ordered topologically over the
  // condensation with ties broken by the first-declared state of each loop.
  std::vector<int> component(K);
  const int n_components = K == 0 ? 0 : static_cast<int>(boost::strong_components(
      state_graph, boost::make_iterator_property_map(component.begin(), boost::get(boost::vertex_index, state_graph))));
  detail::Graph condensation(static_cast<std::size_t>(n_components));
  std::vector<int> rank(static_cast<std::size_t>(n_components), static_cast<int>(K));
  for (std::size_t s = 0; s < K; ++s) {
    auto& r = rank[static_cast<std::size_t>(component[s])];
    r = std::min(r, static_cast<int>(s));
  }
  for (auto [e, end] = boost::edges(state_graph); e != end; ++e) {
    const auto cu = static_cast<std::size_t>(component[boost::source(*e, state_graph)]);
    const auto cv = static_cast<std::size_t>(component[boost::target(*e, state_graph)]);
    if (cu != cv && !boost::edge(cu, cv, condensation).second) boost::add_edge(cu, cv, condensation);
  }
  a.loops.clear();
  for (int c : detail::ranked_topological_order(condensation, rank)) {
    Loop loop;
    loop.order = static_cast<int>(a.loops.size());
    for (std::size_t s = 0; s < K; ++s)
      if (component[s] == c) loop.states.push_back(a.states[s]);
    loop.self_recurrent = loop.states.size() > 1 || a.cross_term(loop.states[0], loop.states[0]);
    a.loops.push_back(loop);
  }

  // Recurrency-Abstraction predicts at most one of D^{kl}, D^{lk} nonzero for k != l.
  a.recurrency_abstraction_violations.clear();
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t l = k + 1; l < K; ++l)
      if (a.cross_term(a.states[k], a.states[l]) && a.cross_term(a.states[l], a.states[k]))
        a.recurrency_abstraction_violations.emplace_back(a.states[k], a.states[l]);
}

}  // namespace loopgrad::analysis
