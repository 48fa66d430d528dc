// Pass `plan_sensitivity`: which blocks of Delta are structurally nonzero (the fixed point
// S(k) = Imm(k) U union_{l : D^{kl} != 0} S(l)), which tangent blocks each op of one step carries
// when Eqn. 4 is evaluated path by path, and what that costs.
#include <algorithm>
#include <fmt/format.h>
#include <boost/dynamic_bitset.hpp>
#include <map>
#include <set>

#include "loopgrad/analysis/analysis.hpp"

namespace loopgrad::analysis {

namespace {

using ParamSet = std::set<int>;

// Tangent blocks per op, propagated through one step in evaluation order. `delayed(l)` gives the
// blocks that delay(l) carries in; `needed(g)` says whether group g's ops need tangents at all.
template <class Delayed, class Needed>
std::vector<ParamSet> propagate_tangents(const ir::Network& net, const Analysis& a, Delayed delayed,
                                         Needed needed) {
  std::vector<ParamSet> t(net.ops.size());
  for (int g : a.group_order) {
    const auto& group = net.groups[static_cast<std::size_t>(g)];
    if (!needed(g)) continue;
    for (int i = group.op_begin; i < group.op_end; ++i) {
      const auto& op = net.ops[static_cast<std::size_t>(i)];
      auto& out = t[static_cast<std::size_t>(i)];
      auto add = [&](int arg) {
        const auto& in = t[static_cast<std::size_t>(arg)];
        out.insert(in.begin(), in.end());
      };
      switch (op.code) {
        case ir::OpCode::read: {
          const auto& src = net.groups[static_cast<std::size_t>(op.group)];
          if (src.kind == ir::GroupKind::neuron) add(src.value_op());
          break;
        }
        case ir::OpCode::read_delayed: out = delayed(op.group); break;
        case ir::OpCode::connect: {
          add(op.a);
          const int p = net.connections[static_cast<std::size_t>(op.connection)].param;
          if (p >= 0) out.insert(p);
          break;
        }
        case ir::OpCode::bias: out.insert(op.param); break;
        case ir::OpCode::constant: break;
        case ir::OpCode::add:
        case ir::OpCode::sub:
        case ir::OpCode::mul:
          add(op.a);
          add(op.b);
          break;
        case ir::OpCode::activate: add(op.a); break;
      }
    }
  }
  return t;
}

// The leaves of the expression rooted at `op` (see Leaf in analysis.hpp).
void collect_leaves(const ir::Network& net, int op, int sign, std::vector<int>& path, std::vector<Leaf>& out) {
  const auto& o = net.ops[static_cast<std::size_t>(op)];
  const bool elementwise = o.code == ir::OpCode::add || o.code == ir::OpCode::sub || o.code == ir::OpCode::mul ||
                           o.code == ir::OpCode::activate;
  if (!elementwise) {
    Leaf leaf{op, sign, path, true, 0};
    int factors = 0;
    for (int parent : path) {
      const auto& a = net.ops[static_cast<std::size_t>(parent)];
      if (a.code == ir::OpCode::mul) ++factors;
      if (a.code == ir::OpCode::activate && a.activation != ir::Activation::identity) {
        ++factors;
        // f'(z) itself: tanh' = 1 - y*y and sigmoid' = y*(1 - y) multiply once, relu' selects.
        if (a.activation != ir::Activation::relu) ++leaf.coefficient_multiplies;
      }
    }
    leaf.constant_coefficient = factors == 0;
    leaf.coefficient_multiplies += std::max(factors - 1, 0);
    out.push_back(std::move(leaf));
    return;
  }
  path.insert(path.begin(), op);
  collect_leaves(net, o.a, sign, path, out);
  if (o.code != ir::OpCode::activate) collect_leaves(net, o.b, o.code == ir::OpCode::sub ? -sign : sign, path, out);
  path.erase(path.begin());
}

// Multiply-adds of the sensitivity update as the kernel evaluates it, given the tangent blocks
// each op carries: for every parameter block p and every group whose block for p is formed, each
// leaf's Jacobian applied to its source's block (the axpy), the leaf's coefficient folded into
// the weights it scales, and the immediate blocks (a multiply only when the coefficient is not
// +-1); plus, once per step, the coefficients the update uses. Sums and copies are free.
std::int64_t count_macs(const ir::Network& net, const Analysis& a, const std::vector<ParamSet>& t) {
  std::int64_t macs = 0;
  std::set<int> used;  // leaves whose coefficient the update reads
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const int pi = static_cast<int>(p);
    const std::int64_t cols = net.params[p].size();
    for (int g : a.group_order) {
      const auto& group = net.groups[static_cast<std::size_t>(g)];
      if (t[static_cast<std::size_t>(group.value_op())].count(pi) == 0) continue;
      for (const auto& leaf : a.leaves[static_cast<std::size_t>(g)]) {
        const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
        const std::int64_t n = op.size;
        const bool coef = !leaf.constant_coefficient;
        bool contributes = false;
        if (op.code == ir::OpCode::connect) {
          const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
          const bool source = t[static_cast<std::size_t>(op.a)].count(pi) > 0;
          const bool own = c.param == pi;
          const std::int64_t m = net.ops[static_cast<std::size_t>(op.a)].size;
          const auto nnz = static_cast<std::int64_t>(c.mask.size());
          contributes = source || own;
          switch (c.kind) {
            case ir::ConnectionKind::dense:
              macs += (source ? n * m * cols + (coef ? n * m : 0) : 0) + (own && coef ? n * m : 0);
              break;
            case ir::ConnectionKind::diagonal:
              macs += (source ? n * cols + (coef ? n : 0) : 0) + (own && coef ? n : 0);
              break;
            case ir::ConnectionKind::identity: macs += source && coef ? n * cols : 0; break;
            case ir::ConnectionKind::sparse:
              macs += (source ? nnz * cols + (coef ? nnz : 0) : 0) + (own && coef ? nnz : 0);
              break;
          }
        } else if (op.code == ir::OpCode::bias) {
          contributes = op.param == pi;
        } else if (op.code == ir::OpCode::read || op.code == ir::OpCode::read_delayed) {
          contributes = t[static_cast<std::size_t>(leaf.op)].count(pi) > 0;
          macs += contributes && coef ? n * cols : 0;
        }
        if (contributes && coef) used.insert(leaf.op);
      }
    }
  }
  for (std::size_t g = 0; g < net.groups.size(); ++g)
    for (const auto& leaf : a.leaves[g])
      if (used.count(leaf.op)) macs += static_cast<std::int64_t>(net.ops[static_cast<std::size_t>(leaf.op)].size) * leaf.coefficient_multiplies;
  return macs;
}

// Neuron-level structure: for every stored block (state k, parameter group p), which entries of
// d R^k / d P_p can ever be nonzero. Each group's block for p is a pattern (one bitset of |P_p|
// columns per neuron), built from its leaves: a dense connection gives every row the union of its
// source's rows, a diagonal or identity connection and a group read keep row r in row r, a sparse
// link carries row `from` into row `to`; the immediate blocks set row r's own weights (dense: the
// columns of row r of W; diagonal and bias: column r; sparse: the link's column). delay(l) reads
// the pattern of Delta^l, which is iterated to its fixed point (patterns only grow).
void count_neuron_nonzeros(const ir::Network& net, Analysis& a) {
  using Rows = std::vector<boost::dynamic_bitset<>>;
  const auto P = net.params.size();
  std::map<std::pair<int, int>, Rows> delta;  // (state group, param) -> pattern of Delta
  for (const auto& b : a.sensitivity_blocks)
    if (b.nonzero)
      delta[{b.state, b.param}] = Rows(static_cast<std::size_t>(net.groups[static_cast<std::size_t>(b.state)].size),
                                       boost::dynamic_bitset<>(static_cast<std::size_t>(net.params[static_cast<std::size_t>(b.param)].size())));
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t p = 0; p < P; ++p) {
      const int pi = static_cast<int>(p);
      const auto cols = static_cast<std::size_t>(net.params[p].size());
      std::map<int, Rows> group;  // this step's pattern of every group that carries block p
      auto source = [&](int read_op) -> const Rows* {
        const auto& op = net.ops[static_cast<std::size_t>(read_op)];
        if (!a.has_tangent(read_op, pi)) return nullptr;
        if (op.code == ir::OpCode::read_delayed) return &delta.at({op.group, pi});
        return &group.at(op.group);
      };
      for (int g : a.group_order) {
        const auto& grp = net.groups[static_cast<std::size_t>(g)];
        if (!a.has_tangent(grp.value_op(), pi)) continue;
        Rows rows(static_cast<std::size_t>(grp.size), boost::dynamic_bitset<>(cols));
        for (const auto& leaf : a.leaves[static_cast<std::size_t>(g)]) {
          const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
          if (op.code == ir::OpCode::read || op.code == ir::OpCode::read_delayed) {
            if (const Rows* src = source(leaf.op))
              for (std::size_t r = 0; r < rows.size(); ++r) rows[r] |= (*src)[r];
          } else if (op.code == ir::OpCode::bias) {
            if (op.param == pi)
              for (std::size_t r = 0; r < rows.size(); ++r) rows[r].set(r);
          } else if (op.code == ir::OpCode::connect) {
            const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
            const auto m = static_cast<std::size_t>(net.ops[static_cast<std::size_t>(op.a)].size);
            if (const Rows* src = source(op.a)) {
              switch (c.kind) {
                case ir::ConnectionKind::dense: {
                  boost::dynamic_bitset<> all(cols);
                  for (const auto& row : *src) all |= row;
                  for (auto& row : rows) row |= all;
                  break;
                }
                case ir::ConnectionKind::diagonal:
                case ir::ConnectionKind::identity:
                  for (std::size_t r = 0; r < rows.size(); ++r) rows[r] |= (*src)[r];
                  break;
                case ir::ConnectionKind::sparse:
                  for (const auto& e : c.mask) rows[static_cast<std::size_t>(e.to)] |= (*src)[static_cast<std::size_t>(e.from)];
                  break;
              }
            }
            if (c.param == pi) {
              switch (c.kind) {
                case ir::ConnectionKind::dense:
                  for (std::size_t r = 0; r < rows.size(); ++r)
                    for (std::size_t s = 0; s < m; ++s) rows[r].set(r * m + s);
                  break;
                case ir::ConnectionKind::diagonal:
                  for (std::size_t r = 0; r < rows.size(); ++r) rows[r].set(r);
                  break;
                case ir::ConnectionKind::sparse:
                  for (std::size_t e = 0; e < c.mask.size(); ++e) rows[static_cast<std::size_t>(c.mask[e].to)].set(e);
                  break;
                case ir::ConnectionKind::identity: break;
              }
            }
          }
        }
        group[g] = std::move(rows);
      }
      for (auto& [key, rows] : delta)
        if (key.second == pi && group.count(key.first) > 0) {
          const auto& now = group.at(key.first);
          for (std::size_t r = 0; r < rows.size(); ++r)
            if (!now[r].is_subset_of(rows[r])) {
              rows[r] |= now[r];
              changed = true;
            }
        }
    }
  }
  a.sensitivity_nonzeros = 0;
  for (auto& b : a.sensitivity_blocks) {
    b.nonzeros = 0;
    if (!b.nonzero) continue;
    for (const auto& row : delta.at({b.state, b.param})) b.nonzeros += static_cast<std::int64_t>(row.count());
    a.sensitivity_nonzeros += b.nonzeros;
  }
}

}  // namespace

bool Analysis::has_tangent(int op, int param) const {
  const auto& ps = op_tangent[static_cast<std::size_t>(op)];
  return std::binary_search(ps.begin(), ps.end(), param);
}

void plan_sensitivity(const ir::Network& net, Analysis& a, const AnalysisOptions& options) {
  const auto K = a.states.size();
  const auto P = net.params.size();

  a.leaves.assign(net.groups.size(), {});
  for (std::size_t g = 0; g < net.groups.size(); ++g)
    if (net.groups[g].kind == ir::GroupKind::neuron) {
      std::vector<int> path;
      collect_leaves(net, net.groups[g].value_op(), 1, path, a.leaves[g]);
    }

  // Imm(k): parameters used in any group from which a within-step path reaches k.
  std::vector<ParamSet> S(K);
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t p = 0; p < P; ++p)
      if (a.reaches_within_step[static_cast<std::size_t>(net.params[p].group)][static_cast<std::size_t>(a.states[k])])
        S[k].insert(static_cast<int>(p));

  // The fixed point, loop by loop in evaluation order: earlier loops are final when a later one
  // reads them; inside a loop the members feed each other until nothing changes.
  for (const auto& loop : a.loops) {
    for (bool changed = true; changed;) {
      changed = false;
      for (int kg : loop.states) {
        const auto k = static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(kg)]);
        for (std::size_t l = 0; l < K; ++l)
          if (a.cross_term(kg, a.states[l]))
            for (int p : S[l]) changed |= S[k].insert(p).second;
      }
    }
  }

  // Without pruning every state keeps every parameter group.
  if (!options.prune)
    for (auto& set : S)
      for (std::size_t p = 0; p < P; ++p) set.insert(static_cast<int>(p));

  // A state's Delta is stored only if the state can influence a loss.
  a.state_params.assign(K, {});
  a.sensitivity_blocks.clear();
  a.sensitivity_values = 0;
  a.dense_sensitivity_values = 0;
  for (std::size_t k = 0; k < K; ++k) {
    const auto g = static_cast<std::size_t>(a.states[k]);
    const bool stored = a.influences_loss[g] || !options.prune;
    const std::int64_t n = net.groups[g].size;
    a.dense_sensitivity_values += n * net.param_count();
    for (std::size_t p = 0; p < P; ++p) {
      const bool nonzero = stored && S[k].count(static_cast<int>(p)) > 0;
      a.sensitivity_blocks.push_back({a.states[k], static_cast<int>(p), nonzero});
      if (nonzero) {
        a.state_params[k].push_back(static_cast<int>(p));
        a.sensitivity_values += n * net.params[p].size();
      }
    }
  }
  a.gradient_macs_per_step = a.sensitivity_values;

  // Tangents are needed in groups whose values reach a stored state within the step.
  auto reaches_stored_state = [&](int g, bool all_states) {
    for (std::size_t k = 0; k < K; ++k)
      if ((all_states || a.influences_loss[static_cast<std::size_t>(a.states[k])]) &&
          a.reaches_within_step[static_cast<std::size_t>(g)][static_cast<std::size_t>(a.states[k])])
        return true;
    return false;
  };
  auto pruned = propagate_tangents(
      net, a,
      [&](int l) {
        const auto& params = a.state_params[static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(l)])];
        return ParamSet(params.begin(), params.end());
      },
      [&](int g) { return reaches_stored_state(g, !options.prune); });
  ParamSet all;
  for (std::size_t p = 0; p < P; ++p) all.insert(static_cast<int>(p));
  if (!options.prune)
    for (auto& t : pruned)
      if (!t.empty()) t = all;
  for (std::size_t k = 0; k < K && options.prune; ++k) {
    const auto& g = net.groups[static_cast<std::size_t>(a.states[k])];
    const auto& got = pruned[static_cast<std::size_t>(g.value_op())];
    if (a.influences_loss[static_cast<std::size_t>(a.states[k])] &&
        !std::equal(got.begin(), got.end(), a.state_params[k].begin(), a.state_params[k].end()))
      throw std::logic_error(fmt::format(
          "loopgrad internal error: network '{}', state '{}': the tangent propagation and the "
          "sensitivity fixed point disagree; please report this network",
          net.name, g.name));
  }
  a.op_tangent.assign(net.ops.size(), {});
  for (std::size_t i = 0; i < net.ops.size(); ++i) a.op_tangent[i].assign(pruned[i].begin(), pruned[i].end());
  a.macs_per_step = count_macs(net, a, pruned);
  count_neuron_nonzeros(net, a);

  // Nothing pruned: every state stored with all parameters, every op that depends on anything
  // carries all parameters.
  auto dense = propagate_tangents(
      net, a, [&](int) { return all; }, [&](int g) { return reaches_stored_state(g, true); });
  for (auto& t : dense)
    if (!t.empty()) t = all;
  a.dense_macs_per_step = count_macs(net, a, dense);
}

}  // namespace loopgrad::analysis
