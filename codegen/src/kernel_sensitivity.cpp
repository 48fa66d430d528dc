// Kernel section: the sensitivity update (Eqn. 4) and the recurrent term of the gradient (Eqn. 5).
//
// The update is linear in the tangents, and the columns of different parameter groups never mix,
// so it runs block by block: for parameter group p, the tangent block dv/dp of every group v that
// depends on p, in evaluation order, each the sum over its expression's leaves of
//   coefficient[r] * (the leaf's Jacobian times its source's block, plus its immediate block).
// The coefficients are evaluated once per step. A state's block is written straight into Delta_N;
// other groups' blocks live in a workspace that every block reuses. A leaf whose pass writes every
// stored entry of a block comes first and overwrites it (no zeroing); the gradient's term of a
// block of Delta_(N-1) (Eqn. 5) is added by the first pass that reads the whole block (a dense
// product's packing, a read or a diagonal connection of a delayed state), or at the end.
//
// The emitter counts the multiplications of every loop it writes; the header states the total
// (emitted_macs_per_step), and the test suite checks it against the analysis's macs_per_step.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

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

// Whether group g's tangent block for p is a block of Delta (written into Delta_N): g is a state
// that keeps p. Otherwise the block is an intermediate one, in the workspace.
bool in_delta(const KernelPlan& plan, int g, int p) {
  const int k = plan.state_of(g);
  return k >= 0 && plan.sensitivity_block(k, p) != static_cast<std::size_t>(-1);
}

// Whether row r of `pattern` is the single run [r * width, r * width + width) for every r.
bool rows_of_width(const analysis::Pattern& pattern, std::int64_t width) {
  for (std::size_t r = 0; r < pattern.rows.size(); ++r) {
    const auto begin = static_cast<std::int64_t>(r) * width;
    if (pattern.rows[r] != std::vector<analysis::Run>{{begin, begin + width}}) return false;
  }
  return true;
}

std::string delayed_name(const KernelPlan& plan, const ir::Op& read) {
  return read.code == ir::OpCode::read_delayed ? fmt::format("delay({})", plan.group(read.group).name)
                                               : plan.group(read.group).name;
}

// Emitted inside a loop over panels of columns j0 .. j0 + width (`width` and `panels`, the panel's
// micro-panels, in scope): packs rows 0 .. m of the source `src` (row stride `cols`) at those
// columns into `pb`, one micro-panel of product_columns at a time, columns past the block's last
// zero. `state` >= 0: the source is the whole block (state, p) of Delta_(N-1), and the pass that
// packs it is the gradient's pass over it (Eqn. 5).
void pack_source_panel(const KernelPlan& plan, CodeWriter& w, const std::string& pb, const std::string& src, std::size_t m,
                       std::size_t cols, int state, int p) {
  w.line("// pack the source's columns j0 .. j0 + width, one micro-panel of product_columns at a time");
  w.open("for (std::size_t q = 0; q < panels; ++q)");
  w.line("const std::size_t wide = width - q * product_columns < product_columns ? width - q * product_columns : product_columns;");
  w.open("for (std::size_t s = 0; s < {}; ++s)", m);
  w.line("Scalar* const b = {} + (q * {} + s) * product_columns;", pb, m);
  w.line("const Scalar* const x = {} + s * {} + j0 + q * product_columns;", src, cols);
  w.line("if (wide == product_columns) for (std::size_t j = 0; j < product_columns; ++j) b[j] = x[j];");
  w.line("else for (std::size_t j = 0; j < product_columns; ++j) b[j] = j < wide ? x[j] : Scalar(0);");
  w.close();
  if (state >= 0) {
    // The micro-panel's rows times dC/dR_(N-1), into the gradient's columns of the block's
    // parameters (Kernel::panel_gradient). The rows are read from the packed micro-panel,
    // contiguous and just written: the source's rows, a power of two apart in many networks, would
    // fall into one set of L1 and be read from L2 again.
    w.line("// the gradient's term of these columns of Delta_(N-1) (Eqn. 5), from the micro-panel in L1");
    w.line("if (grad != nullptr) panel_gradient({}, prev_state_adjoint + {}, {} + q * {} * product_columns, product_columns, grad + {} + j0 + q * product_columns, wide);",
           m, plan.state_offset[static_cast<std::size_t>(state)], pb, m, plan.param_offset[static_cast<std::size_t>(p)]);
  }
  w.close();
}

// Emitted in the same loop: T's columns j0 .. j0 + width (rows 0 .. n, row stride `cols`) += (or =,
// when `overwrite`) the packed weights `pw` (n x m) times the packed panel `pb`, one register tile
// of product_rows x product_columns at a time.
void product_tiles(CodeWriter& w, const std::string& T, std::size_t n, std::size_t m, std::size_t cols, const std::string& pw,
                   const std::string& pb, bool overwrite) {
  w.line("// {} {}= W times the panel, one register tile of product_rows x product_columns at a time", T, overwrite ? "" : "+");
  w.open("for (std::size_t r0 = 0; r0 < {}; r0 += product_rows)", n);
  w.open("for (std::size_t q = 0; q < panels; ++q)");
  w.line("Scalar* const t = {} + r0 * {} + j0 + q * product_columns;", T, cols);
  w.line("const std::size_t rows = {} - r0 < product_rows ? {} - r0 : product_rows;", n, n);
  w.line("const std::size_t wide = width - q * product_columns < product_columns ? width - q * product_columns : product_columns;");
  w.line("if (rows == product_rows && wide == product_columns) product_tile({}, {} + r0 * {}, {} + q * {} * product_columns, product_columns, t, {}, {});",
         m, pw, m, pb, m, cols, !overwrite);
  w.line("else product_edge({}, {} + r0 * {}, {} + q * {} * product_columns, product_columns, t, {}, rows, wide, {});", m, pw, m, pb,
         m, cols, !overwrite);
  w.close();
  w.close();
}

// Emitted inside a loop over the micro-panels q of T's columns (`wide` of them, at most
// product_columns, in scope): T's columns q * product_columns .. + wide (rows 0 .. n, row stride
// `cols`) += (or =, when `overwrite`) the packed weights `pw` (n x m) times the source's rows read
// in place at `b` (row stride `cols`), one register tile of product_rows rows at a time.
void product_tiles_in_place(CodeWriter& w, const std::string& T, std::size_t n, std::size_t m, std::size_t cols,
                            const std::string& pw, bool overwrite) {
  w.line("// {} {}= W times the micro-panel, one register tile of product_rows rows at a time", T, overwrite ? "" : "+");
  w.open("for (std::size_t r0 = 0; r0 < {}; r0 += product_rows)", n);
  w.line("Scalar* const t = {} + r0 * {} + q * product_columns;", T, cols);
  w.line("const std::size_t rows = {} - r0 < product_rows ? {} - r0 : product_rows;", n, n);
  w.line("if (rows == product_rows && wide == product_columns) product_tile({}, {} + r0 * {}, b, {}, t, {}, {});", m, pw, m, cols,
         cols, !overwrite);
  w.line("else product_edge({}, {} + r0 * {}, b, {}, t, {}, rows, wide, {});", m, pw, m, cols, cols, !overwrite);
  w.close();
}

// The register tiles with vector accumulators for one ISA, product_rows = `rows` by `vectors`
// vector registers (the layout's Vector), written out one named accumulator at a time: as arrays
// g++ keeps them on the stack around the loop wherever the inner dimension and the add flag are not
// constants at the call (one tile shared by several products), at up to a third more time.
void emit_vector_tiles(CodeWriter& w, std::size_t rows, std::size_t vectors) {
  const auto acc = [](std::size_t r, std::size_t v) { return fmt::format("c{}_{}", r, v); };
  // A tile of the first `width` vectors of its columns, all rows stored or (cut) the first `rows`.
  const auto tile = [&](const std::string& name, std::size_t width, bool cut) {
    w.open("static void {}(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* t, std::size_t ldt, {}bool add)", name,
           cut ? "std::size_t rows, " : "");
    for (std::size_t r = 0; r < rows; ++r) {
      std::string line = "Vector ";
      for (std::size_t v = 0; v < width; ++v) line += fmt::format("{}{} = {{}}", v ? ", " : "", acc(r, v));
      w.line("{};", line);
    }
    w.open("for (std::size_t s = 0; s < m; ++s, a += product_rows, b += ldb)");
    std::string loads = "const Vector ";
    for (std::size_t v = 0; v < width; ++v)
      loads += fmt::format("{}x{} = load_vector(b{})", v ? ", " : "", v, v ? fmt::format(" + {} * vector_lanes", v) : "");
    w.line("{};", loads);
    for (std::size_t r = 0; r < rows; ++r) {
      std::string line = fmt::format("w = a[{}];", r);
      for (std::size_t v = 0; v < width; ++v) line += fmt::format(" {} += w * x{};", acc(r, v), v);
      w.line("{}{}", r == 0 ? "Scalar " : "", line);
    }
    w.close();
    for (std::size_t r = 0; r < rows; ++r) {
      std::string line;
      for (std::size_t v = 0; v < width; ++v)
        line += fmt::format("{}store_vector(t + {} * ldt{}, {}, add);", v ? " " : "", r, v ? fmt::format(" + {} * vector_lanes", v) : "",
                            acc(r, v));
      if (cut && r > 0) w.line("if (rows > {}) {{ {} }}", r, line);
      else w.line("{}", line);
    }
    w.close();
  };
  w.line("// The vector_lanes values at p as a Vector, and c added to them (add) or written over them.");
  w.open("static Vector load_vector(const Scalar* p)");
  w.line("Vector v;");
  w.line("std::memcpy(&v, p, sizeof(Vector));");
  w.line("return v;");
  w.close();
  w.open("static void store_vector(Scalar* p, Vector c, bool add)");
  w.line("if (add) c += load_vector(p);");
  w.line("std::memcpy(p, &c, sizeof(Vector));");
  w.close();
  tile("product_tile", vectors, false);
  w.line("// The tiles cut by the block's last columns (the first k vectors of the columns) or rows (the");
  w.line("// first `rows` stored; the weights' micro-panel is zero past the block's last row).");
  for (std::size_t k = 1; k <= vectors; ++k) tile(fmt::format("product_part{}", k), k, true);
  w.open("static void product_edge(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* t, std::size_t ldt, std::size_t rows, std::size_t wide, bool add)");
  w.open("switch (wide % vector_lanes == 0 ? wide / vector_lanes : 0)");
  for (std::size_t k = 1; k <= vectors; ++k)
    w.line("case {}: product_part{}(m, a, b, ldb, t, ldt, rows, add); return;", k, k);
  w.line("default: product_edge_entries(m, a, b, ldb, t, ldt, rows, wide, add);");
  w.close();
  w.close();
  // The gradient's term of a whole micro-panel, even and odd rows apart (two chains of additions);
  // a block's last micro-panel of whole vectors a vector at a time, entry by entry otherwise.
  w.open("static void panel_gradient(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* g, std::size_t wide)");
  w.open("if (wide != product_columns)");
  w.open("if (wide % vector_lanes != 0)");
  w.line("panel_gradient_entries(m, a, b, ldb, g, wide);");
  w.line("return;");
  w.close();
  w.open("for (std::size_t v = 0; v < wide; v += vector_lanes)");
  w.line("Vector e = {{}}, o = {{}};");
  w.line("std::size_t s = 0;");
  w.open("for (; s + 2 <= m; s += 2)");
  w.line("e += a[s] * load_vector(b + s * ldb + v);");
  w.line("o += a[s + 1] * load_vector(b + (s + 1) * ldb + v);");
  w.close();
  w.line("if (s < m) e += a[s] * load_vector(b + s * ldb + v);");
  w.line("store_vector(g + v, e + o, true);");
  w.close();
  w.line("return;");
  w.close();
  for (const char* parity : {"e", "o"}) {
    std::string line = "Vector ";
    for (std::size_t v = 0; v < vectors; ++v) line += fmt::format("{}{}{} = {{}}", v ? ", " : "", parity, v);
    w.line("{};", line);
  }
  w.open("for (std::size_t s = 0; s + 2 <= m; s += 2, b += 2 * ldb)");
  w.line("const Scalar a0 = a[s], a1 = a[s + 1];");
  for (std::size_t v = 0; v < vectors; ++v) {
    const std::string at = v ? fmt::format(" + {} * vector_lanes", v) : "";
    w.line("e{} += a0 * load_vector(b{}); o{} += a1 * load_vector(b + ldb{});", v, at, v, at);
  }
  w.close();
  w.open("if (m % 2 != 0)");
  for (std::size_t v = 0; v < vectors; ++v)
    w.line("e{} += a[m - 1] * load_vector(b{});", v, v ? fmt::format(" + {} * vector_lanes", v) : "");
  w.close();
  for (std::size_t v = 0; v < vectors; ++v)
    w.line("store_vector(g{}, e{} + o{}, true);", v ? fmt::format(" + {} * vector_lanes", v) : "", v, v);
  w.close();
}

// The kernel's register tiles of the sensitivity update's dense products and the gradient's term
// of a micro-panel of Delta_(N-1), one set for every product (static members of Kernel).
void emit_tile_functions(CodeWriter& w) {
  w.line("// One register tile of a dense product: t (product_rows x product_columns, row stride ldt) += A B");
  w.line("// over an inner dimension m, A a micro-panel of the weights (row i of column s at");
  w.line("// a[s * product_rows + i]) and B product_columns columns of the source (column j of row s at");
  w.line("// b[s * ldb + j]: a packed micro-panel, ldb = product_columns, or the source's rows in place).");
  w.line("// The accumulators stay in registers for all m: one load of B per product_rows multiply-adds.");
  w.line("// With add false the tile is overwritten: t = A B. product_edge: a tile cut by the block's last");
  w.line("// rows or columns (rows x wide of it in t). panel_gradient: g[j] += sum_s a[s] b[s * ldb + j] for");
  w.line("// j < wide (at most product_columns), the gradient's term (Eqn. 5) of a micro-panel of a block of");
  w.line("// Delta_(N-1), a = dC/dR_(N-1) over the block's rows. Where the layout has a Vector type they");
  w.line("// run in named vector accumulators, product_rows x product_columns / vector_lanes of them.");
  w.raw_line("#if defined(__AVX512F__) && defined(__GNUC__)");
  emit_vector_tiles(w, 8, 3);
  w.raw_line("#elif defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)");
  emit_vector_tiles(w, 6, 2);
  w.raw_line("#else");
  w.open("static void product_tile(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* t, std::size_t ldt, bool add)");
  w.line("Scalar acc[product_rows][product_columns];");
  w.line("for (std::size_t i = 0; i < product_rows; ++i) for (std::size_t j = 0; j < product_columns; ++j) acc[i][j] = add ? t[i * ldt + j] : Scalar(0);");
  w.open("for (std::size_t s = 0; s < m; ++s, a += product_rows, b += ldb)");
  w.open("for (std::size_t i = 0; i < product_rows; ++i)");
  w.line("const Scalar w = a[i];");
  w.line("for (std::size_t j = 0; j < product_columns; ++j) acc[i][j] += w * b[j];");
  w.close();
  w.close();
  w.line("for (std::size_t i = 0; i < product_rows; ++i) for (std::size_t j = 0; j < product_columns; ++j) t[i * ldt + j] = acc[i][j];");
  w.close();
  w.line("// A packed micro-panel (zero past `wide`) runs through a whole tile; rows read in place, entry");
  w.line("// by entry.");
  w.open("static void product_edge(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* t, std::size_t ldt, std::size_t rows, std::size_t wide, bool add)");
  w.open("if (ldb == product_columns)");
  w.line("Scalar part[product_rows * product_columns] = {{}};");
  w.line("if (add) for (std::size_t i = 0; i < rows; ++i) for (std::size_t j = 0; j < wide; ++j) part[i * product_columns + j] = t[i * ldt + j];");
  w.line("product_tile(m, a, b, product_columns, part, product_columns, true);");
  w.line("for (std::size_t i = 0; i < rows; ++i) for (std::size_t j = 0; j < wide; ++j) t[i * ldt + j] = part[i * product_columns + j];");
  w.line("return;");
  w.close();
  w.line("product_edge_entries(m, a, b, ldb, t, ldt, rows, wide, add);");
  w.close();
  w.open("static void panel_gradient(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* g, std::size_t wide)");
  w.line("panel_gradient_entries(m, a, b, ldb, g, wide);");
  w.close();
  w.raw_line("#endif");
  w.line("// product_edge entry by entry.");
  w.open("static void product_edge_entries(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* t, std::size_t ldt, std::size_t rows, std::size_t wide, bool add)");
  w.open("for (std::size_t i = 0; i < rows; ++i) for (std::size_t j = 0; j < wide; ++j)");
  w.line("Scalar sum = add ? t[i * ldt + j] : Scalar(0);");
  w.line("for (std::size_t s = 0; s < m; ++s) sum += a[s * product_rows + i] * b[s * ldb + j];");
  w.line("t[i * ldt + j] = sum;");
  w.close();
  w.close();
  w.line("// panel_gradient four rows to one update of g (a row at a time would chain every update of the");
  w.line("// same columns through a store and a load).");
  w.open("static void panel_gradient_entries(std::size_t m, const Scalar* a, const Scalar* b, std::size_t ldb, Scalar* g, std::size_t wide)");
  w.open("for (std::size_t s = 0; s + 4 <= m; s += 4)");
  w.line("const Scalar a0 = a[s], a1 = a[s + 1], a2 = a[s + 2], a3 = a[s + 3];");
  w.line("const Scalar* const b0 = b + s * ldb;");
  w.line("for (std::size_t j = 0; j < wide; ++j) g[j] += a0 * b0[j] + a1 * b0[ldb + j] + a2 * b0[2 * ldb + j] + a3 * b0[3 * ldb + j];");
  w.close();
  w.line("for (std::size_t s = m - m % 4; s < m; ++s) for (std::size_t j = 0; j < wide; ++j) g[j] += a[s] * b[s * ldb + j];");
  w.close();
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
  // The leaf comes first and its pass overwrites T (which is then not zeroed first).
  bool overwrite = false;
  // Blocks (k, p) of Delta_(N-1) whose gradient term (Eqn. 5) a dense product's packing has taken
  // on: the pass that packs a whole block also adds prev_state_adjoint^T times it into grad.
  std::set<std::pair<int, int>>* fused = nullptr;
  // For a read of a group: the later reads of the same group that join its pass
  // (analysis::merged_read_leaf), their coefficients added to its own.
  std::vector<const Leaf*> joined = {};

  // Whether row r of T's pattern is the single run [r * width, r * width + width) for every r:
  // what an immediate block of a dense (width m) or diagonal (width 1) connection, or of a bias,
  // writes.
  bool immediate_covers_T(std::int64_t width) const { return rows_of_width(plan.pattern(g, p), width); }

  // Whether the leaf's pass writes every stored entry of T exactly once, so that it can come first
  // and overwrite T: that saves zeroing T and reading it back, two passes over the block. So do a
  // dense product with register tiles or CBLAS whose source rows share T's columns; a read, a
  // diagonal or an identity connection whose source has T's pattern; and an immediate block alone
  // (a bias, or a connection from a group that carries nothing of p) that fills T's pattern.
  bool writes_all_of_T() const {
    const auto& op = plan.op(leaf.op);
    const bool carries = plan.carried(leaf.op, p) > 0;
    if (op.code == ir::OpCode::read || op.code == ir::OpCode::read_delayed)
      return carries && plan.pattern(op.group, p).rows == plan.pattern(g, p).rows;
    if (op.code == ir::OpCode::bias) return op.param == p && immediate_covers_T(1);
    if (op.code != ir::OpCode::connect) return false;
    const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
    if (!carries) {
      if (c.param != p) return false;
      if (c.kind == ir::ConnectionKind::dense) return immediate_covers_T(plan.op(op.a).size);
      return c.kind == ir::ConnectionKind::diagonal && immediate_covers_T(1);
    }
    if (c.kind == ir::ConnectionKind::diagonal || c.kind == ir::ConnectionKind::identity)
      return plan.pattern(plan.op(op.a).group, p).rows == plan.pattern(g, p).rows;
    if (c.kind != ir::ConnectionKind::dense) return false;
    const int from = plan.op(op.a).group;
    const auto& S = plan.pattern(from, p);
    const auto& Tp = plan.pattern(g, p);
    if (!S.uniform() || !Tp.uniform() || S.rows.front() != Tp.rows.front()) return false;
    const auto n = static_cast<std::size_t>(op.size), m = static_cast<std::size_t>(plan.op(op.a).size);
    const auto cols = static_cast<std::size_t>(S.nonzeros) / m;
    if (static_cast<std::int64_t>(n * cols) != Tp.nonzeros) return false;
    return blas(n, m, cols) || KernelPlan::tiled_product(n, cols);
  }
  bool blas(std::size_t n, std::size_t m, std::size_t cols) const {
    const auto flops = 2 * static_cast<long long>(n * m * cols);
    return plan.options.blas_min_flops > 0 && flops >= plan.options.blas_min_flops;
  }

  // The state whose whole block of Delta_(N-1) a read op passes over: its state index for a
  // delayed read, -1 otherwise.
  int delayed_state(int read_op) const {
    const auto& op = plan.op(read_op);
    return op.code == ir::OpCode::read_delayed ? plan.state_of(op.group) : -1;
  }

  bool scaled() const { return !leaf.constant_coefficient; }
  // The leaf's coefficient at `row` (sign included), for a leaf whose coefficient is not +-1.
  std::string coefficient(std::string_view row) const { return fmt::format("coef{}[{}]", leaf.op, row); }
  // `factor` times the coefficient: one multiply when scaled, the sign otherwise.
  std::string times(std::string_view row, const std::string& factor) const {
    if (scaled()) return coefficient(row) + " * " + factor;
    return leaf.sign < 0 ? "-" + factor : factor;
  }
  // A read's coefficient at `row` as a term of a sum: coef<op>[row], or +-1.
  static std::string term(const Leaf& l, std::string_view row) {
    if (!l.constant_coefficient) return fmt::format("coef{}[{}]", l.op, row);
    return l.sign < 0 ? "Scalar(-1)" : "Scalar(1)";
  }
  // `+=` or `-=` for an unscaled leaf, `= ` or `= -` when it overwrites T.
  const char* accumulate() const {
    if (overwrite) return leaf.sign < 0 ? "= -" : "=";
    return leaf.sign < 0 ? "-=" : "+=";
  }
  // `+=`, or `=` when the leaf overwrites T.
  const char* add() const { return overwrite ? "=" : "+="; }
  std::string T() const { return "T_" + plan.group(g).name; }
  std::string table() { return fmt::format("runs{}", tables++); }
  std::string scaled_weights() const { return fmt::format("step.tangent.data() + {}", plan.scaled_weights_offset); }
  // Writes W (n x m) scaled row by row by the leaf's coefficient into the scaled weights' place:
  // the name to read them by.
  std::string scaled_copy(std::size_t n, std::size_t m, const std::string& W, const std::string& connection) {
    w.line("Scalar* const wc = {};  // {} scaled by the coefficient", scaled_weights(), connection);
    w.line("for (std::size_t r = 0; r < {}; ++r) for (std::size_t s = 0; s < {}; ++s) wc[r * {} + s] = {}[r] * {}[r * {} + s];", n,
           m, m, fmt::format("coef{}", leaf.op), W, m);
    return "wc";
  }

  // T[row r] += weight(r) * src[row r] entry by entry over the source's runs, every row r of the
  // source group `from` (weight "" for +-1): one multiply per source entry when weighted.
  // `state` >= 0: the source is the whole block (state, p) of Delta_(N-1), and the pass also adds
  // its gradient term (Eqn. 5) while the run is in cache, unless another pass already does (`fused`).
  template <class Weight>
  void rowwise(int from, const std::string& src, Weight weight, int state = -1) {
    const auto& S = plan.pattern(from, p);
    const bool gradient = state >= 0 && fused != nullptr && !fused->contains({state, p});
    RecordLoop loop(gradient ? std::vector<std::string>{"row", "to", "from", "column", "length"}
                             : std::vector<std::string>{"row", "to", "from", "length"});
    for (std::size_t r = 0; r < S.rows.size(); ++r)
      for (const auto& run : S.rows[r]) {
        std::vector<std::int64_t> record = {static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, run.begin)),
                                            static_cast<std::int64_t>(plan.position(from, p, r, run.begin))};
        if (gradient) record.push_back(run.begin);
        record.push_back(run.end - run.begin);
        loop.add_run(std::move(record));
      }
    if (loop.empty()) return;
    if (gradient) fused->insert({state, p});
    const auto f = loop.open(w, table());
    const std::string& length = f.back();
    const std::string factor = weight(f[0]);
    if (!factor.empty()) {
      w.line("const Scalar w = {};", factor);
      for_run(w, length, [&](const std::string& j) { return fmt::format("{}[{}{}] {} w * {}[{}{}]", T(), f[1], j, add(), src, f[2], j); });
      macs += S.nonzeros;
    } else {
      for_run(w, length, [&](const std::string& j) { return fmt::format("{}[{}{}] {} {}[{}{}]", T(), f[1], j, accumulate(), src, f[2], j); });
    }
    if (gradient) {
      // The gradient's term of this run of Delta_(N-1) (Eqn. 5), while it is in cache.
      w.open("if (grad != nullptr)");
      w.line("const Scalar a = prev_state_adjoint[{} + {}];", plan.state_offset[static_cast<std::size_t>(state)], f[0]);
      for_run(w, length, [&](const std::string& j) {
        return fmt::format("grad[{} + {}{}] += a * {}[{}{}]", plan.param_offset[static_cast<std::size_t>(p)], f[3], j, src, f[2], j);
      });
      w.close();
    }
    w.close();
  }

  // T += W * src for a dense W (n x m) whose source rows share one set of columns with T's rows:
  // a product of (n x m) and (m x cols) in compact storage.
  // `state` >= 0: the source is the whole block (state, p) of Delta_(N-1), whose gradient term the
  // packing may take on (see `fused`).
  // W holds the connection's weights, unscaled: where the leaf's coefficient scales them
  // (scaled()), the register tiles' packing folds it in and the other paths read a scaled copy
  // (scaled_copy, named after `connection`).
  void dense_product(std::size_t n, std::size_t m, std::size_t cols, const std::string& W, const std::string& src,
                     const char* sign, const std::string& connection, int state = -1) {
    if (blas(n, m, cols)) {
      const std::string weights = scaled() ? scaled_copy(n, m, W, connection) : W;
      w.line("// ({} x {}) times ({} x {}) through CBLAS{}", n, m, m, cols, overwrite ? ", the first term of T" : "");
      w.line("cblas_{}gemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, {}, {}, {}, Scalar({}1), {}, {}, {}, {}, Scalar({}), {}, {});",
             plan.scalar == "float" ? "s" : "d", n, cols, m, sign, weights, m, src, cols, overwrite ? 0 : 1, T(), cols);
      return;
    }
    if (!KernelPlan::tiled_product(n, cols)) {
      const std::string weights = scaled() ? scaled_copy(n, m, W, connection) : W;
      // Too small for register tiles: row by row, the columns innermost.
      w.open("for (std::size_t r = 0; r < {}; ++r)", n);
      w.open("for (std::size_t s = 0; s < {}; ++s)", m);
      w.line("const Scalar w0 = {}{}[r * {} + s];", sign, weights, m);
      w.line("for (std::size_t j = 0; j < {}; ++j) {}[r * {} + j] += w0 * {}[s * {} + j];", cols, T(), cols, src, cols);
      w.close();
      w.close();
      return;
    }
    // As a BLAS packs its operands: the weights (with their sign, or times the leaf's coefficient)
    // into micro-panels of product_rows rows, rows past n zero; then for each panel of columns,
    // which stays in L2 while every row of T passes over it (KernelPlan::column_tile), the
    // source's columns into micro-panels of product_columns, columns past the block's last zero.
    // Each register tile of T (Kernel::product_tile) then reads both operands sequentially. Where
    // a micro-panel of the source's rows fits in L1 as it lies (KernelPlan::source_in_place), the
    // tiles read it there.
    if (overwrite) w.line("// the first term of T: the tiles overwrite it");
    const std::size_t panel = plan.column_tile(m);
    w.line("Scalar* const pw = step.tangent.data() + {};  // the weights, product_rows rows at a time", plan.pack_offset);
    w.open("for (std::size_t r0 = 0; r0 < {}; r0 += product_rows)", n);
    w.line("for (std::size_t s = 0; s < {}; ++s)", m);
    const std::string weight = scaled() ? fmt::format("{} * {}[(r0 + i) * {} + s]", coefficient("r0 + i"), W, m)
                                        : fmt::format("{}{}[(r0 + i) * {} + s]", sign, W, m);
    w.line("  for (std::size_t i = 0; i < product_rows; ++i) pw[r0 * {} + s * product_rows + i] = r0 + i < {} ? {} : Scalar(0);", m,
           n, weight);
    w.close();
    const bool gradient = state >= 0 && fused != nullptr && fused->insert({state, p}).second;
    if (plan.source_in_place(m, cols)) {
      // No packing of the source: each micro-panel of its rows is read from memory once, by the
      // gradient's term when it rides here, and then from L1 by every row of tiles.
      w.line("// the source's rows are read in place, a micro-panel of product_columns at a time: its {} rows fit in L1", m);
      w.open("for (std::size_t q = 0; q < ({} + product_columns - 1) / product_columns; ++q)", cols);
      w.line("const std::size_t wide = {} - q * product_columns < product_columns ? {} - q * product_columns : product_columns;", cols,
             cols);
      w.line("const Scalar* const b = {} + q * product_columns;  // row s at b + s * {}", src, cols);
      if (gradient) {
        w.line("// the gradient's term of these columns of Delta_(N-1) (Eqn. 5), the first read of them");
        w.line("if (grad != nullptr) panel_gradient({}, prev_state_adjoint + {}, b, {}, grad + {} + q * product_columns, wide);", m,
               plan.state_offset[static_cast<std::size_t>(state)], cols, plan.param_offset[static_cast<std::size_t>(p)]);
      }
      product_tiles_in_place(w, T(), n, m, cols, "pw", overwrite);
      w.close();
      return;
    }
    w.line("Scalar* const pb = step.tangent.data() + {};  // the source's columns j0 .. j0 + width, product_columns at a time",
           plan.pack_offset + KernelPlan::packed_weights(n, m));
    w.open("for (std::size_t j0 = 0; j0 < {}; j0 += {})", cols, panel);
    w.line("const std::size_t width = {} - j0 < {} ? {} - j0 : {};", cols, panel, cols, panel);
    w.line("const std::size_t panels = (width + product_columns - 1) / product_columns;");
    pack_source_panel(plan, w, "pb", src, m, cols, gradient ? state : -1, p);
    product_tiles(w, T(), n, m, cols, "pw", "pb", overwrite);
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
          const char* sign = scaled() || leaf.sign > 0 ? "" : "-";
          const auto& S = plan.pattern(from_group, p);
          const auto& Tp = plan.pattern(g, p);
          if (scaled()) macs += static_cast<std::int64_t>(n * m);  // the coefficient folded into W
          if (S.uniform() && Tp.uniform() && S.rows.front() == Tp.rows.front()) {
            // Source and T rows share their columns: a dense product in compact storage.
            const auto cols = static_cast<std::size_t>(S.nonzeros) / m;
            if (!S.full()) w.line("// every row holds the same {} of the block's {} columns", cols, S.cols);
            const bool whole_block = plan.op(op.a).code == ir::OpCode::read_delayed && S.full();
            dense_product(n, m, cols, W, src, sign, c.name, whole_block ? plan.state_of(from_group) : -1);
            macs += static_cast<std::int64_t>(n) * S.nonzeros;
          } else {
            const std::string weights = scaled() ? scaled_copy(n, m, W, c.name) : W;
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
            rowwise(from_group, src, [&](const std::string& r) { return fmt::format("wc[{}]", r); }, delayed_state(op.a));
            w.close();
          } else {
            rowwise(from_group, src, [&](const std::string& r) { return fmt::format("{}{}[{}]", leaf.sign < 0 ? "-" : "", W, r); },
                    delayed_state(op.a));
          }
          break;
        }
        case ir::ConnectionKind::identity:
          rowwise(from_group, src, [&](const std::string& r) { return scaled() ? coefficient(r) : std::string(); },
                  delayed_state(op.a));
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
    // Only an immediate block alone overwrites T; after a product it adds.
    if (!src.empty()) overwrite = false;
    w.line("// immediate block d {} / d {}: the connection's input", plan.group(g).name, plan.param(p).name);
    switch (c.kind) {
      case ir::ConnectionKind::dense: {
        RecordLoop rows({"row", "at"});
        for (std::size_t r = 0; r < n; ++r)
          rows.add({static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, static_cast<std::int64_t>(r * m)))});
        const auto f = rows.open(w, table());
        if (scaled()) {
          w.line("const Scalar c = {};", coefficient(f[0]));
          w.line("for (std::size_t s = 0; s < {}; ++s) {}[{} + s] {} c * {};", m, T(), f[1], add(), s.ref(op.a, "s"));
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
        w.line("{}[{}] {} {};", T(), f[1], add(), times(f[0], s.ref(op.a, f[0])));
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
          w.line("{}[{}] {} {};", T(), f[1], add(), coefficient(f[0]));
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
        if (!joined.empty()) {
          // One pass for every read of the group, with the sum of their coefficients.
          w.line("// (its {} reads in {}, in one pass: the coefficients added)", joined.size() + 1, plan.group(g).name);
          rowwise(
              op.group, src,
              [&](const std::string& r) {
                std::string sum = term(leaf, r);
                for (const Leaf* l : joined) sum += " + " + term(*l, r);
                return sum;
              },
              delayed_state(leaf.op));
          break;
        }
        rowwise(op.group, src, [&](const std::string& r) { return scaled() ? coefficient(r) : std::string(); },
                delayed_state(leaf.op));
        break;
      }
      default: break;
    }
  }
};

// Fused row-wise passes. A group's leaves that pass over a source block with T's own pattern
// (reads of a group or of a delayed state, identity connections, diagonal connections with an
// unscaled weight and no immediate block of p) are formed in one pass over T, their terms summed
// entry by entry: T = T + w0 * S0 + w1 * S1 + ..., in the leaves' order, so the sum rounds as the
// separate passes did. Each block is read once and T written once, instead of T read and written
// again for every term (LSTM's c = f c' + i g reads T_f, Delta_(N-1) of c, T_i and T_g in one pass:
// five passes over a block instead of eleven). The multiplications are those of the separate
// passes, counted the same way.

// The leaves (merged-read heads) of group g that form its fused pass for p: empty unless two or
// more
// qualify (`minimum`, 1 in a column panel, where every such leaf goes in the pass).
std::vector<std::size_t> fused_leaves(const KernelPlan& plan, int g, int p, std::size_t minimum = 2) {
  const auto& leaves = plan.leaves[static_cast<std::size_t>(g)];
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < leaves.size(); ++i)
    if (analysis::merged_read_leaf(plan.net, leaves, i) == i && plan.same_pattern_leaf(g, leaves[i], p)) out.push_back(i);
  if (out.size() < minimum) out.clear();
  return out;
}

// Group g's fused pass for p over the leaves `members` (fused_leaves), overwriting T when
// `overwrite` (the pass is the group's first term). The gradient's term (Eqn. 5) of a whole block
// of Delta_(N-1) that no earlier pass took on is added in the same pass over each run. `panel`:
// the pass runs inside a loop over column panels j0 .. j0 + width of full blocks (emit_panel_block)
// and covers the panel's columns of every row.
void emit_fused_pass(const KernelPlan& plan, Scope& s, CodeWriter& w, std::int64_t& macs, int& tables,
                     std::set<std::pair<int, int>>& fused, int g, int p, const std::vector<std::size_t>& members,
                     bool overwrite, bool panel = false) {
  const auto& leaves = plan.leaves[static_cast<std::size_t>(g)];
  const auto& pattern = plan.pattern(g, p);
  const std::string T = "T_" + plan.group(g).name;
  struct Term {
    std::string src;     // the source block
    std::string weight;  // its weight at row f[0], "" for +-1
    int sign;
    int state;  // >= 0: a whole block of Delta_(N-1) whose gradient term this pass adds
  };
  std::vector<Term> terms;
  std::string names;
  for (std::size_t i : members) {
    const Leaf& leaf = leaves[i];
    const auto& op = plan.op(leaf.op);
    const bool is_read = op.code == ir::OpCode::read || op.code == ir::OpCode::read_delayed;
    const int read_op = is_read ? leaf.op : op.a;
    const auto& read = plan.op(read_op);
    Term term{source_tangent(plan, s, leaf.op, read_op, p), "", leaf.sign, -1};
    if (read.code == ir::OpCode::read_delayed) {
      const int state = plan.state_of(read.group);
      if (fused.insert({state, p}).second) term.state = state;
    }
    const auto joined = analysis::reads_joining(plan.net, leaves, i);
    if (!joined.empty()) {
      term.weight = LeafWriter::term(leaf, "{0}");
      for (std::size_t j : joined) term.weight += " + " + LeafWriter::term(leaves[j], "{0}");
      term.sign = 1;
    } else if (!leaf.constant_coefficient) {
      term.weight = fmt::format("coef{}[{{0}}]", leaf.op);
      term.sign = 1;
    }
    if (!is_read) {
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      if (c.kind == ir::ConnectionKind::diagonal) {
        term.weight = fmt::format("{}{}[{{0}}]", leaf.sign < 0 ? "-" : "", s.param(c.param));
        term.sign = 1;
      }
    }
    if (!term.weight.empty()) macs += pattern.nonzeros;
    names += (names.empty() ? "" : ", ") + delayed_name(plan, read) +
             (is_read ? "" : " through " + plan.net.connections[static_cast<std::size_t>(op.connection)].name) +
             (joined.empty() ? "" : fmt::format(" ({} reads)", joined.size() + 1));
    terms.push_back(std::move(term));
  }
  const bool gradient = std::any_of(terms.begin(), terms.end(), [](const Term& t) { return t.state >= 0; });
  w.line("// {} <- {}: one pass{}, the terms summed in order", plan.group(g).name, names, panel ? " over the panel" : "");
  // f: the row, where the run starts in T and in every source, its first column, its length.
  std::vector<std::string> f;
  if (panel) {
    const auto cols = plan.param(p).size();
    w.open("for (std::size_t e = 0; e < {}; ++e)", pattern.rows.size());
    f = {"e", fmt::format("e * {} + j0", cols), "j0", "width"};
  } else {
    RecordLoop loop(gradient ? std::vector<std::string>{"row", "at", "column", "length"}
                             : std::vector<std::string>{"row", "at", "length"});
    for (std::size_t r = 0; r < pattern.rows.size(); ++r)
      for (const auto& run : pattern.rows[r]) {
        std::vector<std::int64_t> record = {static_cast<std::int64_t>(r), static_cast<std::int64_t>(plan.position(g, p, r, run.begin))};
        if (gradient) record.push_back(run.begin);
        record.push_back(run.end - run.begin);
        loop.add_run(std::move(record));
      }
    f = loop.open(w, fmt::format("runs{}", tables++));
  }
  const std::string& length = f.back();
  for (std::size_t k = 0; k < terms.size(); ++k)
    if (!terms[k].weight.empty()) w.line("const Scalar w{} = {};", k, fmt::format(fmt::runtime(terms[k].weight), f[0]));
  for_run(w, length, [&](const std::string& j) {
    std::string sum = overwrite ? "" : fmt::format("{}[{}{}]", T, f[1], j);
    for (std::size_t k = 0; k < terms.size(); ++k) {
      const std::string value = fmt::format("{}[{}{}]", terms[k].src, f[1], j);
      const std::string product = terms[k].weight.empty() ? value : fmt::format("w{} * {}", k, value);
      if (sum.empty()) sum = terms[k].sign < 0 ? "-" + product : product;
      else sum += (terms[k].sign < 0 ? " - " : " + ") + product;
    }
    return fmt::format("{}[{}{}] = {}", T, f[1], j, sum);
  });
  if (gradient) {
    // The gradient's terms of these runs of Delta_(N-1) (Eqn. 5), while they are in cache.
    w.open("if (grad != nullptr)");
    for (std::size_t k = 0; k < terms.size(); ++k) {
      if (terms[k].state < 0) continue;
      w.line("const Scalar a{} = prev_state_adjoint[{} + {}];", k, plan.state_offset[static_cast<std::size_t>(terms[k].state)], f[0]);
      for_run(w, length, [&](const std::string& j) {
        return fmt::format("grad[{} + {}{}] += a{} * {}[{}{}]", plan.param_offset[static_cast<std::size_t>(p)], f[2], j, k,
                           terms[k].src, f[1], j);
      });
    }
    w.close();
  }
  w.close();
}

// Block p in column panels (KernelPlan::panel_columns > 0). First every dense product's weights
// are packed, scaled by the leaf's coefficient; then, for each panel of columns j0 .. j0 + width,
// each source block of the products is packed once, before the first product that reads it (the
// gradient's term of a block of Delta_(N-1) added in that pass), and every group's part of the panel is formed in evaluation
// order, its leaves in the order of the whole-block update: a product's register tiles, an
// immediate block's entries within the panel, one fused pass over the panel's columns. Every
// operation maps column j of its sources to column j of T, so the panels are independent, and a
// panel's part of each block stays in L2 from the pass that writes it to the pass that reads it.
// The multiplications are those of the whole-block update, counted the same way.
void emit_panel_block(const KernelPlan& plan, Scope& s, CodeWriter& w, std::int64_t& macs, int& tables,
                      std::set<std::pair<int, int>>& fused, const std::vector<int>& groups, int p, std::size_t panel) {
  const auto cols = static_cast<std::size_t>(plan.param(p).size());
  const std::string& name = plan.param(p).name;
  w.line("// in column panels of {}: every block of {} is full and every term maps a column of its source to", panel, name);
  w.line("// the same column, so each panel is formed whole, in L2, each source panel packed once for all");
  w.line("// the products that read it");
  std::size_t work = 0;
  for (int g : groups) {
    const auto& group = plan.group(g);
    if (in_delta(plan, g, p)) {
      w.line("Scalar* const T_{} = {};  // d {} / d {}, written into Delta_N", group.name, s.delta_next(plan.state_of(g), p),
             group.name, name);
    } else {
      w.line("Scalar* const T_{} = step.tangent.data() + {};  // d {} / d {}", group.name, work, group.name, name);
      work += static_cast<std::size_t>(plan.pattern(g, p).nonzeros);
    }
  }
  // The products' packed weights, and one packed panel per source.
  std::size_t at = plan.pack_offset;
  std::map<int, std::string> packed_weights;  // per leaf op
  struct Source {
    std::string src, pb;
    std::size_t m;
    int state;  // >= 0: the gradient's term of this block of Delta_(N-1) rides in its packing
  };
  std::vector<Source> sources;
  std::map<int, std::size_t> source_of;  // per leaf op, into `sources`
  for (int g : groups)
    for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)]) {
      const auto& op = plan.op(leaf.op);
      if (op.code != ir::OpCode::connect || plan.carried(leaf.op, p) == 0) continue;
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      if (c.kind != ir::ConnectionKind::dense) continue;
      const auto n = static_cast<std::size_t>(op.size), m = static_cast<std::size_t>(plan.op(op.a).size);
      const std::string pw = fmt::format("pw{}", leaf.op);
      const std::string W = s.param(c.param);
      const std::string weight =
          leaf.constant_coefficient ? fmt::format("{}{}[(r0 + i) * {} + s]", leaf.sign < 0 ? "-" : "", W, m)
                                    : fmt::format("coef{}[r0 + i] * {}[(r0 + i) * {} + s]", leaf.op, W, m);
      w.line("// {} for {}: {}, scaled by the coefficient, product_rows rows at a time", c.name, plan.group(g).name,
             leaf.constant_coefficient ? "its weights" : "the weights");
      w.line("Scalar* const {} = step.tangent.data() + {};", pw, at);
      w.open("for (std::size_t r0 = 0; r0 < {}; r0 += product_rows)", n);
      w.line("for (std::size_t s = 0; s < {}; ++s)", m);
      w.line("  for (std::size_t i = 0; i < product_rows; ++i) {}[r0 * {} + s * product_rows + i] = r0 + i < {} ? {} : Scalar(0);",
             pw, m, n, weight);
      w.close();
      if (!leaf.constant_coefficient) macs += static_cast<std::int64_t>(n * m);
      at += KernelPlan::packed_weights(n, m);
      packed_weights[leaf.op] = pw;
      const std::string src = source_tangent(plan, s, leaf.op, op.a, p);
      auto same = std::find_if(sources.begin(), sources.end(), [&](const Source& x) { return x.src == src; });
      if (same == sources.end()) {
        const auto& from = plan.op(op.a);
        int state = -1;
        if (from.code == ir::OpCode::read_delayed && fused.insert({plan.state_of(from.group), p}).second)
          state = plan.state_of(from.group);
        sources.push_back({src, fmt::format("pb{}", sources.size()), m, state});
        same = sources.end() - 1;
      }
      source_of[leaf.op] = static_cast<std::size_t>(same - sources.begin());
    }
  for (auto& source : sources) {
    w.line("Scalar* const {} = step.tangent.data() + {};  // a panel of {}, packed", source.pb, at, source.src);
    at += source.m * panel;
  }
  w.open("for (std::size_t j0 = 0; j0 < {}; j0 += {})", cols, panel);
  w.line("const std::size_t width = {} - j0 < {} ? {} - j0 : {};", cols, panel, cols, panel);
  w.line("const std::size_t panels = (width + product_columns - 1) / product_columns;");
  // A source is packed right before the first product that reads it: a group's own block of
  // this step (a stacked network's lower layer) has its panel formed by then.
  std::vector<bool> packed(sources.size(), false);
  for (int g : groups) {
    const auto& group = plan.group(g);
    const std::string T = "T_" + group.name;
    const auto& leaves = plan.leaves[static_cast<std::size_t>(g)];
    const auto members = fused_leaves(plan, g, p, 1);
    auto in_fused = [&](std::size_t i) { return std::find(members.begin(), members.end(), i) != members.end(); };
    auto product = [&](std::size_t i) {
      const auto& op = plan.op(leaves[i].op);
      return op.code == ir::OpCode::connect && plan.carried(leaves[i].op, p) > 0 &&
             plan.net.connections[static_cast<std::size_t>(op.connection)].kind == ir::ConnectionKind::dense;
    };
    // The first product or pass over T's pattern writes all of the panel: it goes first.
    std::size_t lead = leaves.size();
    for (std::size_t i = 0; i < leaves.size() && lead == leaves.size(); ++i)
      if (product(i) || in_fused(i)) lead = i;
    bool first = true;
    auto emit_leaf = [&](std::size_t i) {
      const Leaf& leaf = leaves[i];
      const auto& op = plan.op(leaf.op);
      const bool overwrite = first;
      first = false;
      if (in_fused(i)) {
        emit_fused_pass(plan, s, w, macs, tables, fused, g, p, members, overwrite, true);
        return;
      }
      const bool scaled = !leaf.constant_coefficient;
      const char* op_assign = leaf.sign < 0 && !scaled ? "-=" : "+=";
      if (op.code == ir::OpCode::bias) {
        w.line("// immediate block d {} / d {} within the panel", group.name, name);
        w.line("for (std::size_t r = j0; r < j0 + width; ++r) {}[r * {} + r] {} {};", T, cols, scaled ? "+=" : op_assign,
               scaled ? fmt::format("coef{}[r]", leaf.op) : "Scalar(1)");
        return;
      }
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      const auto n = static_cast<std::size_t>(op.size), m = static_cast<std::size_t>(plan.op(op.a).size);
      if (product(i)) {
        const auto k = source_of.at(leaf.op);
        const auto& source = sources[k];
        if (!packed[k]) pack_source_panel(plan, w, source.pb, source.src, source.m, cols, source.state, p);
        packed[k] = true;
        w.line("// {} <- {} through {}: {} * d {} / d {}", group.name, delayed_name(plan, plan.op(op.a)), c.name, c.name,
               delayed_name(plan, plan.op(op.a)), name);
        product_tiles(w, T, n, m, cols, packed_weights.at(leaf.op), source.pb, overwrite);
        macs += static_cast<std::int64_t>(n * m * cols);
      }
      if (c.param != p) return;
      w.line("// immediate block d {} / d {} within the panel: the connection's input", group.name, name);
      if (c.kind == ir::ConnectionKind::dense) {
        // Row r holds the input at columns r m .. r m + m - 1.
        w.open("for (std::size_t r = j0 / {}; r < {} && r * {} < j0 + width; ++r)", m, n, m);
        w.line("const std::size_t lo = r * {} < j0 ? j0 - r * {} : 0;", m, m);
        w.line("const std::size_t hi = r * {} + {} > j0 + width ? j0 + width - r * {} : {};", m, m, m, m);
        if (scaled) {
          w.line("const Scalar c = coef{}[r];", leaf.op);
          w.line("for (std::size_t s = lo; s < hi; ++s) {}[r * {} + s] += c * {};", T, cols + m, s.ref(op.a, "s"));
          macs += static_cast<std::int64_t>(n * m);
        } else {
          w.line("for (std::size_t s = lo; s < hi; ++s) {}[r * {} + s] {} {};", T, cols + m, op_assign, s.ref(op.a, "s"));
        }
        w.close();
      } else {  // diagonal: row r holds the input at column r
        w.line("for (std::size_t r = j0; r < j0 + width; ++r) {}[r * {} + r] {} {};", T, cols, scaled ? "+=" : op_assign,
               scaled ? fmt::format("coef{}[r] * {}", leaf.op, s.ref(op.a, "r")) : s.ref(op.a, "r"));
        if (scaled) macs += static_cast<std::int64_t>(n);
      }
    };
    emit_leaf(lead);
    for (std::size_t i = 0; i < leaves.size(); ++i) {
      if (i == lead || !plan.contributes(leaves[i], p) || analysis::merged_read_leaf(plan.net, leaves, i) != i) continue;
      if (in_fused(i) && in_fused(lead)) continue;  // in the lead's pass
      if (in_fused(i) && i != members.front()) continue;
      emit_leaf(i);
    }
  }
  w.close();
}

// Row-local fusion. When every tangent block of parameter group p stores row r as the one run
// [r * width, (r + 1) * width) (an element-wise layer's own parameters: its gates' and candidates'
// weights and biases), row r of each block depends only on rows r of the blocks before it and of
// Delta_(N-1). One pass over the rows then forms them all: each intermediate group's row lives in
// a local array instead of the workspace, and each block of Delta_N and Delta_(N-1) is passed over
// once, the gradient's term (Eqn. 5) included. The multiplications are those of the passes it
// replaces, counted the same way. Only where an intermediate group (one without a block of Delta)
// carries p: its block is then no longer written to the workspace and read back. Where every group
// is a state, the separate passes already pass over each block once, and they vectorise across the
// rows where the fused loop does not (measured: IndRNN and the LRU 5-6% slower fused).

// Whether `leaf` of group g touches only row r of its sources' blocks for p, given that every
// block of p is row-local of `width`.
bool row_local_leaf(const KernelPlan& plan, int g, const Leaf& leaf, int p, std::int64_t width) {
  const auto& op = plan.op(leaf.op);
  const bool carries = plan.carried(leaf.op, p) > 0;
  switch (op.code) {
    case ir::OpCode::read:
    case ir::OpCode::read_delayed: return !carries || plan.pattern(op.group, p).rows == plan.pattern(g, p).rows;
    case ir::OpCode::bias: return op.param != p || width == 1;
    case ir::OpCode::connect: {
      const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
      if (carries && ((c.kind != ir::ConnectionKind::diagonal && c.kind != ir::ConnectionKind::identity) ||
                      plan.pattern(plan.op(op.a).group, p).rows != plan.pattern(g, p).rows))
        return false;
      if (c.param != p) return true;
      if (c.kind == ir::ConnectionKind::dense) return !carries && plan.op(op.a).size == width;
      return c.kind == ir::ConnectionKind::diagonal && width == 1;
    }
    default: return true;
  }
}

// The common row width of p's tangent blocks when the whole block of p can be formed row by row
// (above); 0 when it cannot.
std::int64_t row_local_width(const KernelPlan& plan, const std::vector<int>& groups, int p) {
  std::int64_t width = 0;
  std::size_t rows = 0;
  for (int g : groups) {
    const auto& pattern = plan.pattern(g, p);
    if (pattern.rows.empty() || pattern.rows.front().size() != 1 || pattern.rows.front().front().begin != 0) return 0;
    const auto w = pattern.rows.front().front().end;
    if ((width != 0 && w != width) || (rows != 0 && pattern.rows.size() != rows)) return 0;
    width = w, rows = pattern.rows.size();
    if (!rows_of_width(pattern, w)) return 0;
    for (std::size_t r = 0; r < rows; ++r)
      if (plan.position(g, p, r, static_cast<std::int64_t>(r) * w) != r * static_cast<std::size_t>(w)) return 0;
  }
  if (std::all_of(groups.begin(), groups.end(), [&](int g) { return in_delta(plan, g, p); })) return 0;
  for (int g : groups)
    for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)])
      if (!row_local_leaf(plan, g, leaf, p, width)) return 0;
  return width;
}

// Block p formed row by row (row_local_width > 0): one loop over the rows e, in it every group's
// row in evaluation order, a state's written straight into Delta_N.
void emit_row_local_block(const KernelPlan& plan, Scope& s, CodeWriter& w, std::int64_t& macs,
                          std::set<std::pair<int, int>>& fused, const std::vector<int>& groups, int p, std::int64_t width) {
  const auto n = plan.pattern(groups.front(), p).rows.size();
  const auto cols = static_cast<std::size_t>(plan.param(p).size());
  const std::string& name = plan.param(p).name;
  if (width == 1)
    w.line("// row-local: every block of {} stores row e as its column e alone, so one pass over the rows", name);
  else
    w.line("// row-local: every block of {} stores row e as columns {} e to {} e + {}, so one pass over the rows",
           name, width, width, width - 1);
  w.line("// forms them all, the intermediate groups' rows in local arrays");
  for (int g : groups)
    if (in_delta(plan, g, p))
      w.line("Scalar* const D_{} = {};  // d {} / d {}, {} of {} x {} entries, written into Delta_N", plan.group(g).name,
             s.delta_next(plan.state_of(g), p), plan.group(g).name, name, n * static_cast<std::size_t>(width),
             plan.group(g).size, cols);
  w.open("for (std::size_t e = 0; e < {}; ++e)", n);
  // One statement over the row's entries j (`stmt` formats them from j's expression).
  auto over_row = [&](auto stmt) {
    if (width == 1) w.line("{};", stmt("0"));
    else w.line("for (std::size_t j = 0; j < {}; ++j) {};", width, stmt("j"));
  };
  // Row e of a block of Delta_(N-1) (P_<state>, declared at its first use), or the row of an
  // earlier group in this pass (T_<group>); "" when the leaf carries nothing of p.
  std::set<int> previous_rows;
  auto source_row = [&](int leaf_op, int read_op) -> std::string {
    const auto& op = plan.op(read_op);
    if (plan.carried(leaf_op, p) == 0) return "";
    if (op.code != ir::OpCode::read_delayed) return "T_" + plan.group(op.group).name;
    const std::string row = "P_" + plan.group(op.group).name;
    if (previous_rows.insert(op.group).second)
      w.line("const Scalar* const {} = {} + e * {};  // row e of d {} / d {} at the previous step", row,
             s.delta_prev(plan.state_of(op.group), p), width, plan.group(op.group).name, name);
    return row;
  };
  for (int g : groups) {
    const auto& group = plan.group(g);
    const std::string T = "T_" + group.name;
    if (in_delta(plan, g, p))
      w.line("Scalar* const {} = D_{} + e * {};  // row e of d {} / d {}", T, group.name, width, group.name, name);
    else
      w.line("Scalar {}[{}];  // row e of d {} / d {}", T, width, group.name, name);
    bool first = true;  // the first term of the row overwrites it
    auto assign = [&](int sign) {
      const char* op = first ? (sign < 0 ? "= -" : "=") : (sign < 0 ? "-=" : "+=");
      first = false;
      return op;
    };
    // T's row (op)= weight * src's row; weight "" for +-1 (the sign in the assignment).
    auto row_pass = [&](const std::string& weight, int sign, const std::string& src) {
      if (weight.empty()) {
        const char* op = assign(sign);
        over_row([&](const std::string& j) { return fmt::format("{}[{}] {} {}[{}]", T, j, op, src, j); });
        return;
      }
      w.open("");
      w.line("const Scalar wt = {};", weight);
      const char* op = assign(1);
      over_row([&](const std::string& j) { return fmt::format("{}[{}] {} wt * {}[{}]", T, j, op, src, j); });
      w.close();
      macs += static_cast<std::int64_t>(n) * width;
    };
    // The gradient's term (Eqn. 5) of row e of the block of Delta_(N-1) that `src` is, once per block.
    auto gradient = [&](int read_op, const std::string& src) {
      const auto& op = plan.op(read_op);
      if (op.code != ir::OpCode::read_delayed) return;
      const int state = plan.state_of(op.group);
      if (!fused.insert({state, p}).second) return;
      w.open("if (grad != nullptr)");
      w.line("const Scalar a = prev_state_adjoint[{} + e];", plan.state_offset[static_cast<std::size_t>(state)]);
      w.line("Scalar* const gp = grad + {} + e * {};  // row e's columns of the gradient of {}",
             plan.param_offset[static_cast<std::size_t>(p)], width, name);
      over_row([&](const std::string& j) { return fmt::format("gp[{}] += a * {}[{}]", j, src, j); });
      w.close();
    };
    const auto& leaves = plan.leaves[static_cast<std::size_t>(g)];
    for (std::size_t i = 0; i < leaves.size(); ++i) {
      const Leaf& leaf = leaves[i];
      const auto& op = plan.op(leaf.op);
      const bool scaled = !leaf.constant_coefficient;
      const std::string coefficient = fmt::format("coef{}[e]", leaf.op);
      switch (op.code) {
        case ir::OpCode::read:
        case ir::OpCode::read_delayed: {
          if (analysis::merged_read_leaf(plan.net, leaves, i) != i) break;
          const std::string src = source_row(leaf.op, leaf.op);
          if (src.empty()) break;
          const auto joined = analysis::reads_joining(plan.net, leaves, i);
          const std::string reads = joined.empty() ? "" : fmt::format(" (its {} reads, coefficients added)", joined.size() + 1);
          if (op.code == ir::OpCode::read_delayed)
            w.line("// cross term D[{}, {}]: d {} / d {}{}", group.name, plan.group(op.group).name, describe(plan, leaf.op),
                   name, reads);
          else
            w.line("// {} <- {}{}", group.name, plan.group(op.group).name, reads);
          std::string weight = joined.empty() ? (scaled ? coefficient : "") : LeafWriter::term(leaf, "e");
          for (std::size_t j : joined) weight += " + " + LeafWriter::term(leaves[j], "e");
          row_pass(weight, leaf.sign, src);
          gradient(leaf.op, src);
          break;
        }
        case ir::OpCode::bias:
          if (op.param != p) break;
          w.line("// immediate block d {} / d {}", group.name, name);
          w.line("{}[0] {} {};", T, assign(scaled ? 1 : leaf.sign), scaled ? coefficient : "Scalar(1)");
          break;
        case ir::OpCode::connect: {
          const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
          const std::string src = source_row(leaf.op, op.a);
          if (!src.empty()) {
            w.line("// {} <- {} through {}", group.name, delayed_name(plan, plan.op(op.a)), c.name);
            if (c.kind == ir::ConnectionKind::diagonal) {
              const std::string W = fmt::format("{}[e]", s.param(c.param));
              if (scaled) macs += static_cast<std::int64_t>(n);
              row_pass(scaled ? coefficient + " * " + W : (leaf.sign < 0 ? "-" : "") + W, 1, src);
            } else {
              row_pass(scaled ? coefficient : "", leaf.sign, src);
            }
            gradient(op.a, src);
          }
          if (c.param != p) break;
          w.line("// immediate block d {} / d {}: the connection's input", group.name, name);
          if (c.kind == ir::ConnectionKind::dense) {
            const auto m = static_cast<std::size_t>(plan.op(op.a).size);
            if (scaled) {
              w.open("");
              w.line("const Scalar c = {};", coefficient);
              w.line("for (std::size_t s = 0; s < {}; ++s) {}[s] {} c * {};", m, T, assign(1), s.ref(op.a, "s"));
              w.close();
              macs += static_cast<std::int64_t>(n * m);
            } else {
              w.line("for (std::size_t s = 0; s < {}; ++s) {}[s] {} {};", m, T, assign(leaf.sign), s.ref(op.a, "s"));
            }
          } else {
            w.line("{}[0] {} {};", T, assign(scaled ? 1 : leaf.sign),
                   scaled ? coefficient + " * " + s.ref(op.a, "e") : s.ref(op.a, "e"));
            if (scaled) macs += static_cast<std::int64_t>(n);
          }
          break;
        }
        default: break;
      }
    }
    if (first) over_row([&](const std::string& j) { return fmt::format("{}[{}] = 0", T, j); });
  }
  w.close();
}

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

// The gradient's term of block (k, p) of Delta_(N-1) (Eqn. 5): grad_p += (dC/dR^k_(N-1)) Delta^kp_(N-1)
// over the block's stored runs; `grad` and `delta` name the block's gradient and Delta_(N-1).
void block_gradient(const KernelPlan& plan, CodeWriter& body, int& tables, int k, int p, const std::string& grad,
                    const std::string& delta) {
  const auto runs = block_runs(plan, k, p);
  if (runs.empty()) return;
  const int g = plan.a.states[static_cast<std::size_t>(k)];
  body.line("// (dC/d{}) * d{}/d{}", plan.group(g).name, plan.group(g).name, plan.param(p).name);
  const auto& pattern = plan.pattern(g, p);
  const auto rows = pattern.rows.size();
  const auto at = plan.state_offset[static_cast<std::size_t>(k)];
  if (pattern.full() && rows >= 4) {
    // Whole rows, four at a time: the gradient's columns are read and written once per four
    // rows of Delta, so the pass streams Delta alone.
    const auto cols = static_cast<std::size_t>(pattern.cols);
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
    return;
  }
  const auto f = runs.open(body, fmt::format("runs{}", tables++));
  body.line("const Scalar a = prev_state_adjoint[{} + {}];", at, f[0]);
  for_run(body, f[3], [&](const std::string& j) { return fmt::format("{}[{}{}] += a * {}[{}{}]", grad, f[1], j, delta, f[2], j); });
  body.close();
}

}  // namespace

std::int64_t emit_sensitivity(const KernelPlan& plan, std::string& out) {
  std::int64_t macs = 0;
  CodeWriter w(1);
  {
    Scope s(plan, Scope::Access::read);
    std::set<std::pair<int, int>> fused;  // blocks of Delta_(N-1) whose gradient term a packing adds
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
      if (const auto width = row_local_width(plan, groups, pi); width > 0) {
        emit_row_local_block(plan, s, body, macs, fused, groups, pi, width);
        body.close();
        continue;
      }
      if (const auto panel = plan.panel_columns(pi); panel > 0) {
        int panel_tables = 0;
        emit_panel_block(plan, s, body, macs, panel_tables, fused, groups, pi, panel);
        body.close();
        continue;
      }
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
        if (in_delta(plan, g, pi)) {
          body.line("Scalar* const T_{} = {};  // d {} / d {}{}, written into Delta_N", group.name, s.delta_next(k, pi),
                    group.name, param.name, stored);
        } else {
          body.line("Scalar* const T_{} = step.tangent.data() + {};  // d {} / d {}{}", group.name, work, group.name,
                    param.name, stored);
          work += size;
        }
        // A leaf whose pass writes all of T goes first and overwrites it; otherwise T starts at zero.
        // A read that joins an earlier read's pass (analysis::merged_read_leaf) is formed there.
        const auto& leaves = plan.leaves[static_cast<std::size_t>(g)];
        auto joined = [&](std::size_t i) {
          std::vector<const Leaf*> reads;
          for (std::size_t j : analysis::reads_joining(plan.net, leaves, i)) reads.push_back(&leaves[j]);
          return reads;
        };
        std::size_t lead = leaves.size();
        for (std::size_t i = 0; i < leaves.size() && size > 0 && lead == leaves.size(); ++i)
          if (analysis::merged_read_leaf(plan.net, leaves, i) == i &&
              LeafWriter{plan, s, body, macs, tables, g, leaves[i], pi}.writes_all_of_T())
            lead = i;
        // Leaves that pass over blocks of T's own pattern go in one fused pass, at the first's place.
        const auto members = size > 0 ? fused_leaves(plan, g, pi) : std::vector<std::size_t>{};
        auto in_fused = [&](std::size_t i) { return std::find(members.begin(), members.end(), i) != members.end(); };
        if (lead < leaves.size() && in_fused(lead)) emit_fused_pass(plan, s, body, macs, tables, fused, g, pi, members, true);
        else if (lead < leaves.size()) LeafWriter{plan, s, body, macs, tables, g, leaves[lead], pi, true, &fused, joined(lead)}.emit();
        else if (size > 0) body.line("for (std::size_t i = 0; i < {}; ++i) T_{}[i] = 0;", size, group.name);
        for (std::size_t i = 0; i < leaves.size(); ++i) {
          if (i == lead || analysis::merged_read_leaf(plan.net, leaves, i) != i) continue;
          if (in_fused(i)) {
            if (i == members.front() && !in_fused(lead)) emit_fused_pass(plan, s, body, macs, tables, fused, g, pi, members, false);
            continue;
          }
          LeafWriter{plan, s, body, macs, tables, g, leaves[i], pi, false, &fused, joined(i)}.emit();
        }
      }
      body.close();
    }
    emit_tile_functions(w);
    w.blank();
    // The gradient's terms of the blocks of Delta_(N-1) no packing took on.
    CodeWriter rest(3);
    int rest_tables = 0;
    for (std::size_t k = 0; k < plan.a.states.size(); ++k)
      for (int p : plan.a.state_params[k])
        if (!fused.contains({static_cast<int>(k), p}) && !block_runs(plan, static_cast<int>(k), p).empty()) {
          rest.open("");
          rest.line("Scalar* const gp = grad + {};  // the gradient of {}", plan.param_offset[static_cast<std::size_t>(p)],
                    plan.param(p).name);
          block_gradient(plan, rest, rest_tables, static_cast<int>(k), p, "gp", s.delta_prev(static_cast<int>(k), p));
          rest.close();
        }
    if (!rest.str().empty()) {
      body.open("if (grad != nullptr)");
      body.line("// the gradient's terms of the blocks of Delta_(N-1) that no packing above passed over");
      body.append(rest);
      body.close();
    }
    w.line("// The sensitivity update, Eqn. 4: Delta_N = I_N + sum_l D^(kl)_N Delta^l_(N-1), only the blocks");
    w.line("// and cross terms the analysis found nonzero, one parameter group at a time. Given");
    w.line("// prev_state_adjoint (dC/dR_(N-1)) and grad, it also adds the recurrent term of the gradient");
    w.line("// (Eqn. 5, what apply_sensitivity adds) in the same passes over Delta_(N-1): the pass that packs a");
    w.line("// whole block of Delta_(N-1) for a dense product also multiplies it by the adjoint.");
    emit_function(w,
                  "void sensitivity_update([[maybe_unused]] const Scalar* params, [[maybe_unused]] Step& step, "
                  "[[maybe_unused]] const Scalar* delta_prev, [[maybe_unused]] Scalar* delta_next, "
                  "[[maybe_unused]] const Scalar* prev_state_adjoint = nullptr, [[maybe_unused]] Scalar* grad = nullptr) const",
                  s, body);
  }
  {
    Scope s(plan, Scope::Access::read);
    CodeWriter body(2);
    int tables = 0;
    for (std::size_t k = 0; k < plan.a.states.size(); ++k)
      for (int p : plan.a.state_params[k])
        if (!block_runs(plan, static_cast<int>(k), p).empty())
          block_gradient(plan, body, tables, static_cast<int>(k), p, s.gradient(p), s.delta_prev(static_cast<int>(k), p));
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
