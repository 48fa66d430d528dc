// Kernel section: the sensitivity update (Eqn. 4) and the recurrent term of the gradient (Eqn. 5).
//
// The update is linear in the tangents, and the columns of different parameter groups never mix,
// so it runs block by block: for parameter group p, the tangent block dv/dp of every group v that
// depends on p, in evaluation order, each the sum over its expression's leaves of
//   coefficient[r] * (the leaf's Jacobian times its source's block, plus its immediate block).
// A state's block is written straight into Delta_N; other groups' blocks live in a workspace that
// every block reuses.
#include <fmt/format.h>

#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

// The tangent block of a leaf's source for parameter group p: "" if structurally zero.
std::string source_tangent(const KernelPlan& plan, Scope& s, int read_op, int p) {
  const auto& op = plan.op(read_op);
  if (!plan.has_tangent(read_op, p)) return "";
  if (op.code == ir::OpCode::read_delayed) return s.delta_prev(plan.state_of(op.group), p);
  return "T_" + plan.group(op.group).name;
}

// `T[row * cols + j] += scale * src[...]`, or without `scale` when the coefficient is +-1.
std::string axpy(std::string_view scale, int sign) {
  if (scale.empty()) return sign < 0 ? "-=" : "+=";
  return "+=";
}

void emit_leaf(const KernelPlan& plan, Scope& s, CodeWriter& w, int g, const Leaf& leaf, int p, std::size_t cols) {
  const auto& op = plan.op(leaf.op);
  const auto n = static_cast<std::size_t>(op.size);
  const std::string T = "T_" + plan.group(g).name;
  auto coefficient = [&](std::string_view row) {
    std::string c = s.coefficient(leaf, row);
    if (leaf.sign < 0 && !c.empty()) c = "-(" + c + ")";
    return c;
  };
  // Multiplies `factor` by the leaf's coefficient: "c * factor", or factor alone.
  auto scaled = [&](std::string_view row, const std::string& factor) {
    const std::string c = coefficient(row);
    if (c.empty()) return leaf.sign < 0 ? "-" + factor : factor;
    return factor.empty() ? c : c + " * " + factor;
  };
  switch (op.code) {
    case ir::OpCode::connect: {
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      const std::string src = source_tangent(plan, s, op.a, p);
      const auto m = static_cast<std::size_t>(plan.op(op.a).size);
      const bool immediate = c.param == p;
      if (src.empty() && !immediate) return;
      const auto& from = plan.op(op.a);
      const std::string from_name = (from.code == ir::OpCode::read_delayed ? "delay(" : "") + plan.group(from.group).name +
                                    (from.code == ir::OpCode::read_delayed ? ")" : "");
      if (!src.empty()) {
        if (from.code == ir::OpCode::read_delayed)
          w.line("// cross term D[{}, {}] through {}: {} * d {} / d {}", plan.group(g).name, plan.group(from.group).name,
                 c.name, c.name, from_name, plan.param(p).name);
        else
          w.line("// {} <- {} through {}: {} * d {} / d {}", plan.group(g).name, from_name, c.name, c.name, from_name,
                 plan.param(p).name);
        switch (c.kind) {
          case ir::ConnectionKind::dense: {
            const std::string W = s.param(c.param);
            const std::string coef = coefficient("r");
            w.open("for (std::size_t r = 0; r < {}; ++r)", n);
            if (!coef.empty()) w.line("const Scalar c = {};", coef);
            w.open("for (std::size_t s = 0; s < {}; ++s)", m);
            w.line("const Scalar w = {}{}{}[r * {} + s];", coef.empty() ? "" : "c * ", coef.empty() && leaf.sign < 0 ? "-" : "",
                   W, m);
            w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[s * {} + j];", cols, T, cols, src, cols);
            w.close();
            w.close();
            break;
          }
          case ir::ConnectionKind::diagonal: {
            const std::string W = s.param(c.param);
            w.open("for (std::size_t r = 0; r < {}; ++r)", n);
            w.line("const Scalar w = {};", scaled("r", W + "[r]"));
            w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[r * {} + j];", cols, T, cols, src, cols);
            w.close();
            break;
          }
          case ir::ConnectionKind::identity: {
            const std::string coef = coefficient("r");
            w.open("for (std::size_t r = 0; r < {}; ++r)", n);
            if (coef.empty()) {
              w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] {} {}[r * {} + j];", cols, T, cols,
                     axpy("", leaf.sign), src, cols);
            } else {
              w.line("const Scalar w = {};", coef);
              w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[r * {} + j];", cols, T, cols, src, cols);
            }
            w.close();
            break;
          }
          case ir::ConnectionKind::sparse: {
            const std::string W = s.param(c.param);
            for (std::size_t e = 0; e < c.mask.size(); ++e) {
              const auto to = static_cast<std::size_t>(c.mask[e].to), fr = static_cast<std::size_t>(c.mask[e].from);
              w.open("");
              w.line("const Scalar w = {};", scaled(std::to_string(to), fmt::format("{}[{}]", W, e)));
              w.line("for (std::size_t j = 0; j < {}; ++j) {}[{} + j] += w * {}[{} + j];", cols, T, to * cols, src, fr * cols);
              w.close();
            }
            break;
          }
        }
      }
      if (immediate) {
        w.line("// immediate block d {} / d {}: the connection's input", plan.group(g).name, plan.param(p).name);
        switch (c.kind) {
          case ir::ConnectionKind::dense:
            w.open("for (std::size_t r = 0; r < {}; ++r)", n);
            if (coefficient("r").empty()) {
              w.line("for (std::size_t s = 0; s < {}; ++s) {}[r * {} + r * {} + s] {} {};", m, T, cols, m, axpy("", leaf.sign),
                     s.ref(op.a, "s"));
            } else {
              w.line("const Scalar c = {};", coefficient("r"));
              w.line("for (std::size_t s = 0; s < {}; ++s) {}[r * {} + r * {} + s] += c * {};", m, T, cols, m, s.ref(op.a, "s"));
            }
            w.close();
            break;
          case ir::ConnectionKind::diagonal:
            w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] += {};", n, T, cols, scaled("r", s.ref(op.a, "r")));
            break;
          case ir::ConnectionKind::sparse:
            for (std::size_t e = 0; e < c.mask.size(); ++e) {
              const auto to = static_cast<std::size_t>(c.mask[e].to);
              w.line("{}[{}] += {};", T, to * cols + e,
                     scaled(std::to_string(to), s.ref(op.a, std::to_string(c.mask[e].from))));
            }
            break;
          case ir::ConnectionKind::identity: break;
        }
      }
      break;
    }
    case ir::OpCode::bias:
      if (op.param != p) return;
      w.line("// immediate block d {} / d {}", plan.group(g).name, plan.param(p).name);
      if (coefficient("r").empty())
        w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] {} Scalar(1);", n, T, cols, axpy("", leaf.sign));
      else
        w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] += {};", n, T, cols, coefficient("r"));
      break;
    case ir::OpCode::read:
    case ir::OpCode::read_delayed: {
      const std::string src = source_tangent(plan, s, leaf.op, p);
      if (src.empty()) return;
      if (op.code == ir::OpCode::read_delayed)
        w.line("// cross term D[{}, {}]: d {} / d {}", plan.group(g).name, plan.group(op.group).name, describe(plan, leaf.op),
               plan.param(p).name);
      else
        w.line("// {} <- {}", plan.group(g).name, plan.group(op.group).name);
      const std::string coef = coefficient("r");
      w.open("for (std::size_t r = 0; r < {}; ++r)", n);
      if (coef.empty()) {
        w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] {} {}[r * {} + j];", cols, T, cols, axpy("", leaf.sign), src,
               cols);
      } else {
        w.line("const Scalar w = {};", coef);
        w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[r * {} + j];", cols, T, cols, src, cols);
      }
      w.close();
      break;
    }
    default: break;
  }
}

}  // namespace

void emit_sensitivity(const KernelPlan& plan, std::string& out) {
  CodeWriter w(1);
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    if (plan.tangent_size > 0) {
      body.line("if (step.tangent.size() != n_tangent) step.tangent.assign(n_tangent, Scalar(0));");
    }
    for (std::size_t p = 0; p < plan.net.params.size(); ++p) {
      const int pi = static_cast<int>(p);
      const auto groups = plan.tangent_groups(pi);
      if (groups.empty()) continue;
      const auto& param = plan.param(pi);
      const auto cols = static_cast<std::size_t>(param.size());
      std::string states;
      for (int g : groups)
        if (plan.state_of(g) >= 0) states += (states.empty() ? "" : ", ") + plan.group(g).name;
      body.line("// ---- block {} ({} columns): Delta of {}", param.name, cols, states);
      body.open("");
      std::size_t work = 0;
      for (int g : groups) {
        const auto& group = plan.group(g);
        const int k = plan.state_of(g);
        const std::size_t size = static_cast<std::size_t>(group.size) * cols;
        if (k >= 0 && plan.sensitivity_block(k, pi) != static_cast<std::size_t>(-1)) {
          body.line("Scalar* const T_{} = {};  // d {} / d {}, written into Delta_N", group.name, s.delta_next(k, pi),
                    group.name, param.name);
        } else {
          body.line("Scalar* const T_{} = step.tangent.data() + {};  // d {} / d {}", group.name, work, group.name,
                    param.name);
          work += size;
        }
        body.line("for (std::size_t i = 0; i < {}; ++i) T_{}[i] = 0;", size, group.name);
        for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)]) emit_leaf(plan, s, body, g, leaf, pi, cols);
      }
      body.close();
    }
    w.line("// The sensitivity update, Eqn. 4: Delta_N = I_N + sum_l D^(kl)_N Delta^l_(N-1), only the blocks");
    w.line("// and cross terms the analysis found nonzero, one parameter group at a time.");
    emit_function(w,
                  "void sensitivity_update([[maybe_unused]] const Scalar* params, [[maybe_unused]] Step& step, "
                  "[[maybe_unused]] const Scalar* delta_prev, [[maybe_unused]] Scalar* delta_next) const",
                  s, body);
  }
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const int g = plan.a.states[k];
      const auto n = static_cast<std::size_t>(plan.group(g).size);
      for (int p : plan.a.state_params[k]) {
        const auto cols = static_cast<std::size_t>(plan.param(p).size());
        body.line("// (dC/d{}) * d{}/d{}", plan.group(g).name, plan.group(g).name, plan.param(p).name);
        body.open("for (std::size_t r = 0; r < {}; ++r)", n);
        body.line("const Scalar a = prev_state_adjoint[{} + r];", plan.state_offset[k]);
        body.line("for (std::size_t j = 0; j < {}; ++j) {}[j] += a * {}[r * {} + j];", cols, s.gradient(p),
                  s.delta_prev(static_cast<int>(k), p), cols);
        body.close();
      }
    }
    w.blank();
    w.line("// The recurrent term of the gradient, Eqn. 5: grad += sum_k (dC/dR^k_(N-1)) Delta^k_(N-1).");
    emit_function(w,
                  "void apply_sensitivity([[maybe_unused]] const Scalar* delta_prev, "
                  "[[maybe_unused]] const Scalar* prev_state_adjoint, [[maybe_unused]] Scalar* grad) const",
                  s, body);
  }
  w.blank();
  out += w.str();
}

}  // namespace loopgrad::emit::detail
