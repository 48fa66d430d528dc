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
#include <array>

#include "kernel_plan.hpp"
#include "record_loop.hpp"

namespace loopgrad::emit::detail {

namespace {

// The tangent block of a leaf's source for parameter group p: "" if the leaf carries nothing of
// it (no tangent, or no entries that reach the leaf's group).
std::string source_tangent(const KernelPlan& plan, Scope& s, int leaf_op, int read_op, int p) {
  const auto& op = plan.op(read_op);
  if (plan.carried(leaf_op, p) == 0) return "";
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
  int& tables;  // records tables written so far in this function, for unique names
  int g;
  const Leaf& leaf;
  int p;

  bool scaled() const { return !leaf.constant_coefficient; }
  // The leaf's coefficient at `row` (sign included), for a leaf whose coefficient is not +-1.
  std::string coefficient(std::string_view row) const { return fmt::format("coef{}[{}]", leaf.op, row); }
  // `factor` times the coefficient: one multiply when scaled, the sign otherwise.
  std::string times(std::string_view row, const std::string& factor) const {
    if (scaled()) return coefficient(row) + " * " + factor;
    return leaf.sign < 0 ? "-" + factor : factor;
  }
  // `+=` or `-=` for an unscaled leaf.
  const char* accumulate() const { return leaf.sign < 0 ? "-=" : "+="; }
  std::string T() const { return "T_" + plan.group(g).name; }
  std::string table() { return fmt::format("runs{}", tables++); }
  std::string scaled_weights() const { return fmt::format("step.tangent.data() + {}", plan.scaled_weights_offset); }

  // T[row r] += weight(r) * src[row r] entry by entry over the source's runs, every row r of the
  // source group `from` (weight "" for +-1): one multiply per source entry when weighted.
  template <class Weight>
  void rowwise(int from, const std::string& src, Weight weight) {
    const auto& S = plan.pattern(from, p);
    RecordLoop loop({"row", "to", "from", "length"});
    for (std::size_t r = 0; r < S.rows.size(); ++r)
      for (const auto& run : S.rows[r])
        loop.add_run({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, run.begin)),
                      static_cast<std::int64_t>(plan.position(from, p, r, run.begin)), run.end - run.begin});
    if (loop.empty()) return;
    const auto f = loop.open(w, table());
    const std::string factor = weight(f[0]);
    if (!factor.empty()) {
      w.line("const Scalar w = {};", factor);
      for_run(w, f[3], [&](const std::string& j) { return fmt::format("{}[{}{}] += w * {}[{}{}]", T(), f[1], j, src, f[2], j); });
      macs += S.nonzeros;
    } else {
      for_run(w, f[3], [&](const std::string& j) { return fmt::format("{}[{}{}] {} {}[{}{}]", T(), f[1], j, accumulate(), src, f[2], j); });
    }
    w.close();
  }

  // T += W * src for a dense W (n x m) whose source rows share one set of columns with T's rows:
  // a product of (n x m) and (m x cols) in compact storage.
  void dense_product(std::size_t n, std::size_t m, std::size_t cols, const std::string& W, const std::string& src,
                     const char* sign) {
    const auto flops = 2 * static_cast<long long>(n * m * cols);
    if (plan.options.blas_min_flops > 0 && flops >= plan.options.blas_min_flops) {
      w.line("// ({} x {}) times ({} x {}) through CBLAS", n, m, m, cols);
      w.line("cblas_{}gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, {}, {}, {}, Scalar({}1), {}, {}, {}, {}, Scalar(1), {}, {});",
             plan.scalar == "float" ? "s" : "d", n, cols, m, sign, W, m, src, cols, T(), cols);
      return;
    }
    // Column tiles that keep a tile of the source block (m rows) within 256 KiB, so it stays in L2
    // while every row of T passes over it (KernelPlan::column_tile). With 16 rows or more the tile
    // is first packed into one contiguous buffer (m x width): the register tiles then read it
    // sequentially instead of m rows far apart (a copy per source entry, against n multiplies).
    // Register tiles: 8 (AVX-512) or 4 rows x tile_columns columns of T, accumulated over the
    // whole inner dimension before they are stored; rows and columns that do not fill one go row
    // by row.
    const std::size_t tile = plan.column_tile(m);
    const bool pack = n >= 16;
    w.open("for (std::size_t j0 = 0; j0 < {}; j0 += {})", cols, tile);
    w.line("const std::size_t j1 = j0 + {} < {} ? j0 + {} : {};", tile, cols, tile, cols);
    std::string tile_src = src, tile_stride = std::to_string(cols), tile_col = "jc";
    if (pack) {
      w.line("const std::size_t width = j1 - j0;");
      w.line("Scalar* const packed = step.tangent.data() + {};  // the source's columns j0 .. j1, row after row", plan.pack_offset);
      w.line("for (std::size_t s = 0; s < {}; ++s) for (std::size_t j = 0; j < width; ++j) packed[s * width + j] = {}[s * {} + j0 + j];",
             m, src, cols);
      tile_src = "packed";
      tile_stride = "width";
      tile_col = "(jc - j0)";
    }
    // The rows in register tiles of `rows` x tile_columns, then the rest row by row: the tile's
    // last columns for the tiled rows, then every column of the rows past them.
    auto tiles = [&](std::size_t rows) {
      const std::size_t tiled = n / rows * rows;
      if (tiled > 0) {
        w.line("const std::size_t j8 = j0 + (j1 - j0) / tile_columns * tile_columns;");
        w.open("for (std::size_t r = 0; r < {}; r += {})", tiled, rows);
        w.open("for (std::size_t jc = j0; jc < j8; jc += tile_columns)");
        w.line("Scalar* const t = {} + r * {} + jc;", T(), cols);
        std::string decl, load, fma, store;
        for (std::size_t i = 0; i < rows; ++i) {
          const std::string at = i == 0 ? std::string() : fmt::format("{} + ", i * cols);
          decl += fmt::format("{}a{}[tile_columns]", i == 0 ? "" : ", ", i);
          load += fmt::format(" a{}[j] = t[{}j];", i, at);
          fma += fmt::format(" a{}[j] += w{} * x[j];", i, i);
          store += fmt::format(" t[{}j] = a{}[j];", at, i);
        }
        w.line("Scalar {};", decl);
        w.line("for (std::size_t j = 0; j < tile_columns; ++j) {{{} }}", load);
        w.open("for (std::size_t s = 0; s < {}; ++s)", m);
        for (std::size_t i = 0; i < rows; ++i) w.line("const Scalar w{} = {}{}[(r + {}) * {} + s];", i, sign, W, i, m);
        w.line("const Scalar* const x = {} + s * {} + {};", tile_src, tile_stride, tile_col);
        w.line("for (std::size_t j = 0; j < tile_columns; ++j) {{{} }}", fma);
        w.close();
        w.line("for (std::size_t j = 0; j < tile_columns; ++j) {{{} }}", store);
        w.close();
        w.close();
      }
      auto rest = [&](const std::string& r0, std::size_t r1, const char* first) {
        w.open("for (std::size_t r = {}; r < {}; ++r)", r0, r1);
        w.open("for (std::size_t s = 0; s < {}; ++s)", m);
        w.line("const Scalar w0 = {}{}[r * {} + s];", sign, W, m);
        w.line("for (std::size_t j = {}; j < j1; ++j) {}[r * {} + j] += w0 * {}[s * {} + j];", first, T(), cols, src, cols);
        w.close();
        w.close();
      };
      if (tiled > 0) rest("0", tiled, "j8");
      if (tiled < n) rest(std::to_string(tiled), n, "j0");
    };
    // With AVX-512's 32 vector registers a tile of 8 rows (16 accumulators, a load of the source
    // per 8 multiply-adds) runs 1.4-1.9x faster than one of 4; with AVX2's 16 it would spill.
    if (n >= 8) {
      w.raw_line("#if defined(__AVX512F__)");
      tiles(8);
      w.raw_line("#else");
      tiles(4);
      w.raw_line("#endif");
    } else {
      tiles(4);
    }
    w.close();
  }

  // T += W * src for a dense W (n x m) and a row-sparse source: every run of every source row s
  // goes into every row of T, scaled by W[r][s]: n multiplies per source entry.
  void dense_sparse_product(int from, std::size_t n, std::size_t m, const std::string& W, const std::string& src,
                            const char* sign) {
    const auto& S = plan.pattern(from, p);
    const auto& Tp = plan.pattern(g, p);
    if (Tp.uniform()) {
      // Every row of T has the same columns: a source run lands at the same place in each.
      const auto stride = static_cast<std::size_t>(Tp.nonzeros) / n;
      RecordLoop loop({"source row", "at", "from", "length"});
      for (std::size_t r = 0; r < S.rows.size(); ++r)
        for (const auto& run : S.rows[r])
          loop.add_run({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, 0, run.begin)),
                        static_cast<std::int64_t>(plan.position(from, p, r, run.begin)), run.end - run.begin});
      const auto f = loop.open(w, table());
      w.open("for (std::size_t r = 0; r < {}; ++r)", n);
      w.line("const Scalar w0 = {}{}[r * {} + {}];", sign, W, m, f[0]);
      for_run(w, f[3], [&](const std::string& j) { return fmt::format("{}[r * {} + {}{}] += w0 * {}[{}{}]", T(), stride, f[1], j, src, f[2], j); });
      w.close();
      w.close();
    } else {
      RecordLoop loop({"source row", "row", "to", "from", "length"});
      for (std::size_t s0 = 0; s0 < S.rows.size(); ++s0)
        for (const auto& run : S.rows[s0])
          for (std::size_t r = 0; r < n; ++r)
            loop.add({static_cast<std::int64_t>(s0), static_cast<std::int64_t>(r),
                      static_cast<std::int64_t>(plan.position(g, p, r, run.begin)),
                      static_cast<std::int64_t>(plan.position(from, p, s0, run.begin)), run.end - run.begin});
      const auto f = loop.open(w, table());
      w.line("const Scalar w0 = {}{}[{} * {} + {}];", sign, W, f[1], m, f[0]);
      for_run(w, f[4], [&](const std::string& j) { return fmt::format("{}[{}{}] += w0 * {}[{}{}]", T(), f[2], j, src, f[3], j); });
      w.close();
    }
    macs += static_cast<std::int64_t>(n) * S.nonzeros;
  }

  void connect() {
    const auto& op = plan.op(leaf.op);
    const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
    const auto n = static_cast<std::size_t>(op.size);
    const auto m = static_cast<std::size_t>(plan.op(op.a).size);
    const std::string src = source_tangent(plan, s, leaf.op, op.a, p);
    const std::string from = delayed_name(plan, plan.op(op.a));
    const int from_group = plan.op(op.a).group;
    if (!src.empty()) {
      if (plan.op(op.a).code == ir::OpCode::read_delayed)
        w.line("// cross term D[{}, {}] through {}: {} * d {} / d {}", plan.group(g).name, plan.group(from_group).name,
               c.name, c.name, from, plan.param(p).name);
      else
        w.line("// {} <- {} through {}: {} * d {} / d {}", plan.group(g).name, from, c.name, c.name, from, plan.param(p).name);
      const std::string W = c.param >= 0 ? s.param(c.param) : std::string();  // identity has none
      switch (c.kind) {
        case ir::ConnectionKind::dense: {
          w.open("");
          std::string weights = W;
          if (scaled()) {
            w.line("Scalar* const wc = {};  // {} scaled by the coefficient", scaled_weights(), c.name);
            w.line("for (std::size_t r = 0; r < {}; ++r) for (std::size_t s = 0; s < {}; ++s) wc[r * {} + s] = {}[r] * {}[r * {} + s];",
                   n, m, m, fmt::format("coef{}", leaf.op), W, m);
            weights = "wc";
            macs += static_cast<std::int64_t>(n * m);
          }
          const char* sign = scaled() || leaf.sign > 0 ? "" : "-";
          const auto& S = plan.pattern(from_group, p);
          const auto& Tp = plan.pattern(g, p);
          if (S.uniform() && Tp.uniform() && S.rows.front() == Tp.rows.front()) {
            // Source and T rows share their columns: a dense product in compact storage.
            const auto cols = static_cast<std::size_t>(S.nonzeros) / m;
            if (!S.full()) w.line("// every row holds the same {} of the block's {} columns", cols, S.cols);
            dense_product(n, m, cols, weights, src, sign);
            macs += static_cast<std::int64_t>(n) * S.nonzeros;
          } else {
            w.line("// the source block is row-sparse: {} of its {} x {} entries", S.nonzeros, m, S.cols);
            dense_sparse_product(from_group, n, m, weights, src, sign);
          }
          w.close();
          break;
        }
        case ir::ConnectionKind::diagonal: {
          if (scaled()) {
            w.open("");
            w.line("Scalar* const wc = {};  // {} scaled by the coefficient", scaled_weights(), c.name);
            w.line("for (std::size_t r = 0; r < {}; ++r) wc[r] = {} * {}[r];", n, coefficient("r"), W);
            macs += static_cast<std::int64_t>(n);
            rowwise(from_group, src, [&](const std::string& r) { return fmt::format("wc[{}]", r); });
            w.close();
          } else {
            rowwise(from_group, src, [&](const std::string& r) { return fmt::format("{}{}[{}]", leaf.sign < 0 ? "-" : "", W, r); });
          }
          break;
        }
        case ir::ConnectionKind::identity:
          rowwise(from_group, src, [&](const std::string& r) { return scaled() ? coefficient(r) : std::string(); });
          break;
        case ir::ConnectionKind::sparse: {
          const auto& S = plan.pattern(from_group, p);
          w.open("");
          std::string weights = W;
          if (scaled()) {
            RecordLoop links({"link", "to"});
            for (std::size_t e = 0; e < c.mask.size(); ++e) links.add({static_cast<std::int64_t>(e), c.mask[e].to});
            w.line("Scalar* const wc = {};  // {} scaled by the coefficient", scaled_weights(), c.name);
            const auto f = links.open(w, table());
            w.line("wc[{}] = {} * {}[{}];", f[0], coefficient(f[1]), W, f[0]);
            w.close();
            macs += static_cast<std::int64_t>(c.mask.size());
            weights = "wc";
          }
          RecordLoop loop({"link", "to", "from", "length"});
          for (std::size_t e = 0; e < c.mask.size(); ++e) {
            const auto to = static_cast<std::size_t>(c.mask[e].to), fr = static_cast<std::size_t>(c.mask[e].from);
            for (const auto& run : S.rows[fr])
              loop.add_run({static_cast<std::int64_t>(e), static_cast<std::int64_t>(plan.position(g, p, to, run.begin)),
                            static_cast<std::int64_t>(plan.position(from_group, p, fr, run.begin)), run.end - run.begin});
          }
          // src is non-empty only when the links carry entries, so there are records.
          const auto f = loop.open(w, table());
          w.line("const Scalar w = {}{}[{}];", scaled() || leaf.sign > 0 ? "" : "-", weights, f[0]);
          for_run(w, f[3], [&](const std::string& j) { return fmt::format("{}[{}{}] += w * {}[{}{}]", T(), f[1], j, src, f[2], j); });
          w.close();
          macs += plan.carried(leaf.op, p);
          w.close();
          break;
        }
      }
    }
    if (c.param != p) return;
    w.line("// immediate block d {} / d {}: the connection's input", plan.group(g).name, plan.param(p).name);
    switch (c.kind) {
      case ir::ConnectionKind::dense: {
        RecordLoop rows({"row", "at"});
        for (std::size_t r = 0; r < n; ++r)
          rows.add({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, static_cast<std::int64_t>(r * m)))});
        const auto f = rows.open(w, table());
        if (scaled()) {
          w.line("const Scalar c = {};", coefficient(f[0]));
          w.line("for (std::size_t s = 0; s < {}; ++s) {}[{} + s] += c * {};", m, T(), f[1], s.ref(op.a, "s"));
          macs += static_cast<std::int64_t>(n * m);
        } else {
          w.line("for (std::size_t s = 0; s < {}; ++s) {}[{} + s] {} {};", m, T(), f[1], accumulate(), s.ref(op.a, "s"));
        }
        w.close();
        break;
      }
      case ir::ConnectionKind::diagonal: {
        RecordLoop rows({"row", "at"});
        for (std::size_t r = 0; r < n; ++r)
          rows.add({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, static_cast<std::int64_t>(r)))});
        const auto f = rows.open(w, table());
        w.line("{}[{}] += {};", T(), f[1], times(f[0], s.ref(op.a, f[0])));
        w.close();
        macs += static_cast<std::int64_t>(scaled() ? n : 0);
        break;
      }
      case ir::ConnectionKind::sparse: {
        RecordLoop links({"link", "to", "from", "at"});
        for (std::size_t e = 0; e < c.mask.size(); ++e)
          links.add({static_cast<std::int64_t>(e), c.mask[e].to, c.mask[e].from,
                     static_cast<std::int64_t>(plan.position(g, p, static_cast<std::size_t>(c.mask[e].to), static_cast<std::int64_t>(e)))});
        const auto f = links.open(w, table());
        w.line("{}[{}] += {};", T(), f[3], times(f[1], s.ref(op.a, f[2])));
        w.close();
        macs += static_cast<std::int64_t>(scaled() ? c.mask.size() : 0);
        break;
      }
      case ir::ConnectionKind::identity: break;
    }
  }

  void emit() {
    const auto& op = plan.op(leaf.op);
    const auto n = static_cast<std::size_t>(op.size);
    switch (op.code) {
      case ir::OpCode::connect: connect(); break;
      case ir::OpCode::bias: {
        if (op.param != p) return;
        w.line("// immediate block d {} / d {}", plan.group(g).name, plan.param(p).name);
        RecordLoop rows({"row", "at"});
        for (std::size_t r = 0; r < n; ++r)
          rows.add({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, static_cast<std::int64_t>(r)))});
        const auto f = rows.open(w, table());
        if (scaled())
          w.line("{}[{}] += {};", T(), f[1], coefficient(f[0]));
        else
          w.line("{}[{}] {} Scalar(1);", T(), f[1], accumulate());
        w.close();
        break;
      }
      case ir::OpCode::read:
      case ir::OpCode::read_delayed: {
        const std::string src = source_tangent(plan, s, leaf.op, leaf.op, p);
        if (src.empty()) return;
        if (op.code == ir::OpCode::read_delayed)
          w.line("// cross term D[{}, {}]: d {} / d {}", plan.group(g).name, plan.group(op.group).name, describe(plan, leaf.op),
                 plan.param(p).name);
        else
          w.line("// {} <- {}", plan.group(g).name, plan.group(op.group).name);
        rowwise(op.group, src, [&](const std::string& r) { return scaled() ? coefficient(r) : std::string(); });
        break;
      }
      default: break;
    }
  }
};

// One record per run of a stored block's pattern: (row, column, where it is stored, length).
RecordLoop block_runs(const KernelPlan& plan, int k, int p) {
  const int g = plan.a.states[static_cast<std::size_t>(k)];
  const auto& pattern = plan.pattern(g, p);
  RecordLoop loop({"row", "column", "at", "length"});
  for (std::size_t r = 0; r < pattern.rows.size(); ++r)
    for (const auto& run : pattern.rows[r])
      loop.add({static_cast<std::int64_t>(r), run.begin, static_cast<std::int64_t>(plan.position(g, p, r, run.begin)),
                run.end - run.begin});
  return loop;
}

// Delta's layout as data: one record per run of a stored block's row, (unit: the row's position
// in the state layout, column: the first parameter column, at: where the run is stored, length).
// The blocked exact algorithm (runtime::BlockedRtrl) reads and writes Delta row by row through it.
void emit_sensitivity_runs(const KernelPlan& plan, CodeWriter& w) {
  std::vector<std::array<std::size_t, 4>> runs;
  for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
    const int g = plan.a.states[k];
    for (int p : plan.a.state_params[k]) {
      const auto& pattern = plan.pattern(g, p);
      for (std::size_t r = 0; r < pattern.rows.size(); ++r)
        for (const auto& run : pattern.rows[r])
          runs.push_back({plan.state_offset[k] + r, plan.param_offset[static_cast<std::size_t>(p)] + static_cast<std::size_t>(run.begin),
                          plan.sensitivity_block(static_cast<int>(k), p) + plan.position(g, p, r, run.begin),
                          static_cast<std::size_t>(run.end - run.begin)});
    }
  }
  w.blank();
  w.line("// Delta's layout as data: one record per run of stored entries of a row, {{unit (the row's position");
  w.line("// in the state layout), column (the first parameter column), at (where the run is stored), length}}.");
  w.line("struct SensitivityRun {{");
  w.line("  std::size_t unit, column, at, length;");
  w.line("}};");
  if (runs.empty()) {
    w.line("static std::span<const SensitivityRun> sensitivity_runs() {{ return {{}}; }}");
    return;
  }
  w.open("static std::span<const SensitivityRun> sensitivity_runs()");
  w.line("static constexpr std::array<SensitivityRun, {}> runs{{{{", runs.size());
  std::string line;
  for (std::size_t e = 0; e < runs.size(); ++e) {
    line += fmt::format("{{{}, {}, {}, {}}}{}", runs[e][0], runs[e][1], runs[e][2], runs[e][3], e + 1 < runs.size() ? ", " : "");
    if (line.size() > 96 || e + 1 == runs.size()) {
      w.line("    {}", line);
      line.clear();
    }
  }
  w.line("}}}};");
  w.line("return runs;");
  w.close();
}

}  // namespace

std::int64_t emit_sensitivity(const KernelPlan& plan, std::string& out) {
  std::int64_t macs = 0;
  CodeWriter w(1);
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    if (plan.options.blas_min_flops > 0) body.line("check_blas_kernels();");
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
      int tables = 0;
      for (int g : groups) {
        const auto& group = plan.group(g);
        const int k = plan.state_of(g);
        const auto& pattern = plan.pattern(g, pi);
        const auto size = static_cast<std::size_t>(pattern.nonzeros);
        const std::string stored =
            pattern.full() ? std::string()
                           : fmt::format(", {} of {} x {} entries (row-sparse)", pattern.nonzeros, group.size, cols);
        if (k >= 0 && plan.sensitivity_block(k, pi) != static_cast<std::size_t>(-1)) {
          body.line("Scalar* const T_{} = {};  // d {} / d {}{}, written into Delta_N", group.name, s.delta_next(k, pi),
                    group.name, param.name, stored);
        } else {
          body.line("Scalar* const T_{} = step.tangent.data() + {};  // d {} / d {}{}", group.name, work, group.name,
                    param.name, stored);
          work += size;
        }
        if (size > 0) body.line("for (std::size_t i = 0; i < {}; ++i) T_{}[i] = 0;", size, group.name);
        for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)])
          LeafWriter{plan, s, body, macs, tables, g, leaf, pi}.emit();
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
    int tables = 0;
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const int g = plan.a.states[k];
      for (int p : plan.a.state_params[k]) {
        const auto runs = block_runs(plan, static_cast<int>(k), p);
        if (runs.empty()) continue;
        body.line("// (dC/d{}) * d{}/d{}", plan.group(g).name, plan.group(g).name, plan.param(p).name);
        const auto& pattern = plan.pattern(g, p);
        const auto rows = pattern.rows.size();
        if (pattern.full() && rows >= 4) {
          // Whole rows, four at a time: the gradient's columns are read and written once per four
          // rows of Delta, so the pass streams Delta alone.
          const auto cols = static_cast<std::size_t>(pattern.cols);
          const std::string grad = s.gradient(p), delta = s.delta_prev(static_cast<int>(k), p);
          const auto at = plan.state_offset[k];
          body.open("");
          body.line("std::size_t r = 0;");
          body.open("for (; r + 4 <= {}; r += 4)", rows);
          body.line("const Scalar a0 = prev_state_adjoint[{} + r], a1 = prev_state_adjoint[{} + r + 1];", at, at);
          body.line("const Scalar a2 = prev_state_adjoint[{} + r + 2], a3 = prev_state_adjoint[{} + r + 3];", at, at);
          body.line("const Scalar* const d0 = {} + r * {};", delta, cols);
          body.line("for (std::size_t j = 0; j < {}; ++j)", cols);
          body.line("  {}[j] += a0 * d0[j] + a1 * d0[{} + j] + a2 * d0[{} + j] + a3 * d0[{} + j];", grad, cols, 2 * cols,
                    3 * cols);
          body.close();
          if (rows % 4 != 0) {
            body.open("for (; r < {}; ++r)", rows);
            body.line("const Scalar a = prev_state_adjoint[{} + r];", at);
            body.line("for (std::size_t j = 0; j < {}; ++j) {}[j] += a * {}[r * {} + j];", cols, grad, delta, cols);
            body.close();
          }
          body.close();
          continue;
        }
        const auto f = runs.open(body, fmt::format("runs{}", tables++));
        body.line("const Scalar a = prev_state_adjoint[{} + {}];", plan.state_offset[k], f[0]);
        const std::string grad = s.gradient(p), delta = s.delta_prev(static_cast<int>(k), p);
        for_run(body, f[3], [&](const std::string& j) { return fmt::format("{}[{}{}] += a * {}[{}{}]", grad, f[1], j, delta, f[2], j); });
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
  {
    CodeWriter body(2);
    int tables = 0;
    std::size_t block = 0;
    body.line("for (std::size_t i = 0; i < n_sensitivity_blocks; ++i) blocks[i] = 0;");
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const int g = plan.a.states[k];
      for (int p : plan.a.state_params[k]) {
        const auto cols = static_cast<std::size_t>(plan.param(p).size());
        const auto runs = block_runs(plan, static_cast<int>(k), p);
        if (!runs.empty()) {
          body.line("// d {} / d {}", plan.group(g).name, plan.param(p).name);
          const auto f = runs.open(body, fmt::format("runs{}", tables++));
          const auto at = plan.sensitivity_block(static_cast<int>(k), p);
          for_run(body, f[3], [&](const std::string& j) {
            return fmt::format("blocks[{} + {} * {} + {}{}] = sensitivity[{} + {}{}]", block, f[0], cols, f[1], j, at, f[2], j);
          });
          body.close();
        }
        block += static_cast<std::size_t>(plan.group(g).size) * cols;
      }
    }
    w.blank();
    w.line("// Delta with every stored block written out whole (n_k x |P_p|, row-major, blocks in the order");
    w.line("// of Sensitivity; zeros outside the patterns): loopgrad::runtime::Interpreter's layout, for");
    w.line("// inspection and comparison. `blocks` holds n_sensitivity_blocks values.");
    Scope none(plan, Scope::Access::read);
    emit_function(w,
                  "void expand_sensitivity([[maybe_unused]] const Scalar* sensitivity, Scalar* blocks) const", none,
                  body);
  }
  emit_sensitivity_runs(plan, w);
  w.blank();
  out += w.str();
  return macs;
}

}  // namespace loopgrad::emit::detail
