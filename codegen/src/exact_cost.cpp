// Pass: plan_exact_cost. Which exact algorithm is cheaper for this network, RTRL or the blocked
// algorithm (runtime::BlockedRtrl), and at which block length (analysis.hpp, ExactCost).
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "loopgrad/analysis/analysis.hpp"

namespace loopgrad::analysis {

namespace {

bool reads_input(const ir::Network& net, const ir::Op& read) {
  return read.code == ir::OpCode::read && net.groups[static_cast<std::size_t>(read.group)].kind == ir::GroupKind::input;
}

// Multiplications of one step's reverse pass, leaf by leaf as the kernel evaluates it
// (kernel_reverse.cpp): the adjoint reaching a leaf costs its coefficient's multiplications and
// one more per element where the coefficient is not +-1; a dense connection then one multiply per
// weight for the weight's gradient and one for the source's adjoint (none for an input); diagonal
// and sparse connections likewise per weight.
std::int64_t reverse_macs(const ir::Network& net, const Analysis& a) {
  std::int64_t macs = 0;
  for (int g : a.group_order)
    for (const auto& leaf : a.leaves[static_cast<std::size_t>(g)]) {
      const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
      const std::int64_t n = op.size;
      const std::int64_t adjoint = leaf.constant_coefficient ? 0 : leaf.coefficient_multiplies + 1;
      switch (op.code) {
        case ir::OpCode::connect: {
          const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
          const std::int64_t sides = reads_input(net, net.ops[static_cast<std::size_t>(op.a)]) ? 1 : 2;
          switch (c.kind) {
            case ir::ConnectionKind::dense: macs += n * adjoint + sides * n * net.ops[static_cast<std::size_t>(op.a)].size; break;
            case ir::ConnectionKind::diagonal: macs += n * adjoint + sides * n; break;
            case ir::ConnectionKind::identity: macs += sides == 2 ? n * adjoint : 0; break;
            case ir::ConnectionKind::sparse: {
              const auto links = static_cast<std::int64_t>(c.mask.size());
              macs += links * adjoint + sides * links;
              break;
            }
          }
          break;
        }
        case ir::OpCode::bias: macs += n * adjoint; break;
        case ir::OpCode::read:
        case ir::OpCode::read_delayed: macs += reads_input(net, op) ? 0 : n * adjoint; break;
        default: break;
      }
    }
  return macs;
}

// What a leaf's coefficient multiplies together: per mul on its path the other operand, per
// activation with a derivative the activation. Two leaves of a group with the same factors and
// sign have the same adjoint.
std::vector<int> coefficient_factors(const ir::Network& net, const Leaf& leaf) {
  std::vector<int> factors{leaf.sign};
  int child = leaf.op;
  for (int parent : leaf.path) {
    const auto& o = net.ops[static_cast<std::size_t>(parent)];
    if (o.code == ir::OpCode::mul) factors.push_back(o.a == child ? o.b : o.a);
    if (o.code == ir::OpCode::div) {  // 1/b for the numerator, -y/b for the denominator: a tag, then which
      factors.push_back(std::numeric_limits<int>::min());
      factors.push_back(2 * parent + (o.a == child ? 0 : 1));
    }
    if (o.code == ir::OpCode::activate && o.activation != ir::Activation::identity) factors.push_back(-1 - parent);
    child = parent;
  }
  return factors;
}

// Multiplications of the block end's sweep (kernel_reverse_columns.cpp), per column and step and
// per call, over the groups that reach the state. A leaf's coefficient is evaluated once per row
// and call; each column then multiplies its adjoint by it once per element unless it is +-1. A
// dense connection keeps that adjoint once per group and coefficient (W_x x + W_h delay(h) + b
// inside one activation share it), passes it to its source (m multiplies per row, none for an
// input) and adds its parameter term later (m per row, every dense leaf); diagonal and sparse
// connections cost one multiply per weight for the gradient and one for the source's adjoint.
std::pair<std::int64_t, std::int64_t> column_reverse_macs(const ir::Network& net, const Analysis& a) {
  const auto& live = a.reaches_state;
  std::int64_t column = 0, call = 0;
  std::set<std::pair<int, std::vector<int>>> kept;  // group, coefficient_factors: one adjoint each
  for (int g : a.group_order) {
    if (!live[static_cast<std::size_t>(g)]) continue;
    for (const auto& leaf : a.leaves[static_cast<std::size_t>(g)]) {
      const auto& op = net.ops[static_cast<std::size_t>(leaf.op)];
      const std::int64_t n = op.size;
      const std::int64_t scale = leaf.constant_coefficient ? 0 : 1;
      const std::int64_t coefficient = leaf.constant_coefficient ? 0 : leaf.coefficient_multiplies;
      switch (op.code) {
        case ir::OpCode::connect: {
          const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
          const bool source = !reads_input(net, net.ops[static_cast<std::size_t>(op.a)]);
          switch (c.kind) {
            case ir::ConnectionKind::dense: {
              const std::int64_t m = net.ops[static_cast<std::size_t>(op.a)].size;
              if (kept.emplace(g, coefficient_factors(net, leaf)).second) {
                column += n * scale;
                call += n * coefficient;
              }
              column += n * m * (source ? 2 : 1);
              break;
            }
            case ir::ConnectionKind::diagonal:
              column += n * (scale + (source ? 2 : 1));
              call += n * coefficient;
              break;
            case ir::ConnectionKind::identity:
              column += source ? n * scale : 0;
              call += source ? n * coefficient : 0;
              break;
            case ir::ConnectionKind::sparse: {
              const auto links = static_cast<std::int64_t>(c.mask.size());
              column += links * (scale + (source ? 2 : 1));
              call += links * coefficient;
              break;
            }
          }
          break;
        }
        case ir::OpCode::bias:
          column += n * scale;
          call += n * coefficient;
          break;
        case ir::OpCode::read:
        case ir::OpCode::read_delayed:
          column += reads_input(net, op) ? 0 : n * scale;
          call += reads_input(net, op) ? 0 : n * coefficient;
          break;
        default: break;
      }
    }
  }
  return {column, call};
}

// What one reverse pass costs with one adjoint (the gradient's sweep), one step of the block
// end's sweeps for all 32 seeds of a call divided by 32 (per row), and one pass over Delta with one
// adjoint, in ExactCost's units. A small pass's weights and a small Delta stay in cache
// (ExactCostWeights::cached_reverse, cached_delta_pass).
struct PassCosts {
  double reverse_pass = 0;
  double block_pass = 0;
  double delta_pass = 0;
};

PassCosts pass_costs(const Analysis& a, const ExactCostWeights& w) {
  const auto& c = a.exact_cost;
  const double values = static_cast<double>(c.reverse_values);
  const double delta = static_cast<double>(a.gradient_macs_per_step);
  const double reverse = c.reverse_macs <= w.cached_reverse_macs ? w.cached_reverse : w.reverse;
  const double delta_pass = a.gradient_macs_per_step <= w.cached_delta_values ? w.cached_delta_pass : w.delta_pass;
  return {reverse * static_cast<double>(c.reverse_macs) + values + w.reverse_call,
          w.block_reverse * (static_cast<double>(c.column_reverse_macs) + static_cast<double>(c.column_call_macs) / 32) +
              values + w.reverse_call / 32,
          delta_pass * delta};
}

}  // namespace

const char* to_string(ExactAlgorithm algorithm) { return algorithm == ExactAlgorithm::blocked ? "blocked" : "rtrl"; }

std::int64_t blocked_macs_per_step(const Analysis& a, int block_length) {
  const auto h = static_cast<std::int64_t>(block_length < 1 ? 1 : block_length);
  const auto& c = a.exact_cost;
  const std::int64_t delta = a.gradient_macs_per_step;  // one pass over Delta_s with one adjoint
  const std::int64_t calls = (c.sensitivity_rows + 31) / 32;  // per step of the block end's sweeps
  return c.sensitivity_rows * c.column_reverse_macs + calls * c.column_call_macs +
         (c.sensitivity_rows * delta + h - 1) / h + ((h + 1) * c.reverse_macs + 1) / 2 + delta;
}

double blocked_cost_per_step(const Analysis& a, int block_length, const ExactCostWeights& w) {
  const double h = block_length < 1 ? 1.0 : static_cast<double>(block_length);
  const double rows = static_cast<double>(a.exact_cost.sensitivity_rows), delta = static_cast<double>(a.gradient_macs_per_step);
  const auto [reverse_pass, block_pass, delta_pass] = pass_costs(a, w);
  return rows * block_pass + (h + 1) / 2 * reverse_pass + (w.block_product * rows + w.product_output) * delta / h +
         delta_pass;
}

BackgroundCost background_cost_per_step(const Analysis& a, int block_length, const ExactCostWeights& w) {
  const double h = block_length < 1 ? 1.0 : static_cast<double>(block_length);
  const double rows = static_cast<double>(a.exact_cost.sensitivity_rows), delta = static_cast<double>(a.gradient_macs_per_step);
  const auto [reverse_pass, block_pass, delta_pass] = pass_costs(a, w);
  return {(3 * h + 1) / 2 * reverse_pass + delta_pass,
          h * rows * block_pass + (w.block_product * rows + w.product_output) * delta + w.background_start};
}

// Fills a.exact_cost from the fields plan_sensitivity wrote. The blocked cost has a term falling
// as 1/h and one rising as h, least near h* = sqrt(2 (w_product rows + w_output) |Delta| /
// reverse pass); the search covers every h up to 4 h* + 16. Under the background schedule the
// learner's mean step is about max(caller, block_end / h) (background_cost_per_step): the
// caller's step rises with h and the block end's share falls, so the least h at which the block
// end fits is the best one, and the one at which no step waits for the second thread (a block end
// that does not fit makes the next block's last step wait for the rest: at Elman 256, h = 60, 20x
// the median step). It fits with ExactCostWeights::background_headroom to spare.
void plan_exact_cost(const ir::Network& net, Analysis& a, const ExactCostWeights& w) {
  auto& c = a.exact_cost;
  c.reverse_macs = reverse_macs(net, a);
  std::tie(c.column_reverse_macs, c.column_call_macs) = column_reverse_macs(net, a);
  c.reverse_values = 0;
  for (const auto& g : net.groups) c.reverse_values += g.kind == ir::GroupKind::neuron ? g.size : 0;
  c.sensitivity_rows = 0;
  for (std::size_t k = 0; k < a.states.size(); ++k) {
    const int g = a.states[k];
    c.reverse_values += net.groups[static_cast<std::size_t>(g)].size;
    for (std::size_t r = 0; r < static_cast<std::size_t>(net.groups[static_cast<std::size_t>(g)].size); ++r) {
      bool stores = false;
      for (int p : a.state_params[k]) stores = stores || !a.pattern(g, p).rows[r].empty();
      c.sensitivity_rows += stores ? 1 : 0;
    }
  }
  c.rtrl_macs = c.reverse_macs + a.macs_per_step + a.gradient_macs_per_step;
  const auto passes = pass_costs(a, w);
  c.rtrl_cost = passes.reverse_pass + static_cast<double>(a.macs_per_step) +
                w.product_output * static_cast<double>(a.product_output_values) + passes.delta_pass;
  const double reverse_pass = std::max(passes.reverse_pass, 1.0);
  const double optimum =
      std::sqrt(2.0 * (w.block_product * static_cast<double>(c.sensitivity_rows) + w.product_output) *
                static_cast<double>(a.gradient_macs_per_step) / reverse_pass);
  const int last = static_cast<int>(std::min(4.0 * optimum + 16.0, 1e6));
  c.block_length = 1;
  double best = blocked_cost_per_step(a, 1, w);
  for (int h = 2; h <= last; ++h) {
    const double cost = blocked_cost_per_step(a, h, w);
    if (cost < best) {
      best = cost;
      c.block_length = h;
    }
  }
  c.blocked_cost = best;
  c.background_block_length = 1;
  for (int h = 1; h < 1000000; ++h) {
    const auto background = background_cost_per_step(a, h, w);
    c.background_block_length = h;
    if (background.block_end <= w.background_headroom * h * background.caller) break;
  }
  c.blocked_macs = blocked_macs_per_step(a, c.block_length);
  // The blocked algorithm's sweeps are exact: an approximation (layer_local) runs on RTRL alone.
  c.choice = a.exact() && c.sensitivity_rows > 0 && c.blocked_cost < c.rtrl_cost ? ExactAlgorithm::blocked
                                                                                 : ExactAlgorithm::rtrl;
}

}  // namespace loopgrad::analysis
