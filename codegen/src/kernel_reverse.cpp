// Kernel section: the one-step reverse pass (vector-Jacobian product). The emitter counts the
// multiplications of every loop it writes (emitted_reverse_macs_per_step); the test suite checks
// the count against the analysis's ExactCost::reverse_macs.
#include <fmt/format.h>

#include <algorithm>

#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

// d = sign * coefficient * a_g[row], the adjoint reaching a leaf.
std::string leaf_adjoint(Scope& s, const Leaf& leaf, const std::string& adjoint, std::string_view row) {
  const std::string coefficient = s.coefficient(leaf, row);
  const std::string base = coefficient.empty() ? fmt::format("{}[{}]", adjoint, row)
                                               : fmt::format("{} * {}[{}]", coefficient, adjoint, row);
  return leaf.sign < 0 ? "-(" + base + ")" : base;
}

// Multiplications in an expression as written.
std::int64_t multiplies(const std::string& expression) {
  return static_cast<std::int64_t>(std::count(expression.begin(), expression.end(), '*'));
}

// Writes the leaf's part of the pass; adds its multiplications to `macs`.
void emit_leaf(const KernelPlan& plan, Scope& s, CodeWriter& w, int g, const Leaf& leaf, std::int64_t& macs) {
  const auto& op = plan.op(leaf.op);
  const auto n = static_cast<std::size_t>(op.size);
  const auto rows = static_cast<std::int64_t>(n);
  const std::string a = s.adjoint(g);
  switch (op.code) {
    case ir::OpCode::connect: {
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      const std::string src = source_adjoint(plan, s, op.a);
      const auto m = static_cast<std::size_t>(plan.op(op.a).size);
      w.line("// {}: {}", plan.group(g).name, describe(plan, leaf.op));
      switch (c.kind) {
        case ir::ConnectionKind::dense: {
          const std::string gW = s.gradient(c.param);
          w.open("for (std::size_t r = 0; r < {}; ++r)", n);
          w.line("const Scalar d = {};", leaf_adjoint(s, leaf, a, "r"));
          w.open("for (std::size_t s = 0; s < {}; ++s)", m);
          w.line("{}[r * {} + s] += d * {};", gW, m, s.ref(op.a, "s"));
          if (!src.empty()) w.line("{}[s] += {}[r * {} + s] * d;", src, s.param(c.param), m);
          w.close();
          w.close();
          macs += rows * (multiplies(leaf_adjoint(s, leaf, a, "r")) + static_cast<std::int64_t>(m) * (src.empty() ? 1 : 2));
          break;
        }
        case ir::ConnectionKind::diagonal: {
          const std::string gW = s.gradient(c.param);
          w.open("for (std::size_t r = 0; r < {}; ++r)", n);
          w.line("const Scalar d = {};", leaf_adjoint(s, leaf, a, "r"));
          w.line("{}[r] += d * {};", gW, s.ref(op.a, "r"));
          if (!src.empty()) w.line("{}[r] += {}[r] * d;", src, s.param(c.param));
          w.close();
          macs += rows * (multiplies(leaf_adjoint(s, leaf, a, "r")) + (src.empty() ? 1 : 2));
          break;
        }
        case ir::ConnectionKind::identity:
          if (src.empty()) break;
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] += {};", n, src, leaf_adjoint(s, leaf, a, "r"));
          macs += rows * multiplies(leaf_adjoint(s, leaf, a, "r"));
          break;
        case ir::ConnectionKind::sparse: {
          const std::string gW = s.gradient(c.param);
          for (std::size_t e = 0; e < c.mask.size(); ++e) {
            const std::string to = std::to_string(c.mask[e].to), from = std::to_string(c.mask[e].from);
            w.open("");
            w.line("const Scalar d = {};", leaf_adjoint(s, leaf, a, to));
            w.line("{}[{}] += d * {};", gW, e, s.ref(op.a, from));
            if (!src.empty()) w.line("{}[{}] += {}[{}] * d;", src, from, s.param(c.param), e);
            w.close();
            macs += multiplies(leaf_adjoint(s, leaf, a, to)) + (src.empty() ? 1 : 2);
          }
          break;
        }
      }
      break;
    }
    case ir::OpCode::bias:
      w.line("// {}: bias {}", plan.group(g).name, plan.param(op.param).name);
      w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] += {};", n, s.gradient(op.param), leaf_adjoint(s, leaf, a, "r"));
      macs += rows * multiplies(leaf_adjoint(s, leaf, a, "r"));
      break;
    case ir::OpCode::read:
    case ir::OpCode::read_delayed: {
      const std::string src = source_adjoint(plan, s, leaf.op);
      if (src.empty()) break;
      w.line("// {}: {}", plan.group(g).name, describe(plan, leaf.op));
      w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] += {};", n, src, leaf_adjoint(s, leaf, a, "r"));
      macs += rows * multiplies(leaf_adjoint(s, leaf, a, "r"));
      break;
    }
    default: break;  // numbers
  }
}

}  // namespace

std::int64_t emit_reverse(const KernelPlan& plan, std::string& out) {
  std::int64_t macs = 0;
  CodeWriter w(1);
  Scope s(plan, Scope::Access::read);
  CodeWriter body(2);
  body.line("for (std::size_t i = 0; i < n_state; ++i) prev_state_adjoint[i] = 0;");
  if (!plan.outputs.empty()) {
    body.open("if (target != nullptr)");
    for (int g : plan.outputs) {
      const auto& group = plan.group(g);
      const std::string y = s.value(group.value_op()), t = s.target(g), a = s.adjoint(g);
      const LossWeight weight = loss_weight(group);
      if (ir::is_elementwise(group.loss)) {
        body.line("// dC/d{} of the {} loss{}", group.name, ir::to_string(group.loss), weight.comment);
        body.line("for (std::size_t i = 0; i < {}; ++i) {}[i] += {};", group.size, a,
                  elementwise_loss_term(group, ir::loss_rule(group.loss).gradient_source, y, t));
      } else {
        body.line("// dC/d{} of the softmax cross-entropy: softmax(y) * sum(t) - t{}", group.name, weight.comment);
        body.open("");
        body.line("const Scalar lse = log_sum_exp({}, {});", y, group.size);
        body.line("Scalar sum = 0;");
        body.line("for (std::size_t i = 0; i < {}; ++i) sum += {}[i];", group.size, t);
        body.line("for (std::size_t i = 0; i < {}; ++i) {}[i] += {};", group.size, a,
                  weight.apply(fmt::format("std::exp({}[i] - lse) * sum - {}[i]", y, t)));
        body.close();
      }
    }
    body.close();
  }
  if (!plan.a.states.empty()) {
    body.open("if (state_adjoint != nullptr)");
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const int g = plan.a.states[k];
      body.line("for (std::size_t r = 0; r < {}; ++r) {}[r] += state_adjoint[{} + r];", plan.group(g).size, s.adjoint(g),
                plan.state_offset[k]);
    }
    body.close();
  }
  for (auto it = plan.a.group_order.rbegin(); it != plan.a.group_order.rend(); ++it)
    for (const auto& leaf : plan.leaves[static_cast<std::size_t>(*it)]) emit_leaf(plan, s, body, *it, leaf, macs);
  w.line("// The one-step reverse pass. Seeds: dC_N/dY from `target` (nullptr: none) and dL/dR_N from later");
  w.line("// steps in `state_adjoint` (nullptr: none). Adds the immediate gradient dC/dP to `grad` and writes");
  w.line("// dL/dR_(N-1) to `prev_state_adjoint`.");
  emit_function(w,
                "void reverse([[maybe_unused]] const Scalar* params, [[maybe_unused]] const Step& step, "
                "[[maybe_unused]] const Scalar* target, [[maybe_unused]] const Scalar* state_adjoint, "
                "[[maybe_unused]] Scalar* grad, [[maybe_unused]] Scalar* prev_state_adjoint) const",
                s, body,
                {fmt::format("std::array<Scalar, {}> adjoint{{}};  // dL/d(value) of every neuron group", plan.adjoint_size)});
  w.blank();
  out += w.str();
  return macs;
}

}  // namespace loopgrad::emit::detail
