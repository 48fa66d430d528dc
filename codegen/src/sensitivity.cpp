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
        case ir::OpCode::div:
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
                           o.code == ir::OpCode::div ||
                           o.code == ir::OpCode::activate;
  if (!elementwise) {
    Leaf leaf{op, sign, path, true, 0};
    int factors = 0;
    for (int parent : path) {
      const auto& a = net.ops[static_cast<std::size_t>(parent)];
      if (a.code == ir::OpCode::mul || a.code == ir::OpCode::div) ++factors;  // the other operand; 1/b or -y/b
      if (a.code == ir::OpCode::activate && a.activation != ir::Activation::identity) {
        ++factors;
        // f'(z) itself: as many multiplications as its rule prints (tanh' = 1 - y*y one, relu' none).
        leaf.coefficient_multiplies += ir::rule(a.activation).derivative_multiplies();
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

}  // namespace

std::size_t merged_read_leaf(const ir::Network& net, const std::vector<Leaf>& leaves, std::size_t i) {
  const auto& o = net.ops[static_cast<std::size_t>(leaves[i].op)];
  if (o.code != ir::OpCode::read && o.code != ir::OpCode::read_delayed) return i;
  auto same = [&](const Leaf& leaf) {
    const auto& other = net.ops[static_cast<std::size_t>(leaf.op)];
    return other.code == o.code && other.group == o.group;
  };
  std::size_t first = leaves.size(), members = 0;
  bool scaled = false;
  for (std::size_t j = 0; j < leaves.size(); ++j)
    if (same(leaves[j])) {
      first = std::min(first, j);
      ++members;
      scaled = scaled || !leaves[j].constant_coefficient;
    }
  return members > 1 && scaled ? first : i;
}

std::vector<std::size_t> reads_joining(const ir::Network& net, const std::vector<Leaf>& leaves, std::size_t i) {
  std::vector<std::size_t> out;
  if (merged_read_leaf(net, leaves, i) != i) return out;
  for (std::size_t j = i + 1; j < leaves.size(); ++j)
    if (merged_read_leaf(net, leaves, j) == i) out.push_back(j);
  return out;
}

namespace {

// The entries of tangent blocks as count_macs sees them: all of them (nothing pruned at neuron
// level) or the patterns'.
struct SourceEntries {
  const ir::Network& net;
  const Analysis* patterns;  // nullptr: every block full

  // Entries of group g's block p.
  std::int64_t group(int g, int p) const {
    if (patterns == nullptr) return net.groups[static_cast<std::size_t>(g)].size * net.params[static_cast<std::size_t>(p)].size();
    return patterns->pattern(g, p).nonzeros;
  }
  // Entries the leaf `op` carries into its group's block p, given that its source carries p.
  std::int64_t carried(int op, int p) const {
    if (patterns != nullptr) return carried_entries(net, *patterns, op, p);
    const auto& o = net.ops[static_cast<std::size_t>(op)];
    const std::int64_t cols = net.params[static_cast<std::size_t>(p)].size();
    if (o.code != ir::OpCode::connect) return net.groups[static_cast<std::size_t>(o.group)].size * cols;
    const auto& c = net.connections[static_cast<std::size_t>(o.connection)];
    if (c.kind == ir::ConnectionKind::sparse) return static_cast<std::int64_t>(c.mask.size()) * cols;
    return net.ops[static_cast<std::size_t>(o.a)].size * cols;
  }
};

// Multiply-adds of the sensitivity update as the kernel evaluates it, given the tangent blocks
// each op carries and the entries of each: for every parameter block p and every group whose
// block for p is formed, each leaf's Jacobian applied to its source's entries (a dense
// connection: every row of W times every stored entry of the source; diagonal, identity and
// read: each entry once, scaled; sparse: each link times its source row's entries), the leaf's
// coefficient folded into the weights it scales, and the immediate blocks (a multiply only when
// the coefficient is not +-1); plus, once per step, the coefficients the update uses. Sums and
// copies are free.
// When `where` is given, it receives the same count split by block ([g][p]) and the coefficients'
// share (Analysis::block_macs, coefficient_macs), and the entries the dense products write
// (Analysis::product_output_values).
struct MacsByBlock {
  std::vector<std::vector<std::int64_t>> blocks;
  std::int64_t coefficients = 0;
  std::int64_t product_outputs = 0;
};

std::int64_t count_macs(const ir::Network& net, const Analysis& a, const std::vector<ParamSet>& t,
                        const SourceEntries& entries, MacsByBlock* where = nullptr) {
  std::int64_t macs = 0;
  if (where) where->blocks.assign(net.groups.size(), std::vector<std::int64_t>(net.params.size(), 0));
  std::set<int> used;  // leaves whose coefficient the update reads
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const int pi = static_cast<int>(p);
    for (int g : a.group_order) {
      const auto& group = net.groups[static_cast<std::size_t>(g)];
      // A block with no entries is not formed.
      if (t[static_cast<std::size_t>(group.value_op())].count(pi) == 0 || entries.group(g, pi) == 0) continue;
      const std::int64_t before = macs;
      const auto& leaves = a.leaves[static_cast<std::size_t>(g)];
      for (std::size_t i = 0; i < leaves.size(); ++i) {
        const auto& leaf = leaves[i];
        const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
        const std::int64_t n = op.size;
        const bool coef = !leaf.constant_coefficient;
        bool contributes = false;
        if (op.code == ir::OpCode::connect) {
          const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
          const std::int64_t src = t[static_cast<std::size_t>(op.a)].count(pi) > 0 ? entries.carried(leaf.op, pi) : 0;
          const bool source = src > 0;  // carrying nothing adds nothing
          const bool own = c.param == pi;
          const std::int64_t m = net.ops[static_cast<std::size_t>(op.a)].size;
          const auto nnz = static_cast<std::int64_t>(c.mask.size());
          contributes = source || own;
          switch (c.kind) {
            case ir::ConnectionKind::dense:
              macs += (source ? n * src + (coef ? n * m : 0) : 0) + (own && coef ? n * m : 0);
              // W (n x m) times the source's block (src entries over m rows) writes n of its mean rows.
              if (where != nullptr && source) where->product_outputs += n * src / m;
              break;
            case ir::ConnectionKind::diagonal:
              macs += (source ? src + (coef ? n : 0) : 0) + (own && coef ? n : 0);
              break;
            case ir::ConnectionKind::identity: macs += source && coef ? src : 0; break;
            case ir::ConnectionKind::sparse:
              macs += (source ? src + (coef ? nnz : 0) : 0) + (own && coef ? nnz : 0);
              break;
          }
        } else if (op.code == ir::OpCode::bias) {
          contributes = op.param == pi;
        } else if (op.code == ir::OpCode::read || op.code == ir::OpCode::read_delayed) {
          const std::int64_t src = t[static_cast<std::size_t>(leaf.op)].count(pi) > 0 ? entries.carried(leaf.op, pi) : 0;
          contributes = src > 0;
          // Reads of one group share one weighted pass (merged_read_leaf), counted at the first.
          // (a pass that later reads join is weighted by their summed coefficients)
          if (merged_read_leaf(net, leaves, i) == i) macs += coef || !reads_joining(net, leaves, i).empty() ? src : 0;
        }
        if (contributes && coef) used.insert(leaf.op);
      }
      if (where) where->blocks[static_cast<std::size_t>(g)][p] += macs - before;
    }
  }
  const std::int64_t blocks = macs;
  for (std::size_t g = 0; g < net.groups.size(); ++g)
    for (const auto& leaf : a.leaves[g])
      if (used.count(leaf.op)) macs += static_cast<std::int64_t>(net.ops[static_cast<std::size_t>(leaf.op)].size) * leaf.coefficient_multiplies;
  if (where) where->coefficients = macs - blocks;
  return macs;
}

using Rows = std::vector<boost::dynamic_bitset<>>;

Pattern to_pattern(int g, int p, std::int64_t cols, const Rows& rows) {
  Pattern out{g, p, cols, {}, 0};
  out.rows.resize(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& bits = rows[r];
    auto& runs = out.rows[r];
    for (auto c = bits.find_first(); c != boost::dynamic_bitset<>::npos;) {
      auto e = c;
      while (e + 1 < bits.size() && bits.test(e + 1)) ++e;
      runs.push_back({static_cast<std::int64_t>(c), static_cast<std::int64_t>(e + 1)});
      out.nonzeros += static_cast<std::int64_t>(e + 1 - c);
      c = bits.find_next(e);
    }
  }
  return out;
}

Pattern full_pattern(const ir::Network& net, int g, int p) {
  const std::int64_t cols = net.params[static_cast<std::size_t>(p)].size();
  const auto n = static_cast<std::size_t>(net.groups[static_cast<std::size_t>(g)].size);
  Pattern out{g, p, cols, std::vector<std::vector<Run>>(n, std::vector<Run>{{0, cols}}), cols * static_cast<std::int64_t>(n)};
  if (cols == 0) out.rows.assign(n, {});
  return out;
}

// One step's pattern of every group that carries block p, given the patterns of Delta.
// A dense connection gives every row the union of its source's rows, a diagonal or identity
// connection and a group read keep row r in row r, a sparse link carries row `from` into row
// `to`; the immediate blocks set row r's own weights (dense: the columns of row r of W;
// diagonal and bias: column r; sparse: the link's column). delay(l) reads the pattern of Delta^l.
std::map<int, Rows> step_patterns(const ir::Network& net, const Analysis& a, int pi,
                                  const std::map<std::pair<int, int>, Rows>& delta) {
  const auto cols = static_cast<std::size_t>(net.params[static_cast<std::size_t>(pi)].size());
  std::map<int, Rows> group;
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
  return group;
}

// Neuron-level structure: the pattern of every tangent block and stored block (Pattern in
// analysis.hpp). Delta's patterns start empty and grow by what one step writes into them until
// nothing changes (patterns only grow, so this ends); the groups' patterns of that last step are
// final. Without pruning every pattern is full.
void compute_patterns(const ir::Network& net, Analysis& a, bool prune) {
  const auto P = net.params.size();
  a.patterns.clear();
  a.pattern_index.assign(net.groups.size(), std::vector<int>(P, -1));
  auto add = [&](Pattern pattern) {
    auto& slot = a.pattern_index[static_cast<std::size_t>(pattern.group)][static_cast<std::size_t>(pattern.param)];
    if (slot >= 0) return;
    slot = static_cast<int>(a.patterns.size());
    a.patterns.push_back(std::move(pattern));
  };
  if (!prune) {
    for (std::size_t g = 0; g < net.groups.size(); ++g) {
      if (net.groups[g].kind != ir::GroupKind::neuron) continue;
      for (int p : a.op_tangent[static_cast<std::size_t>(net.groups[g].value_op())]) add(full_pattern(net, static_cast<int>(g), p));
    }
    for (const auto& b : a.sensitivity_blocks)
      if (b.nonzero) add(full_pattern(net, b.state, b.param));
  } else {
    std::map<std::pair<int, int>, Rows> delta;  // (state group, param) -> pattern of Delta
    for (const auto& b : a.sensitivity_blocks)
      if (b.nonzero)
        delta[{b.state, b.param}] = Rows(static_cast<std::size_t>(net.groups[static_cast<std::size_t>(b.state)].size),
                                         boost::dynamic_bitset<>(static_cast<std::size_t>(net.params[static_cast<std::size_t>(b.param)].size())));
    std::vector<std::map<int, Rows>> last(P);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t p = 0; p < P; ++p) {
        const int pi = static_cast<int>(p);
        last[p] = step_patterns(net, a, pi, delta);
        for (auto& [key, rows] : delta) {
          if (key.second != pi || last[p].count(key.first) == 0) continue;
          const auto& now = last[p].at(key.first);
          for (std::size_t r = 0; r < rows.size(); ++r)
            if (!now[r].is_subset_of(rows[r])) {
              rows[r] |= now[r];
              changed = true;
            }
        }
      }
    }
    for (std::size_t p = 0; p < P; ++p)
      for (const auto& [g, rows] : last[p]) add(to_pattern(g, static_cast<int>(p), net.params[p].size(), rows));
    for (const auto& [key, rows] : delta)
      if (a.pattern_index[static_cast<std::size_t>(key.first)][static_cast<std::size_t>(key.second)] < 0 ||
          a.pattern(key.first, key.second).rows != to_pattern(key.first, key.second, net.params[static_cast<std::size_t>(key.second)].size(), rows).rows)
        throw std::logic_error(fmt::format(
            "loopgrad internal error: network '{}': the pattern of d {} / d {} is not at its fixed point; please "
            "report this network",
            net.name, net.groups[static_cast<std::size_t>(key.first)].name, net.params[static_cast<std::size_t>(key.second)].name));
  }
  a.sensitivity_values = 0;
  for (auto& b : a.sensitivity_blocks) {
    b.nonzeros = b.nonzero ? a.pattern(b.state, b.param).nonzeros : 0;
    a.sensitivity_values += b.nonzeros;
  }
}

// The states AnalysisOptions::layer_local names, by state index ("*": all); throws AnalysisError
// for a name that is not a state, listing the states.
std::vector<bool> layer_local_named(const ir::Network& net, const Analysis& a, const std::vector<std::string>& names) {
  std::vector<bool> named(a.states.size(), false);
  for (const auto& name : names) {
    if (name == "*") {
      named.assign(a.states.size(), true);
      continue;
    }
    const int g = net.find_group(name);
    if (g < 0 || a.state_index[static_cast<std::size_t>(g)] < 0) {
      std::string states;
      for (int s : a.states) states += (states.empty() ? "" : ", ") + net.groups[static_cast<std::size_t>(s)].name;
      throw AnalysisError(fmt::format(
          "network '{}': layer_local names '{}', which is {}; name states (groups read through delay(): {}) or '*'",
          net.name, name, g < 0 ? "no group of the network" : "not a recurrent state",
          states.empty() ? "none" : states));
    }
    named[static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(g)])] = true;
  }
  return named;
}

// The parameter groups each state must not hold under the layer_local approximation: for a named
// state, those that do not belong to its loop. A parameter group belongs to loop L when a group
// that uses it reaches a state of L within one step along a path on which no group is a state of
// another loop.
std::vector<ParamSet> layer_local_exclusions(const ir::Network& net, const Analysis& a, const std::vector<bool>& named,
                                             const std::vector<std::vector<int>>& users) {
  std::vector<ParamSet> excluded(a.states.size());
  if (std::none_of(named.begin(), named.end(), [](bool b) { return b; })) return excluded;
  std::vector<int> loop_of(net.groups.size(), -1);
  for (std::size_t L = 0; L < a.loops.size(); ++L)
    for (int s : a.loops[L].states) loop_of[static_cast<std::size_t>(s)] = static_cast<int>(L);
  for (std::size_t L = 0; L < a.loops.size(); ++L) {
    // reach[g]: g reaches a state of loop L within one step without passing another loop's state;
    // filled in reverse evaluation order, so that every successor is done.
    std::vector<bool> reach(net.groups.size(), false);
    for (auto it = a.group_order.rbegin(); it != a.group_order.rend(); ++it) {
      const auto g = static_cast<std::size_t>(*it);
      if (loop_of[g] == static_cast<int>(L)) {
        reach[g] = true;
      } else if (loop_of[g] < 0) {
        for (const auto& c : net.connections)
          if (!c.delayed && c.from == static_cast<int>(g) && reach[static_cast<std::size_t>(c.to)]) reach[g] = true;
      }
    }
    for (int s : a.loops[L].states) {
      const auto k = static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(s)]);
      if (!named[k]) continue;
      for (std::size_t p = 0; p < users.size(); ++p)
        if (std::none_of(users[p].begin(), users[p].end(), [&](int g) { return reach[static_cast<std::size_t>(g)]; }))
          excluded[k].insert(static_cast<int>(p));
    }
  }
  return excluded;
}

// State k drops parameter group p, yet its tangent must carry p within the step: a state that
// reads k within the step keeps p. layer_local must name that state too: throws AnalysisError.
void refuse_unnamed_reader(const ir::Network& net, const Analysis& a, const std::vector<ParamSet>& excluded,
                           std::size_t k, int p) {
  for (std::size_t k2 = 0; k2 < a.states.size(); ++k2) {
    const auto reader = static_cast<std::size_t>(a.states[k2]);
    if (k2 == k || excluded[k2].count(p) > 0 || !a.reaches_within_step[static_cast<std::size_t>(a.states[k])][reader] ||
        !std::binary_search(a.state_params[k2].begin(), a.state_params[k2].end(), p))
      continue;
    throw AnalysisError(fmt::format(
        "network '{0}': layer_local names the state '{1}' but not '{2}', which reads '{1}' within a step and keeps "
        "parameter '{3}' that '{1}' drops; name '{2}' too (or '*')",
        net.name, net.groups[static_cast<std::size_t>(a.states[k])].name, net.groups[reader].name,
        net.params[static_cast<std::size_t>(p)].name));
  }
}

}  // namespace

std::int64_t carried_entries(const ir::Network& net, const Analysis& a, int op, int param) {
  const auto& o = net.ops[static_cast<std::size_t>(op)];
  if (o.code == ir::OpCode::read || o.code == ir::OpCode::read_delayed)
    return a.has_tangent(op, param) ? a.pattern(o.group, param).nonzeros : 0;
  if (o.code != ir::OpCode::connect || !a.has_tangent(o.a, param)) return 0;
  const auto& source = a.pattern(net.ops[static_cast<std::size_t>(o.a)].group, param);
  const auto& c = net.connections[static_cast<std::size_t>(o.connection)];
  if (c.kind != ir::ConnectionKind::sparse) return source.nonzeros;
  std::int64_t n = 0;
  for (const auto& link : c.mask)
    for (const auto& run : source.rows[static_cast<std::size_t>(link.from)]) n += run.end - run.begin;
  return n;
}

bool Pattern::uniform() const {
  for (const auto& row : rows)
    if (row != rows.front()) return false;
  return true;
}

const Pattern& Analysis::pattern(int group, int param) const {
  const auto g = static_cast<std::size_t>(group), p = static_cast<std::size_t>(param);
  if (group < 0 || param < 0 || g >= pattern_index.size() || p >= pattern_index[g].size() || pattern_index[g][p] < 0)
    throw std::logic_error(fmt::format("loopgrad internal error: no pattern for group {} and parameter group {}", group, param));
  return patterns[static_cast<std::size_t>(pattern_index[g][p])];
}

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

  // Imm(k): parameters used in any group from which a within-step path reaches k (a shared
  // parameter group: in any of the groups that use it).
  std::vector<ParamSet> S(K);
  const auto users = ir::param_users(net);
  for (std::size_t k = 0; k < K; ++k)
    for (std::size_t p = 0; p < P; ++p)
      for (int g : users[p])
        if (a.reaches_within_step[static_cast<std::size_t>(g)][static_cast<std::size_t>(a.states[k])])
          S[k].insert(static_cast<int>(p));

  // The fixed point, loop by loop in evaluation order: earlier loops are final when a later one
  // reads them; inside a loop the members feed each other until nothing changes. `excluded[k]`:
  // parameter groups state k never holds (the layer_local approximation), zero blocks however the
  // others feed it.
  auto fixed_point = [&](std::vector<ParamSet> s, const std::vector<ParamSet>& excluded) {
    for (std::size_t k = 0; k < K; ++k)
      for (int p : excluded[k]) s[k].erase(p);
    for (const auto& loop : a.loops) {
      for (bool changed = true; changed;) {
        changed = false;
        for (int kg : loop.states) {
          const auto k = static_cast<std::size_t>(a.state_index[static_cast<std::size_t>(kg)]);
          for (std::size_t l = 0; l < K; ++l)
            if (a.cross_term(kg, a.states[l]))
              for (int p : s[l])
                if (excluded[k].count(p) == 0) changed |= s[k].insert(p).second;
        }
      }
    }
    return s;
  };
  if (!options.prune && !options.layer_local.empty())
    throw AnalysisError(fmt::format(
        "network '{}': layer_local drops sensitivity blocks and prune = false keeps every block; ask for one of them",
        net.name));
  const auto named = layer_local_named(net, a, options.layer_local);
  const auto excluded = layer_local_exclusions(net, a, named, users);
  a.layer_local_states.clear();
  for (std::size_t k = 0; k < K; ++k)
    if (named[k]) a.layer_local_states.push_back(a.states[k]);
  const auto exact = fixed_point(S, std::vector<ParamSet>(K));
  S = fixed_point(S, excluded);

  // Without pruning every state keeps every parameter group.
  if (!options.prune)
    for (auto& set : S)
      for (std::size_t p = 0; p < P; ++p) set.insert(static_cast<int>(p));

  // A state's Delta is stored only if the state can influence a loss.
  a.state_params.assign(K, {});
  a.dropped_blocks.clear();
  a.sensitivity_blocks.clear();
  a.sensitivity_block_values = 0;
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
        a.sensitivity_block_values += n * net.params[p].size();
      }
      if (stored && !nonzero && exact[k].count(static_cast<int>(p)) > 0)
        a.dropped_blocks.emplace_back(a.states[k], static_cast<int>(p));
    }
  }

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
  // A group carries block p only as far as a state that stores it: with blocks dropped
  // (layer_local), a lower layer's tangent stops at the layer above.
  for (int g : a.group_order) {
    ParamSet kept;  // the blocks of the states g reaches within a step
    for (std::size_t k = 0; k < K; ++k)
      if (a.reaches_within_step[static_cast<std::size_t>(g)][static_cast<std::size_t>(a.states[k])])
        kept.insert(a.state_params[k].begin(), a.state_params[k].end());
    const auto& group = net.groups[static_cast<std::size_t>(g)];
    for (int i = group.op_begin; i < group.op_end; ++i)
      std::erase_if(pruned[static_cast<std::size_t>(i)], [&](int p) { return kept.count(p) == 0; });
  }
  ParamSet all;
  for (std::size_t p = 0; p < P; ++p) all.insert(static_cast<int>(p));
  if (!options.prune)
    for (auto& t : pruned)
      if (!t.empty()) t = all;
  for (std::size_t k = 0; k < K && options.prune; ++k) {
    const auto& g = net.groups[static_cast<std::size_t>(a.states[k])];
    const auto& got = pruned[static_cast<std::size_t>(g.value_op())];
    if (a.influences_loss[static_cast<std::size_t>(a.states[k])])
      for (int p : got)
        if (excluded[k].count(p) > 0) refuse_unnamed_reader(net, a, excluded, k, p);
    if (a.influences_loss[static_cast<std::size_t>(a.states[k])] &&
        !std::equal(got.begin(), got.end(), a.state_params[k].begin(), a.state_params[k].end()))
      throw std::logic_error(fmt::format(
          "loopgrad internal error: network '{}', state '{}': the tangent propagation and the "
          "sensitivity fixed point disagree; please report this network",
          net.name, g.name));
  }
  a.op_tangent.assign(net.ops.size(), {});
  for (std::size_t i = 0; i < net.ops.size(); ++i) a.op_tangent[i].assign(pruned[i].begin(), pruned[i].end());
  compute_patterns(net, a, options.prune);
  a.gradient_macs_per_step = a.sensitivity_values;
  MacsByBlock by_block;
  a.macs_per_step = count_macs(net, a, pruned, SourceEntries{net, &a}, &by_block);
  a.block_macs = std::move(by_block.blocks);
  a.coefficient_macs = by_block.coefficients;
  a.product_output_values = by_block.product_outputs;

  // Nothing pruned: every state stored with all parameters, every op that depends on anything
  // carries all parameters.
  auto dense = propagate_tangents(
      net, a, [&](int) { return all; }, [&](int g) { return reaches_stored_state(g, true); });
  for (auto& t : dense)
    if (!t.empty()) t = all;
  a.dense_macs_per_step = count_macs(net, a, dense, SourceEntries{net, nullptr});
}

}  // namespace loopgrad::analysis
