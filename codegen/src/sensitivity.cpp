// Pass `plan_sensitivity`: which blocks of Delta are structurally nonzero (the fixed point
// S(k) = Imm(k) U union_{l : D^{kl} != 0} S(l)), which tangent blocks each op of one step carries
// when Eqn. 4 is evaluated path by path, and what that costs.
#include <algorithm>
#include <fmt/format.h>
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

// Multiply-adds of the tangent propagation: a linear map applied to each incoming block, and the
// diagonal Jacobians of *, activations and diagonal connections. Sums, copies and the immediate
// blocks (which only place values) cost no multiplication.
std::int64_t count_macs(const ir::Network& net, const std::vector<ParamSet>& t) {
  auto block_cols = [&](const ParamSet& s) {
    std::int64_t cols = 0;
    for (int p : s) cols += net.params[static_cast<std::size_t>(p)].size();
    return cols;
  };
  std::int64_t macs = 0;
  for (std::size_t i = 0; i < net.ops.size(); ++i) {
    const auto& op = net.ops[i];
    if (t[i].empty()) continue;
    const std::int64_t n = op.size;
    switch (op.code) {
      case ir::OpCode::connect: {
        const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
        const std::int64_t cols = block_cols(t[static_cast<std::size_t>(op.a)]);
        const std::int64_t m = net.ops[static_cast<std::size_t>(op.a)].size;
        if (c.kind == ir::ConnectionKind::dense) macs += n * m * cols;
        if (c.kind == ir::ConnectionKind::diagonal) macs += n * cols;
        if (c.kind == ir::ConnectionKind::sparse) macs += static_cast<std::int64_t>(c.mask.size()) * cols;
        break;
      }
      case ir::OpCode::mul:
        macs += n * (block_cols(t[static_cast<std::size_t>(op.a)]) + block_cols(t[static_cast<std::size_t>(op.b)]));
        break;
      case ir::OpCode::activate:
        if (op.activation != ir::Activation::identity) macs += n * block_cols(t[static_cast<std::size_t>(op.a)]);
        break;
      default: break;
    }
  }
  return macs;
}

}  // namespace

void plan_sensitivity(const ir::Network& net, Analysis& a) {
  const auto K = a.states.size();
  const auto P = net.params.size();

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

  // A state's Delta is stored only if the state can influence a loss.
  a.state_params.assign(K, {});
  a.sensitivity_blocks.clear();
  a.sensitivity_values = 0;
  a.dense_sensitivity_values = 0;
  for (std::size_t k = 0; k < K; ++k) {
    const auto g = static_cast<std::size_t>(a.states[k]);
    const bool stored = a.influences_loss[g];
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
      [&](int g) { return reaches_stored_state(g, false); });
  for (std::size_t k = 0; k < K; ++k) {
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
  a.macs_per_step = count_macs(net, pruned);

  // Nothing pruned: every state stored with all parameters, every op that depends on anything
  // carries all parameters.
  ParamSet all;
  for (std::size_t p = 0; p < P; ++p) all.insert(static_cast<int>(p));
  auto dense = propagate_tangents(
      net, a, [&](int) { return all; }, [&](int g) { return reaches_stored_state(g, true); });
  for (auto& t : dense)
    if (!t.empty()) t = all;
  a.dense_macs_per_step = count_macs(net, dense);
}

}  // namespace loopgrad::analysis
