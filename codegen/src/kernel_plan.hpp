#pragma once
// What every section of the kernel emitter shares: the layouts of the flat arrays and the names
// the emitted code gives to them. Each group's expression comes decomposed into leaves by the
// analysis (analysis::Leaf): the reverse pass scales the group's adjoint by a leaf's coefficient,
// the sensitivity update scales the leaf's tangent rows by it, so neither needs the inner ops'
// tangents or adjoints stored.
#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "code_writer.hpp"
#include "loopgrad/analysis/analysis.hpp"
#include "loopgrad/emit/kernel.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::emit::detail {

using analysis::Leaf;

struct KernelPlan {
  KernelPlan(const ir::Network& network, const analysis::Analysis& analysis, const KernelOptions& options);

  const ir::Network& net;
  const analysis::Analysis& a;
  KernelOptions options;
  std::string scalar;  // "float" or "double"

  std::vector<std::size_t> param_offset;              // per parameter group
  std::vector<std::size_t> input_offset;              // per group (inputs only)
  std::vector<std::size_t> target_offset;             // per group (outputs only)
  std::vector<std::size_t> state_offset;              // per state index k
  std::vector<std::vector<std::size_t>> sensitivity_offset;  // [k][i], block (k, a.state_params[k][i])
  std::vector<long> value_offset;                     // per op: its array in Step::values, or -1
  std::vector<std::size_t> adjoint_offset;            // per group (neurons only)
  const std::vector<std::vector<Leaf>>& leaves;       // per group, the analysis's
  // The sensitivity update evaluates each coefficient it needs once per step into the workspace:
  // offset per leaf op, -1 where the coefficient is +-1 or unused.
  std::vector<long> coefficient_offset;
  // Where a dense leaf's weights, scaled by its coefficient, are kept during one block.
  // Diagonal and sparse leaves keep their weights scaled by the coefficient there too.
  std::size_t scaled_weights_offset = 0;
  // Where a dense product packs its weights (in micro-panels of product_rows rows, at most
  // (n + 7) x m values) and then its source's column panel (m x column_tile(m)), kernel_sensitivity.
  std::size_t pack_offset = 0;
  // Columns of the panels of a dense product with inner dimension m: a source panel of m rows
  // stays within 768 KiB (in L2), 96 to 960 columns, a multiple of 96 so that every ISA's
  // product_columns (4 to 48) divides it.
  std::size_t column_tile(std::size_t m) const;
  // Whether an n x m dense product over `cols` columns runs in register tiles (Kernel::product_tile)
  // rather than row by row: 8 rows and 8 columns at least. Narrower blocks go through one edge
  // tile (a bias's block of an Elman 16 is 16 x 16): at most two thirds of a tile wasted, still
  // far cheaper than the row-by-row loop, which the compiler must assume may alias T.
  static bool tiled_product(std::size_t n, std::size_t cols) { return n >= 8 && cols >= 8; }
  // Whether a dense product with inner dimension m reads its source (row stride `cols`) in place
  // rather than packing it: a micro-panel of its m rows (product_columns wide, at most 192 bytes,
  // so 4 cache lines when not aligned to one) fits in a 32 KiB, 8-way L1 of 64 sets without any
  // set holding more than its 8 ways, and in half of it in all. Every row of tiles after the first
  // then reads it from L1, and the packing's copy of the source is saved (Elman 16's blocks).
  bool source_in_place(std::size_t m, std::size_t cols) const;
  // Values the packed weights of an n x m dense product take: n rounded up to product_rows rows
  // (at most 8 on any ISA) times m.
  static std::size_t packed_weights(std::size_t n, std::size_t m) { return (n + 7) * m; }
  // Column panels. Where every tangent block of parameter group p is full and every leaf that adds
  // to them is a dense product over a full source, a pass over a block of the same (full)
  // pattern, or an immediate block, column j of every block depends only on column j of the
  // blocks it reads. The sensitivity update then forms all of p's blocks one panel of columns at
  // a time (kernel_sensitivity), the panel's part of every block staying in L2 from the product
  // that writes it to the pass that reads it, and each source panel packed once for every product
  // that reads it. panel_columns(p): the panel's width (a multiple of 96), 0 where block p is
  // formed a whole block at a time. panel_pack(p): the values its packed operands take.
  std::size_t panel_columns(int p) const;
  std::size_t panel_pack(int p) const;
  // Whether a leaf of group g passes over a source block with g's own pattern for p, entry for
  // entry: a read of a group or of a delayed state, an identity connection, or a diagonal one with
  // an unscaled weight and no immediate block of p. Such leaves form one fused pass.
  bool same_pattern_leaf(int g, const Leaf& leaf, int p) const;
  std::vector<int> outputs;                           // output groups, declaration order
  std::vector<std::vector<std::size_t>> row_start;  // per analysis pattern: rows + 1 offsets
  std::size_t sensitivity_block_size = 0;  // every stored block full: the interpreter's layout
  std::size_t param_count = 0, input_size = 0, target_size = 0, state_size = 0, sensitivity_size = 0,
              values_size = 0, adjoint_size = 0, tangent_size = 0;
  // Step::values also keeps the step's inputs and previous state, for the passes after forward.
  std::size_t input_copy_offset = 0, state_copy_offset = 0;

  const ir::Group& group(int g) const { return net.groups[static_cast<std::size_t>(g)]; }
  const ir::Op& op(int i) const { return net.ops[static_cast<std::size_t>(i)]; }
  const ir::Param& param(int p) const { return net.params[static_cast<std::size_t>(p)]; }
  int state_of(int g) const { return a.state_index[static_cast<std::size_t>(g)]; }
  std::size_t sensitivity_block(int k, int p) const;  // offset of block (k, p)
  // The neuron-level pattern of the tangent block d group / d P_p (a state's is its Delta's):
  // the kernel stores its entries row after row, each row's runs in column order.
  const analysis::Pattern& pattern(int g, int p) const { return a.pattern(g, p); }
  // Where column `col` of row `r` of pattern (g, p) is stored, from the block's start; the
  // column must be in the pattern.
  std::size_t position(int g, int p, std::size_t r, std::int64_t col) const;
  bool has_tangent(int op, int p) const;              // p in a.op_tangent[op]
  // Entries of block p that a leaf carries into its group (analysis::carried_entries).
  std::int64_t carried(int leaf_op, int p) const { return analysis::carried_entries(net, a, leaf_op, p); }
  // Whether a leaf adds to the tangent block of parameter group p.
  bool contributes(const Leaf& leaf, int p) const;
  // Groups whose tangent block for parameter group p is formed (has entries), in evaluation order.
  std::vector<int> tangent_groups(int p) const;
};

// The names the emitted code uses. Every array gets a prefix, so no user name can collide with a
// local of the emitted code: p_ parameters, g_ gradient, in_ inputs, t_ targets, r_ previous
// state, v_ group values, tmpN other op values, a_ adjoints, ra_ adjoints of the previous state,
// dp_/dn_ sensitivity blocks before and after the step, T_ tangent blocks.
// A Scope records which arrays a function body uses and declares exactly those at its top.
// Access::write is forward(): it writes the step's values and reads inputs and the previous state
// from its arguments; Access::read is every later pass: it reads all of them from the step.
class Scope {
 public:
  enum class Access { read, write };
  Scope(const KernelPlan& plan, Access values) : plan_(plan), values_(values) {}
  // For the reverse pass over many adjoint columns (reverse_columns): every adjoint array holds
  // `count` columns interleaved, entry i of column c at [i * count + c].
  void interleave_columns() { columns_ = true; }

  std::string param(int p);
  std::string gradient(int p);
  std::string input(int g);
  std::string target(int g);
  std::string prev_state(int g);
  std::string value(int op);  // the array of an op that has one
  std::string adjoint(int g);
  std::string prev_adjoint(int g);
  std::string delta_prev(int k, int p);
  std::string delta_next(int k, int p);
  // The C++ expression of op's value at index `row`.
  std::string ref(int op, std::string_view row);
  // An activation rule's source for op (an activate op) at `row`.
  std::string activation_source(std::string_view source, int op, std::string_view row);
  // The coefficient of a leaf at `row` without its sign: "" when it is 1.
  std::string coefficient(const Leaf& leaf, std::string_view row);

  std::vector<std::string> declarations() const { return declarations_; }

 private:
  std::string declare(const std::string& name, const std::string& declaration);
  const KernelPlan& plan_;
  Access values_;
  bool columns_ = false;
  std::set<std::string> declared_;
  std::vector<std::string> declarations_;
};

// Appends `signature {`, the declarations the body's scope used, the body and `}`.
// `preamble` lines come before the declarations (locals the declarations point into).
void emit_function(CodeWriter& out, const std::string& signature, const Scope& scope, const CodeWriter& body,
                   const std::vector<std::string>& preamble = {});

std::string describe(const KernelPlan& plan, int op);  // "W_hh * delay(h)", for comments
// Where a reverse pass adds the adjoint of a connection's source (or of a read leaf) for the read
// op `read_op`: the previous state's adjoint for a delayed read, "" for an input (nowhere).
std::string source_adjoint(const KernelPlan& plan, Scope& s, int read_op);
std::string literal(double value);                      // "Scalar(0.5)"

// An output's loss weight as the loss and its gradient are emitted: `comment` is ", weight 0.5"
// (or "" for weight 1), `apply(term)` is "Scalar(0.5) * (term)" (or `term` for weight 1).
struct LossWeight {
  std::string comment;
  std::string apply(const std::string& term) const;
  double value = 1;
};
LossWeight loss_weight(const ir::Group& output);
// One term of an element-wise loss rule's source (`ir::LossRule::value_source` or
// `gradient_source`) at element i of the output `y` and its target `t`, weighted.
std::string elementwise_loss_term(const ir::Group& output, std::string_view source, const std::string& y,
                                  const std::string& t);

// Multiplications per step as the emitter wrote them, section by section; the header states them
// and the test suite checks each against the analysis's count.
struct EmittedMacs {
  std::int64_t update = 0;       // sensitivity_update
  std::int64_t reverse = 0;      // reverse
  std::int64_t column = 0;       // reverse_columns and dense_gradients, per column
  std::int64_t column_call = 0;  // reverse_columns, per call whatever the column count
};

// The sections of the header, each appending to `out`.
// Sizes and storage types, and the multiplications as emitted.
void emit_layout(const KernelPlan& plan, const EmittedMacs& emitted, std::string& out);
void emit_forward(const KernelPlan& plan, std::string& out);      // forward, next_state, loss
// reverse; returns its multiplications per step.
std::int64_t emit_reverse(const KernelPlan& plan, std::string& out);
// reverse_columns and dense_gradients, the reverse pass over many adjoint columns; returns their
// multiplications per column and step, and reverse_columns' per call.
std::pair<std::int64_t, std::int64_t> emit_reverse_columns(const KernelPlan& plan, std::string& out);
// sensitivity_update and apply_sensitivity; returns the multiplications per step of the update.
std::int64_t emit_sensitivity(const KernelPlan& plan, std::string& out);
void emit_batch(std::string& out);  // Stream, rtrl_step_batch, BatchPool

}  // namespace loopgrad::emit::detail
