// Kernel section: the sensitivity update (Eqn. 4) and the recurrent term of the gradient (Eqn. 5).
//
// The update is linear in the tangents, and the columns of different parameter groups never mix,
// so it runs block by block: for parameter group p, the tangent block dv/dp of every group v that
// depends on p, in evaluation order, each the sum over its expression's leaves of
//   coefficient[r] * (the leaf's Jacobian times its source's block, plus its immediate block).
// The coefficients are evaluated once per step. A state's block is written straight into Delta_N;
// other groups' blocks live in a workspace that every block reuses.
//
// The emitter counts the multiplications of every loop it writes; the header states the total
// (emitted_macs_per_step), and the test suite checks it against the analysis's macs_per_step.
#include <fmt/format.h>

#include <algorithm>

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

std::string delayed_name(const KernelPlan& plan, const ir::Op& read) {
  return read.code == ir::OpCode::read_delayed ? fmt::format("delay({})", plan.group(read.group).name)
                                               : plan.group(read.group).name;
}

struct LeafWriter {
  const KernelPlan& plan;
  Scope& s;
  CodeWriter& w;
  std::int64_t& macs;
  int g;
  const Leaf& leaf;
  int p;
  std::size_t cols;

  bool scaled() const { return !leaf.constant_coefficient; }
  // The leaf's coefficient at `row` (sign included), for a leaf whose coefficient is not +-1.
  std::string coefficient(std::string_view row) const {
    return fmt::format("coef{}[{}]", leaf.op, row);
  }
  // `factor` times the coefficient: one multiply when scaled, the sign otherwise.
  std::string times(std::string_view row, const std::string& factor) const {
    if (scaled()) return coefficient(row) + " * " + factor;
    return leaf.sign < 0 ? "-" + factor : factor;
  }
  // `+=` or `-=` for an unscaled leaf.
  const char* accumulate() const { return leaf.sign < 0 ? "-=" : "+="; }
  std::string T() const { return "T_" + plan.group(g).name; }

  // T[r] += c[r] * src[r] (or += / -= src[r]) for r < n, every column: n * cols multiplies when
  // scaled.
  void rowwise(std::size_t n, const std::string& src) {
    w.open("for (std::size_t r = 0; r < {}; ++r)", n);
    if (scaled()) {
      w.line("const Scalar w = {};", coefficient("r"));
      w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[r * {} + j];", cols, T(), cols, src, cols);
      macs += static_cast<std::int64_t>(n * cols);
    } else {
      w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] {} {}[r * {} + j];", cols, T(), cols, accumulate(), src, cols);
    }
    w.close();
  }

  void connect() {
    const auto& op = plan.op(leaf.op);
    const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
    const auto n = static_cast<std::size_t>(op.size);
    const auto m = static_cast<std::size_t>(plan.op(op.a).size);
    const std::string src = source_tangent(plan, s, op.a, p);
    const std::string from = delayed_name(plan, plan.op(op.a));
    if (!src.empty()) {
      if (plan.op(op.a).code == ir::OpCode::read_delayed)
        w.line("// cross term D[{}, {}] through {}: {} * d {} / d {}", plan.group(g).name, plan.group(plan.op(op.a).group).name,
               c.name, c.name, from, plan.param(p).name);
      else
        w.line("// {} <- {} through {}: {} * d {} / d {}", plan.group(g).name, from, c.name, c.name, from, plan.param(p).name);
      switch (c.kind) {
        case ir::ConnectionKind::dense: {
          // T[r][j] += sum_s c[r] W[r][s] src[s][j]: four rows of T at a time over a column tile
          // that stays in L1, so each tile of src is read once per four rows (a register-blocked
          // product the compiler vectorises over j).
          std::string W = s.param(c.param);
          w.open("");
          if (scaled()) {
            w.line("Scalar* const wc = step.tangent.data() + {};  // {} scaled by the coefficient", plan.scaled_weights_offset,
                   c.name);
            w.line("for (std::size_t r = 0; r < {}; ++r) for (std::size_t s = 0; s < {}; ++s) wc[r * {} + s] = {}[r] * {}[r * {} + s];",
                   n, m, m, fmt::format("coef{}", leaf.op), W, m);
            W = "wc";
          }
          const char* sign = scaled() || leaf.sign > 0 ? "" : "-";
          const auto flops = 2 * static_cast<long long>(n * m * cols);
          if (plan.options.blas_min_flops > 0 && flops >= plan.options.blas_min_flops) {
            w.line("// ({} x {}) times ({} x {}) through CBLAS", n, m, m, cols);
            w.line("cblas_{}gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, {}, {}, {}, Scalar({}1), {}, {}, {}, {}, Scalar(1), {}, {});",
                   plan.scalar == "float" ? "s" : "d", n, cols, m, sign, W, m, src, cols, T(), cols);
            w.close();
            macs += static_cast<std::int64_t>(n * m * cols + (scaled() ? n * m : 0));
            break;
          }
          // Column tiles of 512 (a tile of the source block stays in L2), inside each register
          // tiles of 4 rows x 8 columns of T accumulated over the whole inner dimension before they
          // are stored; rows and columns that do not fill a register tile go row by row.
          const std::size_t tile = 512;
          const std::size_t rows4 = n / 4 * 4;
          w.open("for (std::size_t j0 = 0; j0 < {}; j0 += {})", cols, tile);
          w.line("const std::size_t j1 = j0 + {} < {} ? j0 + {} : {};", tile, cols, tile, cols);
          if (rows4 > 0) {
            w.line("const std::size_t j8 = j0 + (j1 - j0) / 8 * 8;");
            w.open("for (std::size_t r = 0; r < {}; r += 4)", rows4);
            w.open("for (std::size_t jc = j0; jc < j8; jc += 8)");
            w.line("Scalar* const t = {} + r * {} + jc;", T(), cols);
            w.line("Scalar a0[8], a1[8], a2[8], a3[8];");
            w.line("for (std::size_t j = 0; j < 8; ++j) {{ a0[j] = t[j]; a1[j] = t[{} + j]; a2[j] = t[{} + j]; a3[j] = t[{} + j]; }}",
                   cols, 2 * cols, 3 * cols);
            w.open("for (std::size_t s = 0; s < {}; ++s)", m);
            for (int i = 0; i < 4; ++i) w.line("const Scalar w{} = {}{}[(r + {}) * {} + s];", i, sign, W, i, m);
            w.line("const Scalar* const x = {} + s * {} + jc;", src, cols);
            w.line("for (std::size_t j = 0; j < 8; ++j) {{ a0[j] += w0 * x[j]; a1[j] += w1 * x[j]; a2[j] += w2 * x[j]; a3[j] += w3 * x[j]; }}");
            w.close();
            w.line("for (std::size_t j = 0; j < 8; ++j) {{ t[j] = a0[j]; t[{} + j] = a1[j]; t[{} + j] = a2[j]; t[{} + j] = a3[j]; }}",
                   cols, 2 * cols, 3 * cols);
            w.close();
            w.close();
          }
          // The rest row by row: the tile's last columns for the register-tiled rows, then every
          // column of the rows past them.
          auto rest = [&](const std::string& r0, std::size_t r1, const char* first) {
            w.open("for (std::size_t r = {}; r < {}; ++r)", r0, r1);
            w.open("for (std::size_t s = 0; s < {}; ++s)", m);
            w.line("const Scalar w0 = {}{}[r * {} + s];", sign, W, m);
            w.line("for (std::size_t j = {}; j < j1; ++j) {}[r * {} + j] += w0 * {}[s * {} + j];", first, T(), cols, src, cols);
            w.close();
            w.close();
          };
          if (rows4 > 0) rest("0", rows4, "j8");
          if (rows4 < n) rest(std::to_string(rows4), n, "j0");
          w.close();
          w.close();
          macs += static_cast<std::int64_t>(n * m * cols + (scaled() ? n * m : 0));
          break;
        }
        case ir::ConnectionKind::diagonal: {
          const std::string W = s.param(c.param);
          w.open("for (std::size_t r = 0; r < {}; ++r)", n);
          w.line("const Scalar w = {};", times("r", W + "[r]"));
          w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w * {}[r * {} + j];", cols, T(), cols, src, cols);
          w.close();
          macs += static_cast<std::int64_t>(n * cols + (scaled() ? n : 0));
          break;
        }
        case ir::ConnectionKind::identity: rowwise(n, src); break;
        case ir::ConnectionKind::sparse: {
          const std::string W = s.param(c.param);
          for (std::size_t e = 0; e < c.mask.size(); ++e) {
            const auto to = static_cast<std::size_t>(c.mask[e].to), fr = static_cast<std::size_t>(c.mask[e].from);
            w.open("");
            w.line("const Scalar w = {};", times(std::to_string(to), fmt::format("{}[{}]", W, e)));
            w.line("for (std::size_t j = 0; j < {}; ++j) {}[{} + j] += w * {}[{} + j];", cols, T(), to * cols, src, fr * cols);
            w.close();
          }
          macs += static_cast<std::int64_t>(c.mask.size() * cols + (scaled() ? c.mask.size() : 0));
          break;
        }
      }
    }
    if (c.param != p) return;
    w.line("// immediate block d {} / d {}: the connection's input", plan.group(g).name, plan.param(p).name);
    switch (c.kind) {
      case ir::ConnectionKind::dense:
        w.open("for (std::size_t r = 0; r < {}; ++r)", n);
        if (scaled()) {
          w.line("const Scalar c = {};", coefficient("r"));
          w.line("for (std::size_t s = 0; s < {}; ++s) {}[r * {} + r * {} + s] += c * {};", m, T(), cols, m, s.ref(op.a, "s"));
          macs += static_cast<std::int64_t>(n * m);
        } else {
          w.line("for (std::size_t s = 0; s < {}; ++s) {}[r * {} + r * {} + s] {} {};", m, T(), cols, m, accumulate(),
                 s.ref(op.a, "s"));
        }
        w.close();
        break;
      case ir::ConnectionKind::diagonal:
        w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] += {};", n, T(), cols, times("r", s.ref(op.a, "r")));
        macs += static_cast<std::int64_t>(scaled() ? n : 0);
        break;
      case ir::ConnectionKind::sparse:
        for (std::size_t e = 0; e < c.mask.size(); ++e) {
          const auto to = static_cast<std::size_t>(c.mask[e].to);
          w.line("{}[{}] += {};", T(), to * cols + e, times(std::to_string(to), s.ref(op.a, std::to_string(c.mask[e].from))));
        }
        macs += static_cast<std::int64_t>(scaled() ? c.mask.size() : 0);
        break;
      case ir::ConnectionKind::identity: break;
    }
  }

  void emit() {
    const auto& op = plan.op(leaf.op);
    const auto n = static_cast<std::size_t>(op.size);
    switch (op.code) {
      case ir::OpCode::connect: connect(); break;
      case ir::OpCode::bias:
        if (op.param != p) return;
        w.line("// immediate block d {} / d {}", plan.group(g).name, plan.param(p).name);
        if (scaled())
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] += {};", n, T(), cols, coefficient("r"));
        else
          w.line("for (std::size_t r = 0; r < {}; ++r) {}[r * {} + r] {} Scalar(1);", n, T(), cols, accumulate());
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
        rowwise(n, src);
        break;
      }
      default: break;
    }
  }
};

}  // namespace

std::int64_t emit_sensitivity(const KernelPlan& plan, std::string& out) {
  std::int64_t macs = 0;
  CodeWriter w(1);
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    if (plan.tangent_size > 0) body.line("if (step.tangent.size() != n_tangent) step.tangent.assign(n_tangent, Scalar(0));");
    // The coefficients, once per step.
    for (int g : plan.a.group_order)
      for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)]) {
        const long offset = plan.coefficient_offset[static_cast<std::size_t>(leaf.op)];
        if (offset < 0) continue;
        std::string value = s.coefficient(leaf, "r");
        if (leaf.sign < 0) value = "-(" + value + ")";
        body.line("// coefficient of {} in {}", describe(plan, leaf.op), plan.group(g).name);
        body.line("Scalar* const coef{} = step.tangent.data() + {};", leaf.op, offset);
        body.line("for (std::size_t r = 0; r < {}; ++r) coef{}[r] = {};", plan.op(leaf.op).size, leaf.op, value);
        macs += plan.op(leaf.op).size * static_cast<std::int64_t>(std::count(value.begin(), value.end(), '*'));
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
        for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)])
          LeafWriter{plan, s, body, macs, g, leaf, pi, cols}.emit();
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
  return macs;
}

}  // namespace loopgrad::emit::detail
