// Kernel section: one step forward, the next state, and the loss.
#include <fmt/format.h>

#include "code_writer.hpp"
#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

void emit_op(const KernelPlan& plan, Scope& s, CodeWriter& w, int i) {
  const auto& op = plan.op(i);
  const auto n = static_cast<std::size_t>(op.size);
  const bool root = plan.group(op.owner).value_op() == i;
  if (plan.value_offset[static_cast<std::size_t>(i)] < 0) return;  // read, delay, bias, number: used in place
  const std::string v = s.value(i);
  w.line("// {}{}", root ? plan.group(op.owner).name + " = " : "", describe(plan, i));
  switch (op.code) {
    case ir::OpCode::connect: {
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      const auto m = static_cast<std::size_t>(plan.op(op.a).size);
      switch (c.kind) {
        case ir::ConnectionKind::dense: {
          const std::string W = s.param(c.param);
          w.open("for (std::size_t r = 0; r < {}; ++r)", n);
          w.line("Scalar acc = 0;");
          w.line("for (std::size_t s = 0; s < {}; ++s) acc += {}[r * {} + s] * {};", m, W, m, s.ref(op.a, "s"));
          w.line("{}[r] = acc;", v);
          w.close();
          break;
        }
        case ir::ConnectionKind::diagonal:
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = {}[r] * {};", n, v, s.param(c.param), s.ref(op.a, "r"));
          break;
        case ir::ConnectionKind::identity:
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = {};", n, v, s.ref(op.a, "r"));
          break;
        case ir::ConnectionKind::sparse: {
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = 0;", n, v);
          const std::string S = s.param(c.param);
          for (std::size_t e = 0; e < c.mask.size(); ++e)
            w.line("{}[{}] += {}[{}] * {};", v, c.mask[e].to, S, e, s.ref(op.a, std::to_string(c.mask[e].from)));
          break;
        }
      }
      break;
    }
    case ir::OpCode::add:
    case ir::OpCode::sub:
    case ir::OpCode::mul:
    case ir::OpCode::div: {
      const char* sym = op.code == ir::OpCode::add   ? "+"
                        : op.code == ir::OpCode::sub ? "-"
                        : op.code == ir::OpCode::mul ? "*"
                                                     : "/";
      w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = {} {} {};", n, v, s.ref(op.a, "r"), sym, s.ref(op.b, "r"));
      break;
    }
    case ir::OpCode::activate:
      w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = {};", n, v,
             s.activation_source(ir::rule(op.activation).value_source, i, "r"));
      break;
    default:  // a group defined as a read, delay, bias or number: its value is copied
      w.line("for (std::size_t r = 0; r < {}; ++r) {}[r] = {};", n, v, s.ref(i, "r"));
      break;
  }
}

}  // namespace

void emit_forward(const KernelPlan& plan, std::string& out) {
  CodeWriter w(1);
  {
    Scope s(plan, Scope::Access::write);
    CodeWriter body(2);
    if (plan.input_size > 0)
      body.line("for (std::size_t i = 0; i < n_inputs; ++i) step.values[{} + i] = input[i];", plan.input_copy_offset);
    if (plan.state_size > 0)
      body.line("for (std::size_t i = 0; i < n_state; ++i) step.values[{} + i] = state[i];", plan.state_copy_offset);
    for (int g : plan.a.group_order) {
      const auto& group = plan.group(g);
      for (int i = group.op_begin; i < group.op_end; ++i) emit_op(plan, s, body, i);
    }
    w.line("// One step forward: every group's value from the parameters, the previous state R_(N-1) and");
    w.line("// the inputs, in evaluation order.");
    emit_function(w,
                  "void forward([[maybe_unused]] const Scalar* params, [[maybe_unused]] const Scalar* state, "
                  "[[maybe_unused]] const Scalar* input, Step& step) const",
                  s, body);
  }
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const auto& g = plan.group(plan.a.states[k]);
      body.line("for (std::size_t r = 0; r < {}; ++r) state[{} + r] = {}[r];", g.size, plan.state_offset[k],
                s.value(g.value_op()));
    }
    w.blank();
    w.line("// R_N, the state after `step`.");
    emit_function(w, "void next_state([[maybe_unused]] const Step& step, [[maybe_unused]] Scalar* state) const", s, body);
  }
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    body.line("if (target == nullptr) return Scalar(0);");
    body.line("Scalar loss = 0;");
    for (int g : plan.outputs) {
      const auto& group = plan.group(g);
      const std::string y = s.value(group.value_op()), t = s.target(g);
      const LossWeight weight = loss_weight(group);
      if (ir::is_elementwise(group.loss)) {
        body.line("// {}: {}{}", group.name, ir::to_string(group.loss), weight.comment);
        body.line("for (std::size_t i = 0; i < {}; ++i) loss += {};", group.size,
                  elementwise_loss_term(group, ir::loss_rule(group.loss).value_source, y, t));
      } else {
        body.line("// {}: softmax cross-entropy{}", group.name, weight.comment);
        body.open("");
        body.line("const Scalar lse = log_sum_exp({}, {});", y, group.size);
        body.line("for (std::size_t i = 0; i < {}; ++i) loss -= {};", group.size,
                  weight.apply(fmt::format("{}[i] * ({}[i] - lse)", t, y)));
        body.close();
      }
    }
    body.line("return loss;");
    w.blank();
    w.line("// C_N: the outputs' losses against `target`; nullptr means no target this step (C_N = 0).");
    emit_function(w, "Scalar loss([[maybe_unused]] const Step& step, const Scalar* target) const", s, body);
  }
  w.blank();
  out += w.str();
}

}  // namespace loopgrad::emit::detail
