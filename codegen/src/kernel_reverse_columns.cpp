// Kernel section: the reverse pass over many adjoint columns at once, for the blocked exact
// learner (loopgrad/runtime/blocked_rtrl.hpp).
//
// At a block end the blocked learner sweeps one adjoint per state unit back through the block's
// steps. One column at a time, every step reads each dense weight matrix once per column and adds
// a rank-one update to each column's gradient row: the rows stream through the caches h times per
// block. Here the columns go together, and the work is split in two:
// - reverse_columns: one step for `count` columns, the adjoints interleaved (entry i of column c at
//   [i * count + c]). A dense connection's adjoint reaches its source as one product
//   (m x n) times (n x count), reading the weights once for all columns. The adjoint at each dense
//   connection is kept (dense_adjoint) instead of being multiplied into the gradient rows.
// - dense_gradients: for up to a few dozen reversed steps at once, every dense connection's
//   parameter term of every column, sum over the steps of (its adjoint) x (its source)^T: one
//   product with the steps as the inner dimension, so each gradient row is written once per call.
// Diagonal, sparse and bias parameters cost O(n) per column and step and go straight into the rows.
// Only groups whose value reaches the state within a step are visited: the seeds are state
// adjoints, so every other group's adjoint is zero.
// The emitter counts the multiplications it writes, per column and per call (the coefficients,
// hoisted out of the loops over the columns); the test suite checks both against the analysis's
// ExactCost::column_reverse_macs and column_call_macs.
#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

// A dense connection leaf on a group whose adjoint can be nonzero, and where its adjoint is kept.
// Leaves of one group with the same coefficient (W_x x + W_h delay(h) + b inside one activation)
// have the same adjoint: the first keeps it (`writes`), the others read it.
struct DenseLeaf {
  int group = -1;
  int op = -1;  // the connect op
  std::size_t rows = 0, cols = 0, row_offset = 0;
  bool writes = true;
};

std::vector<DenseLeaf> dense_leaves(const KernelPlan& plan, const std::vector<bool>& live) {
  std::vector<DenseLeaf> out;
  std::map<std::string, std::size_t> kept;  // group and signed coefficient -> row offset
  Scope scratch(plan, Scope::Access::read);
  std::size_t rows = 0;
  for (auto it = plan.a.group_order.rbegin(); it != plan.a.group_order.rend(); ++it) {
    if (!live[static_cast<std::size_t>(*it)]) continue;
    for (const auto& leaf : plan.leaves[static_cast<std::size_t>(*it)]) {
      const auto& op = plan.op(leaf.op);
      if (op.code != ir::OpCode::connect) continue;
      if (plan.net.connections[static_cast<std::size_t>(op.connection)].kind != ir::ConnectionKind::dense) continue;
      const auto n = static_cast<std::size_t>(op.size), m = static_cast<std::size_t>(plan.op(op.a).size);
      const std::string key = fmt::format("{} {} {}", *it, leaf.sign, scratch.coefficient(leaf, "r"));
      const auto [at, inserted] = kept.emplace(key, rows);
      out.push_back({*it, leaf.op, n, m, at->second, inserted});
      if (inserted) rows += n;
    }
  }
  return out;
}

// Multiplications as emitted: per column and step (dense_gradients' included), and per call
// whatever count is (the coefficients, evaluated once per row).
struct ColumnMacs {
  std::int64_t per_column = 0;
  std::int64_t per_call = 0;
};

// Opens the loop over the leaf's rows (none for n = 0) and hoists its coefficient at `row`, sign
// included, into `k`. Counts the coefficient's multiplications for `rows` rows into macs.per_call
// and returns the multiplications by k per column and row: none where k is the constant +-1.
std::int64_t open_rows(Scope& s, CodeWriter& w, const Leaf& leaf, std::size_t n, std::string_view row, std::int64_t rows,
                       ColumnMacs& macs) {
  const std::string coefficient = s.coefficient(leaf, row);
  std::string k = coefficient.empty() ? "Scalar(1)" : coefficient;
  if (leaf.sign < 0) k = "-(" + k + ")";
  if (n > 0) w.open("for (std::size_t r = 0; r < {}; ++r)", n);
  w.line("const Scalar k = {};", k);
  macs.per_call += rows * static_cast<std::int64_t>(std::count(coefficient.begin(), coefficient.end(), '*'));
  return coefficient.empty() ? 0 : 1;
}

// Column c's adjoint at row `row` of the leaf, times k.
std::string scaled(const std::string& adjoint, std::string_view row) {
  return fmt::format("k * {}[{} * count + c]", adjoint, row);
}

void emit_leaf(const KernelPlan& plan, Scope& s, CodeWriter& w, int g, const Leaf& leaf, const std::vector<DenseLeaf>& dense,
               ColumnMacs& macs) {
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
          const auto it = std::find_if(dense.begin(), dense.end(), [&](const DenseLeaf& d) { return d.op == leaf.op; });
          if (!it->writes && src.empty()) break;  // its adjoint is kept already and reaches nothing else
          w.open("");
          w.line("Scalar* const d = dense_adjoint + {} * count;", it->row_offset);
          if (it->writes) {
            w.line("// its adjoint, kept for dense_gradients; the source's adjoint += {}^T times it", c.name);
            macs.per_column += rows * open_rows(s, w, leaf, n, "r", rows, macs);
            w.line("for (std::size_t c = 0; c < count; ++c) d[r * count + c] = {};", scaled(a, "r"));
            w.close();
          } else {
            w.line("// its adjoint is kept already (the same coefficient); the source's adjoint += {}^T times it", c.name);
          }
          if (!src.empty()) {
            w.line("multiply_add({}, count, {}, {}, 1, {}, d, count, {}, count);", m, n, s.param(c.param), m, src);
            macs.per_column += rows * static_cast<std::int64_t>(m);
          }
          w.close();
          break;
        }
        case ir::ConnectionKind::diagonal: {
          const std::string gW = s.gradient(c.param), W = src.empty() ? "" : s.param(c.param);
          macs.per_column += rows * (open_rows(s, w, leaf, n, "r", rows, macs) + (src.empty() ? 1 : 2));
          w.open("for (std::size_t c = 0; c < count; ++c)");
          w.line("const Scalar d = {};", scaled(a, "r"));
          w.line("{}[c * grad_stride + r] += d * {};", gW, s.ref(op.a, "r"));
          if (!src.empty()) w.line("{}[r * count + c] += {}[r] * d;", src, W);
          w.close();
          w.close();
          break;
        }
        case ir::ConnectionKind::identity:
          if (src.empty()) break;
          macs.per_column += rows * open_rows(s, w, leaf, n, "r", rows, macs);
          w.line("for (std::size_t c = 0; c < count; ++c) {}[r * count + c] += {};", src, scaled(a, "r"));
          w.close();
          break;
        case ir::ConnectionKind::sparse: {
          const std::string gW = s.gradient(c.param), W = src.empty() ? "" : s.param(c.param);
          for (std::size_t e = 0; e < c.mask.size(); ++e) {
            const std::string to = std::to_string(c.mask[e].to), from = std::to_string(c.mask[e].from);
            w.open("");
            macs.per_column += open_rows(s, w, leaf, 0, to, 1, macs) + (src.empty() ? 1 : 2);
            w.open("for (std::size_t c = 0; c < count; ++c)");
            w.line("const Scalar d = {};", scaled(a, to));
            w.line("{}[c * grad_stride + {}] += d * {};", gW, e, s.ref(op.a, from));
            if (!src.empty()) w.line("{}[{} * count + c] += {}[{}] * d;", src, from, W, e);
            w.close();
            w.close();
          }
          break;
        }
      }
      break;
    }
    case ir::OpCode::bias: {
      w.line("// {}: bias {}", plan.group(g).name, plan.param(op.param).name);
      const std::string gb = s.gradient(op.param);
      macs.per_column += rows * open_rows(s, w, leaf, n, "r", rows, macs);
      w.line("for (std::size_t c = 0; c < count; ++c) {}[c * grad_stride + r] += {};", gb, scaled(a, "r"));
      w.close();
      break;
    }
    case ir::OpCode::read:
    case ir::OpCode::read_delayed: {
      const std::string src = source_adjoint(plan, s, leaf.op);
      if (src.empty()) break;
      w.line("// {}: {}", plan.group(g).name, describe(plan, leaf.op));
      macs.per_column += rows * open_rows(s, w, leaf, n, "r", rows, macs);
      w.line("for (std::size_t c = 0; c < count; ++c) {}[r * count + c] += {};", src, scaled(a, "r"));
      w.close();
      break;
    }
    default: break;  // numbers
  }
}

// The register-tiled product both functions use (a static member of the kernel).
constexpr const char* multiply_add_source = R"(  // out (rows x cols, row stride ldo) += A B, where A(i, k) = a[i * ai + k * ak] (rows x inner)
  // and B is (inner x cols, row stride ldb), every tile accumulated over the whole inner dimension
  // before it is stored. With AVX-512, and with AVX2 and FMA under g++ or clang, the rows and
  // columns that fill whole tiles of multiply_rows x multiply_columns (6 rows by four vector
  // registers, 24 accumulators of AVX-512's 32; by two, 12 of AVX2's 16) run in those
  // (multiply_tile), the rest in multiply_add_narrow's tiles of 4 rows by tile_columns; on other
  // targets everything runs in the latter.
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__))
#if defined(__AVX512F__)
  static constexpr std::size_t multiply_rows = 6, multiply_columns = 256 / sizeof(Scalar);
#else
  static constexpr std::size_t multiply_rows = 6, multiply_columns = 64 / sizeof(Scalar);
#endif
  static void multiply_add(std::size_t rows, std::size_t cols, std::size_t inner, const Scalar* a, std::size_t ai,
                           std::size_t ak, const Scalar* b, std::size_t ldb, Scalar* out, std::size_t ldo) {
    const std::size_t tall = rows / multiply_rows * multiply_rows, wide = cols / multiply_columns * multiply_columns;
    if (wide == 0) {
      // Narrower than a tile (count columns of the reverse pass, the gradient's one): every row
      // in multiply_add_narrow's spans of rows.
      multiply_add_narrow(rows, cols, inner, a, ai, ak, b, ldb, out, ldo);
      return;
    }
    for (std::size_t i = 0; i < tall; i += multiply_rows)
      for (std::size_t j0 = 0; j0 < wide; j0 += multiply_columns)
        multiply_tile(inner, a + i * ai, ai, ak, b + j0, ldb, out + i * ldo + j0, ldo);
    if (tall > 0 && wide < cols) multiply_add_narrow(tall, cols - wide, inner, a, ai, ak, b + wide, ldb, out + wide, ldo);
    if (tall < rows) multiply_add_narrow(rows - tall, cols, inner, a + tall * ai, ai, ak, b, ldb, out + tall * ldo, ldo);
  }
  // One tile of multiply_add: out (multiply_rows x multiply_columns, row stride ldo) += A B.
#if defined(__AVX512F__)
  static void multiply_tile(std::size_t inner, const Scalar* a, std::size_t ai, std::size_t ak, const Scalar* b,
                            std::size_t ldb, Scalar* out, std::size_t ldo) {
    Scalar acc[multiply_rows][multiply_columns];
    for (std::size_t i = 0; i < multiply_rows; ++i) for (std::size_t j = 0; j < multiply_columns; ++j) acc[i][j] = out[i * ldo + j];
    for (std::size_t k = 0; k < inner; ++k, a += ak, b += ldb)
      for (std::size_t i = 0; i < multiply_rows; ++i) {
        const Scalar w = a[i * ai];
        for (std::size_t j = 0; j < multiply_columns; ++j) acc[i][j] += w * b[j];
      }
    for (std::size_t i = 0; i < multiply_rows; ++i) for (std::size_t j = 0; j < multiply_columns; ++j) out[i * ldo + j] = acc[i][j];
  }
#else
  // With AVX2 the accumulators are the compiler's vector type (Vector, as in product_tile).
  static constexpr std::size_t tile_vectors = multiply_columns / vector_lanes;
  static void multiply_tile(std::size_t inner, const Scalar* a, std::size_t ai, std::size_t ak, const Scalar* b,
                            std::size_t ldb, Scalar* out, std::size_t ldo) {
    Vector acc[multiply_rows][tile_vectors];
    for (std::size_t i = 0; i < multiply_rows; ++i)
      for (std::size_t v = 0; v < tile_vectors; ++v) std::memcpy(&acc[i][v], out + i * ldo + v * vector_lanes, sizeof(Vector));
    for (std::size_t k = 0; k < inner; ++k, a += ak, b += ldb) {
      Vector x[tile_vectors];
      for (std::size_t v = 0; v < tile_vectors; ++v) std::memcpy(&x[v], b + v * vector_lanes, sizeof(Vector));
      for (std::size_t i = 0; i < multiply_rows; ++i) {
        const Scalar w = a[i * ai];
        for (std::size_t v = 0; v < tile_vectors; ++v) acc[i][v] += w * x[v];
      }
    }
    for (std::size_t i = 0; i < multiply_rows; ++i)
      for (std::size_t v = 0; v < tile_vectors; ++v) std::memcpy(out + i * ldo + v * vector_lanes, &acc[i][v], sizeof(Vector));
  }
#endif
#else
  static void multiply_add(std::size_t rows, std::size_t cols, std::size_t inner, const Scalar* a, std::size_t ai,
                           std::size_t ak, const Scalar* b, std::size_t ldb, Scalar* out, std::size_t ldo) {
    multiply_add_narrow(rows, cols, inner, a, ai, ak, b, ldb, out, ldo);
  }
#endif
  // Column j of `out` over `span` rows (out[q * ldo], A(q, k) = a[q + k * ak]) += A B's column j:
  // accumulated over the whole inner dimension in registers, A read row after row (with AVX2, in
  // the compiler's vector type, as multiply_tile).
  template <std::size_t span>
  static void column_span(std::size_t inner, const Scalar* a, std::size_t ak, const Scalar* b, std::size_t ldb,
                          Scalar* out, std::size_t ldo) {
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
    if constexpr (span % vector_lanes == 0) {
      Vector acc[span / vector_lanes];
      for (std::size_t v = 0; v < span / vector_lanes; ++v) {
        Scalar column[vector_lanes];
        for (std::size_t q = 0; q < vector_lanes; ++q) column[q] = out[(v * vector_lanes + q) * ldo];
        std::memcpy(&acc[v], column, sizeof(Vector));
      }
      for (std::size_t k = 0; k < inner; ++k) {
        const Scalar x = b[k * ldb];
        const Scalar* const w = a + k * ak;
        for (std::size_t v = 0; v < span / vector_lanes; ++v) {
          Vector wv;
          std::memcpy(&wv, w + v * vector_lanes, sizeof(Vector));
          acc[v] += wv * x;
        }
      }
      for (std::size_t v = 0; v < span / vector_lanes; ++v) {
        Scalar column[vector_lanes];
        std::memcpy(column, &acc[v], sizeof(Vector));
        for (std::size_t q = 0; q < vector_lanes; ++q) out[(v * vector_lanes + q) * ldo] = column[q];
      }
      return;
    }
#endif
    Scalar acc[span];
    for (std::size_t q = 0; q < span; ++q) acc[q] = out[q * ldo];
    for (std::size_t k = 0; k < inner; ++k) {
      const Scalar x = b[k * ldb];
      const Scalar* const w = a + k * ak;
      for (std::size_t q = 0; q < span; ++q) acc[q] += w[q] * x;
    }
    for (std::size_t q = 0; q < span; ++q) out[q * ldo] = acc[q];
  }
  // multiply_add_narrow's products of `cols` (1 to n) columns: out(i, j) = out[i * ldo + j * ldc]
  // (ldc = 1, or ldo = 1 for a transposed product). The column count is a template argument,
  // dispatched here from n down to 1, so that the compiler's vector code covers the columns
  // exactly with no condition per lane. Four rows at a time (four independent chains of
  // additions), each summed over the whole inner dimension in registers and added to `out` once.
  template <std::size_t n>
  static void narrow_rows(std::size_t cols, std::size_t rows, std::size_t inner, const Scalar* a, std::size_t ai,
                          std::size_t ak, const Scalar* b, std::size_t ldb, Scalar* out, std::size_t ldo,
                          std::size_t ldc) {
    if constexpr (n > 1)
      if (cols != n) return narrow_rows<n - 1>(cols, rows, inner, a, ai, ak, b, ldb, out, ldo, ldc);
    if (cols != n) return;
    std::size_t i = 0;
    for (; i + 4 <= rows; i += 4) {
      Scalar acc[4][n] = {};
      for (std::size_t k = 0; k < inner; ++k) {
        const Scalar* const x = b + k * ldb;
        for (std::size_t r = 0; r < 4; ++r) {
          const Scalar w = a[(i + r) * ai + k * ak];
          for (std::size_t j = 0; j < n; ++j) acc[r][j] += w * x[j];
        }
      }
      for (std::size_t r = 0; r < 4; ++r)
        for (std::size_t j = 0; j < n; ++j) out[(i + r) * ldo + j * ldc] += acc[r][j];
    }
    // The last rows (rows % 4 of them: so bounded, g++ 12 sees no overflow of i * ldo to warn of).
    for (std::size_t left = 0; left < rows % 4; ++left, ++i) {
      Scalar acc[n] = {};
      for (std::size_t k = 0; k < inner; ++k) {
        const Scalar w = a[i * ai + k * ak];
        for (std::size_t j = 0; j < n; ++j) acc[j] += w * b[k * ldb + j];
      }
      for (std::size_t j = 0; j < n; ++j) out[i * ldo + j * ldc] += acc[j];
    }
  }
  // multiply_add in register tiles of 4 rows by tile_columns columns; narrower products in spans
  // of rows (column_span) or in narrow_rows.
  static void multiply_add_narrow(std::size_t rows, std::size_t cols, std::size_t inner, const Scalar* a, std::size_t ai,
                           std::size_t ak, const Scalar* b, std::size_t ldb, Scalar* out, std::size_t ldo) {
    const std::size_t rows4 = rows / 4 * 4, tiled = cols / tile_columns * tile_columns;
    if (tiled == 0 && ai == 1) {
      // Fewer columns than a register tile, and A's columns contiguous (transposed weights): each
      // column of `out` in spans of 4 * tile_columns rows, then of tile_columns, the last rows
      // (fewer than tile_columns) in narrow_rows. Every entry of `out` is loaded and stored once,
      // not once per step of the inner dimension.
      const std::size_t wide_spans = rows / (4 * tile_columns) * (4 * tile_columns);
      const std::size_t spans = wide_spans + (rows - wide_spans) / tile_columns * tile_columns;
      const std::size_t rest = rows - spans;
      for (std::size_t j = 0; j < cols; ++j) {
        for (std::size_t i0 = 0; i0 < wide_spans; i0 += 4 * tile_columns)
          column_span<4 * tile_columns>(inner, a + i0, ak, b + j, ldb, out + i0 * ldo + j, ldo);
        for (std::size_t i0 = wide_spans; i0 < spans; i0 += tile_columns)
          column_span<tile_columns>(inner, a + i0, ak, b + j, ldb, out + i0 * ldo + j, ldo);
      }
      // The last rows as the transposed product out^T = B^T A^T, `rest` columns wide.
      if (rest > 0) narrow_rows<tile_columns - 1>(rest, cols, inner, b, 1, ldb, a + spans, ak, out + spans * ldo, 1, ldo);
      return;
    }
    if (tiled == 0) {
      // Narrower than a register tile (a few columns, the dense gradients of small sources).
      narrow_rows<tile_columns - 1>(cols, rows, inner, a, ai, ak, b, ldb, out, ldo, 1);
      return;
    }
    for (std::size_t i = 0; i < rows4; i += 4) {
      for (std::size_t j0 = 0; j0 < tiled; j0 += tile_columns) {
        Scalar* const t = out + i * ldo + j0;
        Scalar a0[tile_columns], a1[tile_columns], a2[tile_columns], a3[tile_columns];
        for (std::size_t j = 0; j < tile_columns; ++j) { a0[j] = t[j]; a1[j] = t[ldo + j]; a2[j] = t[2 * ldo + j]; a3[j] = t[3 * ldo + j]; }
        for (std::size_t k = 0; k < inner; ++k) {
          const Scalar* const w = a + i * ai + k * ak;
          const Scalar w0 = w[0], w1 = w[ai], w2 = w[2 * ai], w3 = w[3 * ai];
          const Scalar* const x = b + k * ldb + j0;
          for (std::size_t j = 0; j < tile_columns; ++j) { a0[j] += w0 * x[j]; a1[j] += w1 * x[j]; a2[j] += w2 * x[j]; a3[j] += w3 * x[j]; }
        }
        for (std::size_t j = 0; j < tile_columns; ++j) { t[j] = a0[j]; t[ldo + j] = a1[j]; t[2 * ldo + j] = a2[j]; t[3 * ldo + j] = a3[j]; }
      }
    }
    // The rest row by row: the last columns of the tiled rows, then every column of the rows past
    // them.
    for (std::size_t i = 0; i < rows; ++i)
      for (std::size_t k = 0; k < inner; ++k) {
        const Scalar w = a[i * ai + k * ak];
        const Scalar* const x = b + k * ldb;
        for (std::size_t j = i < rows4 ? tiled : 0; j < cols; ++j) out[i * ldo + j] += w * x[j];
      }
  }

)";

}  // namespace

std::pair<std::int64_t, std::int64_t> emit_reverse_columns(const KernelPlan& plan, std::string& out) {
  ColumnMacs macs;
  const auto& live = plan.a.reaches_state;
  const auto dense = dense_leaves(plan, live);
  std::size_t dense_rows = 0, gradient_workspace = 0;  // per step of the latter: the widest source
  for (const auto& d : dense) {
    if (d.writes) dense_rows += d.rows;
    gradient_workspace = std::max(gradient_workspace, d.cols);
  }

  CodeWriter w(1);
  w.line("// The reverse pass over many adjoint columns at once, for the blocked exact learner (the rows of");
  w.line("// Delta at a block end: one column per state unit). Each call reverses one step for `count` columns");
  w.line("// of state adjoints, entry i of column c at [i * count + c]. Dense connections keep their adjoint in");
  w.line("// `dense_adjoint` (dense_adjoint_rows * count values) for dense_gradients, which adds their parameter");
  w.line("// terms for many steps at once; the other parameters' terms go straight into the gradient rows");
  w.line("// (column c's at grad + c * grad_stride). `work` holds column_workspace(count, n_steps) values.");
  w.line("static constexpr std::size_t dense_adjoint_rows = {};", dense_rows);
  w.line("static constexpr std::size_t column_workspace(std::size_t count, std::size_t n_steps) {{");
  w.line("  return {} * count > {} * n_steps ? {} * count : {} * n_steps;", plan.adjoint_size, gradient_workspace,
         plan.adjoint_size, gradient_workspace);
  w.line("}}");
  out += w.str();
  out += multiply_add_source;

  {
    CodeWriter fw(1);
    Scope s(plan, Scope::Access::read);
    s.interleave_columns();
    CodeWriter body(2);
    body.line("for (std::size_t i = 0; i < {} * count; ++i) adjoint[i] = 0;", plan.adjoint_size);
    body.line("for (std::size_t i = 0; i < n_state * count; ++i) prev_state_adjoint[i] = 0;");
    for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
      const int g = plan.a.states[k];
      body.line("for (std::size_t i = 0; i < {} * count; ++i) {}[i] += state_adjoint[{} * count + i];", plan.group(g).size,
                s.adjoint(g), plan.state_offset[k]);
    }
    for (auto it = plan.a.group_order.rbegin(); it != plan.a.group_order.rend(); ++it)
      if (live[static_cast<std::size_t>(*it)])
        for (const auto& leaf : plan.leaves[static_cast<std::size_t>(*it)]) emit_leaf(plan, s, body, *it, leaf, dense, macs);
    emit_function(fw,
                  "void reverse_columns([[maybe_unused]] const Scalar* params, [[maybe_unused]] const Step& step, "
                  "std::size_t count, [[maybe_unused]] const Scalar* state_adjoint, Scalar* prev_state_adjoint, "
                  "[[maybe_unused]] Scalar* grad, [[maybe_unused]] std::size_t grad_stride, "
                  "[[maybe_unused]] Scalar* dense_adjoint, Scalar* work) const",
                  s, body, {"Scalar* const adjoint = work;"});
    fw.blank();
    out += fw.str();
  }

  CodeWriter gw(1);
  gw.line("// Adds the dense connections' parameter terms of `n_steps` steps reversed by reverse_columns to the");
  gw.line("// gradient rows: steps[k]'s adjoints at dense_adjoint + k * dense_adjoint_rows * count. For every");
  gw.line("// column, weight W gets the sum over the steps of (its adjoint) x (its source)^T, one product with");
  gw.line("// the steps as the inner dimension.");
  gw.open("void dense_gradients([[maybe_unused]] const Step* const* steps, [[maybe_unused]] std::size_t n_steps, "
          "[[maybe_unused]] std::size_t count, [[maybe_unused]] const Scalar* dense_adjoint, [[maybe_unused]] Scalar* grad, "
          "[[maybe_unused]] std::size_t grad_stride, [[maybe_unused]] Scalar* work) const");
  for (const auto& d : dense) {
    const auto& op = plan.op(d.op);
    const auto& c = plan.net.connections[static_cast<std::size_t>(op.connection)];
    gw.line("// {}: {}", plan.group(d.group).name, describe(plan, d.op));
    gw.open("");
    gw.line("Scalar* const x = work;  // the source at every step: n_steps x {}", d.cols);
    gw.open("for (std::size_t k = 0; k < n_steps; ++k)");
    {
      Scope s(plan, Scope::Access::read);
      CodeWriter body(gw.indent());
      body.line("for (std::size_t s = 0; s < {}; ++s) x[k * {} + s] = {};", d.cols, d.cols, s.ref(op.a, "s"));
      gw.line("const Step& step = *steps[k];");
      for (const auto& decl : s.declarations()) gw.raw_line(decl);
      gw.append(body);
    }
    gw.close();
    const std::size_t at = plan.param_offset[static_cast<std::size_t>(c.param)];
    gw.line("// Column c's adjoint of row r at step k is dense_adjoint[k * dense_adjoint_rows * count + ({} + r) * count + c].", d.row_offset);
    gw.line("// Many columns (16 or more) and a source that fills whole register tiles: row r of every column");
    gw.line("// at once, (count x n_steps) times the sources (n_steps x {}). Otherwise (the gradient's single", d.cols);
    gw.line("// column, a narrow source) column by column: ({} x n_steps) times the sources, into the column's", d.rows);
    gw.line("// rows of the weight, which lie together, so that the product's rows fill register tiles.");
    gw.line("if (count >= 16 && {} % (256 / sizeof(Scalar)) == 0)", d.cols);
    gw.line("  for (std::size_t r = 0; r < {}; ++r)", d.rows);
    gw.line("    multiply_add(count, {}, n_steps, dense_adjoint + ({} + r) * count, 1, dense_adjoint_rows * count, x, {}, grad + {} + r * {}, grad_stride);",
            d.cols, d.row_offset, d.cols, at, d.cols);
    gw.line("else");
    gw.line("  for (std::size_t c = 0; c < count; ++c)");
    gw.line("    multiply_add({}, {}, n_steps, dense_adjoint + {} * count + c, count, dense_adjoint_rows * count, x, {}, grad + c * grad_stride + {}, {});",
            d.rows, d.cols, d.row_offset, d.cols, at, d.cols);
    gw.close();
    macs.per_column += static_cast<std::int64_t>(d.rows * d.cols);
  }
  gw.close();
  gw.blank();
  out += gw.str();
  return {macs.per_column, macs.per_call};
}

}  // namespace loopgrad::emit::detail
