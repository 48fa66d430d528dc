// Pass: plan_exact_cost. Which exact algorithm is cheaper for this network, RTRL or the blocked
// algorithm (runtime::BlockedRtrl), and at which block length (analysis.hpp, ExactCost).
#include <algorithm>
#include <cmath>

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

}  // namespace

const char* to_string(ExactAlgorithm algorithm) { return algorithm == ExactAlgorithm::blocked ? "blocked" : "rtrl"; }

std::int64_t blocked_macs_per_step(const Analysis& a, int block_length) {
  const auto h = static_cast<std::int64_t>(block_length < 1 ? 1 : block_length);
  const auto& c = a.exact_cost;
  const std::int64_t delta = a.gradient_macs_per_step;  // one pass over Delta_s with one adjoint
  return c.sensitivity_rows * c.reverse_macs + (c.sensitivity_rows * delta + h - 1) / h +
         ((h + 1) * c.reverse_macs + 1) / 2 + delta;
}

double blocked_cost_per_step(const Analysis& a, int block_length, const ExactCostWeights& w) {
  const double h = block_length < 1 ? 1.0 : static_cast<double>(block_length);
  const auto& c = a.exact_cost;
  const double rows = static_cast<double>(c.sensitivity_rows), delta = static_cast<double>(a.gradient_macs_per_step);
  const double reverse_pass = w.reverse * static_cast<double>(c.reverse_macs) + static_cast<double>(c.reverse_values) + w.reverse_call;
  const double block_pass = w.block_reverse * static_cast<double>(c.reverse_macs) + static_cast<double>(c.reverse_values) +
                            w.reverse_call / 32;
  return rows * block_pass + (h + 1) / 2 * reverse_pass + w.block_product * rows * delta / h + w.delta_pass * delta;
}

// Fills a.exact_cost from the fields plan_sensitivity wrote. The blocked cost has a term falling
// as 1/h and one rising as h, least near h* = sqrt(2 w_product rows |Delta| / reverse pass); the
// search covers every h up to 4 h* + 16.
void plan_exact_cost(const ir::Network& net, Analysis& a, const ExactCostWeights& w) {
  auto& c = a.exact_cost;
  c.reverse_macs = reverse_macs(net, a);
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
  c.rtrl_cost = w.reverse * static_cast<double>(c.reverse_macs) + static_cast<double>(c.reverse_values) + w.reverse_call +
                static_cast<double>(a.macs_per_step) + w.delta_pass * static_cast<double>(a.gradient_macs_per_step);
  const double reverse_pass =
      w.reverse * static_cast<double>(std::max<std::int64_t>(c.reverse_macs, 1)) + static_cast<double>(c.reverse_values) + w.reverse_call;
  const double optimum = std::sqrt(2.0 * w.block_product * static_cast<double>(c.sensitivity_rows) *
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
  c.blocked_macs = blocked_macs_per_step(a, c.block_length);
  c.choice = c.sensitivity_rows > 0 && c.blocked_cost < c.rtrl_cost ? ExactAlgorithm::blocked : ExactAlgorithm::rtrl;
}

}  // namespace loopgrad::analysis
