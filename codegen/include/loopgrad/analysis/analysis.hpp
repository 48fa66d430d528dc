#pragma once
// The analysis result: one plain value that the interpreter and every emitter read. It is built
// by analyse(), which runs the passes in order (Halide's Lower.cpp style):
//   validate -> classify (evaluation order, algebraic loops, edge classes, loss reachability)
//            -> find_loops (states, cross terms, loops and their order, Recurrency-Abstraction)
//            -> plan_sensitivity (sensitivity blocks, per-op tangent blocks, MAC and memory counts)
//            -> plan_exact_cost (RTRL against the blocked exact algorithm, the best block length)
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "loopgrad/ir/network.hpp"

namespace loopgrad::analysis {

/// Raised for a network that cannot be evaluated, such as a cycle without a delay. The message
/// names the neurons involved and says what to change.
class AnalysisError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The class of a connection (docs/design.md, "Edge classes").
enum class EdgeClass {
  feed_forward,  ///< non-delayed and its target can influence a loss
  feed_back,     ///< reads a delayed value and its target can influence a loss
  terminating,   ///< its target can influence no loss
};
const char* to_string(EdgeClass c);  ///< "feed_forward", "feed_back", "terminating"

/// A recurrent loop: one strongly connected component of the state graph (edge l -> k where the
/// cross term D^{kl} is nonzero). `order` is its position in the topological order of the
/// condensation, which makes D block lower-triangular.
struct Loop {
  std::vector<int> states;  ///< group indices, declaration order
  int order = 0;  ///< position in the topological order of the condensation
  bool self_recurrent = false;  ///< false for a lone state that no cross term feeds back into
};

/// D^{kl} = dR^k_N / dR^l_{N-1}: nonzero iff a path inside one step leads from delay(l) to k.
struct CrossTerm {
  int to = -1;    ///< k (group index)
  int from = -1;  ///< l
  bool nonzero = false;  ///< structurally nonzero: the kernel computes it
};

/// The block of Delta^k = dR^k/dP that belongs to parameter group `param`.
struct SensitivityBlock {
  int state = -1;  ///< group index
  int param = -1;  ///< parameter group index
  bool nonzero = false;  ///< stored and updated: the parameter reaches the state and the state a loss
  /// Entries of the block that are structurally nonzero at neuron level, the values the kernel
  /// stores (Analysis::pattern(state, param)). At most state size x parameter group size; 0 when
  /// the block is not stored.
  std::int64_t nonzeros = 0;
};

/// A leaf of a group's expression: an op that is not element-wise arithmetic (a connection, a
/// bias, a group read, a delay, a number) with the element-wise ops on its way to the group's
/// value. Since +, -, * and activations act element by element, d value[r] / d leaf[r] is
/// `sign` times the product of the path's factors (the other operand of a *, f'(z) of an
/// activation): the leaf's coefficient. The reverse pass scales the group's adjoint by it, the
/// sensitivity update scales each leaf's tangent rows by it.
struct Leaf {
  int op = -1;  ///< the leaf's op (index into ir::Network::ops)
  int sign = 1;  ///< +1 or -1: the signs of the subtractions on the path
  std::vector<int> path;            ///< ops from the leaf's parent up to the group's value op
  bool constant_coefficient = true; ///< the coefficient is sign * 1: no factor on the path
  int coefficient_multiplies = 0;   ///< multiplications to evaluate the coefficient, per element
};

/// Columns [begin, end) of one row of a tangent block.
struct Run {
  std::int64_t begin = 0;  ///< the first column
  std::int64_t end = 0;    ///< one past the last column
  friend bool operator==(const Run&, const Run&) = default;  ///< equal columns
};

/// Which entries of a tangent block d group / d P_param can ever be nonzero, row by row (one row
/// per neuron of the group): sorted, disjoint, non-adjacent runs of columns. Diagonal and sparse
/// connections and element-wise products keep tangent blocks row-sparse; dense connections fill
/// them. The kernel stores and updates exactly these entries, row after row.
struct Pattern {
  int group = -1;  ///< the group (index into ir::Network::groups)
  int param = -1;  ///< the parameter group (index into ir::Network::params)
  std::int64_t cols = 0;  ///< the parameter group's size: the block's width
  std::vector<std::vector<Run>> rows;  ///< per neuron of the group, its runs
  std::int64_t nonzeros = 0;  ///< entries in all runs

  /// Every entry can be nonzero.
  bool full() const { return nonzeros == cols * static_cast<std::int64_t>(rows.size()); }
  /// Every row has the same runs.
  bool uniform() const;
};

/// The exact algorithms loopgrad offers for the recurrent part of the gradient; both give RTRL's
/// gradient at every step, to rounding.
enum class ExactAlgorithm {
  rtrl,     ///< Delta every step (Eqn. 4): runtime::ExactRtrl
  blocked,  ///< Delta every h steps, reverse sweeps within the block: runtime::BlockedRtrl
};
const char* to_string(ExactAlgorithm algorithm);  ///< "rtrl", "blocked"

/// The cost model of the exact algorithms, per step with a gradient every step. RTRL: one reverse
/// pass, the sensitivity update and the gradient's pass over Delta. Blocked at block length h
/// (loopgrad/runtime/blocked_rtrl.hpp): at the block end one reverse sweep of h steps per row of Delta (32
/// rows at a time, one call per step for 32 columns) and one product of the rows' adjoints with
/// Delta_s, amortised over h steps; per step a sweep back to the block start ((h + 1) / 2 reverse
/// passes on average) and one pass over Delta_s.
///
/// Multiply-adds do not cost the same everywhere: the sensitivity update's dense products run from
/// registers, while a reverse pass does two multiply-adds per weight with a load and a store each,
/// and a pass over Delta with one adjoint reads a value from memory per multiply-add; a dense
/// product over a few source units is bound by the values it writes. The cost (`*_cost`) weighs
/// each kind by its measured price relative to the update's multiply-add (ExactCostWeights,
/// measured with loopgrad_bench: docs/benchmarks.md), and the choice goes by the cost.
/// Where a pass's data stays in cache, its values cost less: a reverse pass whose multiply-adds
/// number at most ExactCostWeights::cached_reverse_macs reads weights that stay in the core's L2
/// cache from one step to the next (Elman 64's W_hh, 32 KiB), and a Delta of at most
/// cached_delta_values values stays in the last-level cache (Elman 64's, 2.4 MB of doubles); the
/// larger ones stream from the last-level cache and from memory. The thresholds count values, not
/// bytes: the analysis does not know the scalar type (4 MiB of floats, 8 MiB of doubles).
///
/// The defaults were fitted to loopgrad_bench on the project's machine (AMD EPYC Zen 3, AVX2,
/// 1 MiB L2 per core, 32 MiB L3), last on 2026-12-04 against one filtered run of a6c48c3: the
/// model's blocked/RTRL cost ratio at its block length against the measured time ratio on all 15
/// benchmarked networks with both rows (Elman 16-512, stacked, LSTM, GRU, the diagonal layer,
/// three random networks; double and float), least squares in the logarithm over a grid, and the
/// background block length against the shortest one at which the block end measured to fit
/// (docs/benchmarks.md). They put every choice on the faster algorithm. Without the cached
/// weights the background block length of Elman 64 came out 26 where the block end fits only from
/// about 45 (every block's last step then waited 3-5 ms for the second thread): its caller's steps
/// cost half what the streaming weights say, since W_hh and Delta stay in cache.
struct ExactCostWeights {
  double reverse = 3;          ///< a reverse pass's multiply-add (one adjoint: the gradient's sweep)
  /// the same for a reverse pass of at most cached_reverse_macs multiply-adds: its weights stay in
  /// the core's L2 cache between passes
  double cached_reverse = 1.5;
  std::int64_t cached_reverse_macs = 32768;  ///< see cached_reverse (about 16,000 weights)
  double block_reverse = 1.5;  ///< the same in the block end's sweeps, a chunk of adjoints at once
  double delta_pass = 6;       ///< a multiply-add of a pass over Delta with one adjoint (Eqn. 5)
  /// the same for a Delta of at most cached_delta_values values, which stays in the last-level cache
  double cached_delta_pass = 3;
  std::int64_t cached_delta_values = std::int64_t{1} << 20;  ///< see cached_delta_pass
  double block_product = 2;    ///< a multiply-add of the block end's product, a chunk of rows at a time
  double reverse_call = 1000;  ///< per reverse pass, beyond its adjoint and state values (per 32 in the block end)
  /// per value a dense product writes: the update's (Analysis::product_output_values) every step,
  /// the block end's product with Delta_s (|Delta| values) every block
  double product_output = 8;
  /// What a background block end costs beyond its work: starting its thread (about 36 us measured
  /// for a std::async round trip) and the first touches of its buffers. It decides the background
  /// block length of small networks only: on Elman 64 it is about 2% of a block end.
  double background_start = 2e6;
  /// The background schedule's block end, on a second thread, is taken to fit when it costs at
  /// most this share of the next block's h steps: the two threads share the memory bus and the
  /// last-level cache. At 1, Elman 256's pick (85) let a block end overrun in one run of three
  /// (its next block's last step 3.7x the median); at 0.8 (105) none did, at the same mean step.
  double background_headroom = 0.8;
};

/// The cost model's figures for one network: each exact algorithm's work per step, the best block
/// length and the choice (Analysis::exact_cost, reported in the JSON, the DOT legend and the
/// generated header).
struct ExactCost {
  std::int64_t reverse_macs = 0;      ///< one step's reverse pass, as the kernel evaluates it
  /// The block end's sweeps (a generated kernel's reverse_columns and dense_gradients): one step
  /// per column, over the groups that reach the state (the seeds are state adjoints), and the
  /// coefficients, evaluated once per call for all its columns.
  std::int64_t column_reverse_macs = 0;
  std::int64_t column_call_macs = 0;  ///< the coefficients' multiply-adds per reverse_columns call
  std::int64_t reverse_values = 0;    ///< values a reverse pass clears: every group's adjoint and the state's
  std::int64_t sensitivity_rows = 0;  ///< state units whose row of Delta stores anything
  std::int64_t rtrl_macs = 0;         ///< reverse_macs + macs_per_step + gradient_macs_per_step
  int block_length = 1;               ///< the h that minimises the blocked algorithm's cost
  /// The h for BlockSchedule::background: the least h at which the block end, on its own thread,
  /// takes no longer than the next block's h steps on the caller's (background_cost_per_step),
  /// with ExactCostWeights::background_headroom to spare.
  int background_block_length = 1;
  std::int64_t blocked_macs = 0;      ///< at block_length
  double rtrl_cost = 0;               ///< in multiply-adds of the sensitivity update
  double blocked_cost = 0;            ///< likewise, at block_length
  ExactAlgorithm choice = ExactAlgorithm::rtrl;  ///< the one of lower cost
};

/// Everything the analysis finds in an ir::Network: edge classes, loops and their order, cross
/// terms, sensitivity blocks and their neuron-level patterns, and the cost figures. What the
/// emitters read; made by analyse().
struct Analysis {
  /// classify
  std::vector<int> group_order;              ///< evaluation order of neuron groups in one step
  std::vector<EdgeClass> connection_class;   ///< per connection
  std::vector<bool> influences_loss;         ///< per group, over any number of steps
  std::vector<bool> param_reaches_loss;      ///< per parameter group
  std::vector<int> unreachable_params;       ///< parameter groups that reach no loss

  /// find_loops
  std::vector<std::vector<bool>> reaches_within_step;  ///< [g][h]: a path of non-delayed
                                                       ///< connections leads from g to h (g == h too)
  std::vector<int> states;                   ///< groups read through delay(), declaration order
  std::vector<int> state_index;              ///< per group: position in `states`, or -1
  /// Per group: a neuron group whose adjoint can be nonzero in a reverse sweep seeded with state
  /// adjoints alone (the states, and every neuron group that reaches one within a step): the
  /// groups the blocked learner's block-end sweep visits (reverse_columns, ExactCost).
  std::vector<bool> reaches_state;
  std::vector<CrossTerm> cross_terms;        ///< every ordered pair of states, (to, from) row-major
  std::vector<Loop> loops;                   ///< in evaluation order
  std::vector<std::pair<int, int>> recurrency_abstraction_violations;  ///< both D^{kl}, D^{lk} != 0

  /// plan_sensitivity
  std::vector<std::vector<Leaf>> leaves;             ///< per group (neuron groups; empty for inputs)
  std::vector<SensitivityBlock> sensitivity_blocks;  ///< every (state, param), states-major
  std::vector<std::vector<int>> state_params;  ///< per state (index into `states`): nonzero params
  std::vector<std::vector<int>> op_tangent;    ///< per op: param groups of its nonzero tangent
                                               ///< blocks, empty where no tangent is needed
  /// Multiply-adds of the sensitivity update as the kernel evaluates it (README, "Reports"): per
  /// parameter block, each leaf's Jacobian times its source's block, scaled by the leaf's
  /// coefficient; plus each used coefficient once per step.
  std::int64_t macs_per_step = 0;        ///< the pruned sensitivity update (Eqn. 4)
  std::int64_t dense_macs_per_step = 0;  ///< the same update with nothing pruned
  /// macs_per_step by where it is spent: block_macs[g][p] forms group g's tangent block for
  /// parameter group p (a state's block of Delta, or an intermediate group's workspace block), and
  /// coefficient_macs evaluates the leaves' coefficients the update reads, once per step.
  /// macs_per_step == coefficient_macs + the sum of block_macs (the inspector shows both).
  std::vector<std::vector<std::int64_t>> block_macs;
  std::int64_t coefficient_macs = 0;  ///< see block_macs
  /// Values the update's dense products write: a dense connection W (n x m) times its source's
  /// tangent block (src entries over m rows) writes n x (src / m). With a small m (a few units
  /// per group) these stores, not the multiply-adds, bound the product (ExactCostWeights).
  std::int64_t product_output_values = 0;
  std::int64_t sensitivity_values = 0;   ///< values of Delta stored: the patterns' entries
  std::int64_t sensitivity_block_values = 0;  ///< sum of n_k |P_p| over the stored blocks
  std::int64_t dense_sensitivity_values = 0;  ///< sum_k n_k |P|
  std::int64_t gradient_macs_per_step = 0;    ///< sum_k (dC/dR^k) Delta^k in Eqn. 5, pruned

  /// The layer_local approximation (AnalysisOptions::layer_local): the states it was asked for
  /// (group indices) and the blocks of Delta it dropped as (state group, parameter group). Both
  /// empty unless asked for; `dropped_blocks` empty means the gradient is exact.
  std::vector<int> layer_local_states;
  std::vector<std::pair<int, int>> dropped_blocks;  ///< (state group, parameter group)

  /// plan_exact_cost
  ExactCost exact_cost;

  /// Neuron-level patterns (boolean patterns propagated through the step to a fixed point over
  /// time): one per tangent block the update forms (group g, param p with p in op_tangent of g's
  /// value op) and one per stored sensitivity block; a state's block and its tangent share one.
  /// With AnalysisOptions::prune = false every pattern is full.
  std::vector<Pattern> patterns;
  std::vector<std::vector<int>> pattern_index;  ///< [g][p]: index into `patterns`, or -1

  /// true unless an approximation dropped blocks of Delta: then RTRL's gradient is exact.
  bool exact() const { return dropped_blocks.empty(); }
  bool cross_term(int to_state, int from_state) const;  ///< by group index
  bool has_tangent(int op, int param) const;             ///< param in op_tangent[op]
  /// The pattern of d group / d P_param; throws std::logic_error if the analysis formed none.
  const Pattern& pattern(int group, int param) const;
};

/// Options of analyse().
struct AnalysisOptions {
  /// false: keep every sensitivity block of every state and carry every parameter group through
  /// every tangent that depends on anything (dense RTRL). For comparisons only: the kernel is still
  /// exact, it just multiplies structural zeros.
  bool prune = true;
  /// The layer_local approximation, for comparisons only (never the default; the gradient is then
  /// not exact): names of states (groups read through delay(); "*" names every state) whose Delta
  /// keeps only the parameter groups of the state's own loop. A parameter group belongs to a loop
  /// when a group that uses it reaches a state of the loop within one step without passing a state
  /// of another loop: in a stack, each layer's weights belong to that layer. The other blocks of
  /// a named state (Delta(h_2, P_1): how the lower layer's weights moved the upper layer's past)
  /// are dropped; the gradient keeps every path inside the current step (the error backpropagated
  /// from the upper layer into the lower layer's state and its own Delta), which is the
  /// approximation of Zucchet et al.'s online LRU and of SnAp-1-style methods across layers.
  /// analyse() throws AnalysisError for a name that is not a state. Only RTRL evaluates it: the
  /// cost model then picks RTRL, and runtime::BlockedRtrl refuses such a network.
  std::vector<std::string> layer_local = {};
};

/// Entries of the tangent block of parameter group `param` that the leaf `op` (a connection, or a
/// read of a group or of a delay) carries into its group's block, by the patterns: 0 when it
/// carries none. A sparse connection carries its links' source rows.
std::int64_t carried_entries(const ir::Network& net, const Analysis& a, int op, int param);

/// The leaf of `leaves` (one group's) whose sensitivity-update pass leaf i joins. Reads of one
/// group (at this step, or delayed) carry the same tangent block, so the update forms them in one
/// pass with their coefficients summed (minGRU's h = (1 - z) * h' + z * c reads z twice: one pass
/// with coefficient c - h'), when at least one of them has a coefficient other than +-1. Returns
/// the first such read for every member of a set, and i for every other leaf.
std::size_t merged_read_leaf(const ir::Network& net, const std::vector<Leaf>& leaves, std::size_t i);
/// The later leaves whose reads join leaf i's pass (merged_read_leaf of each is i): empty unless
/// leaf i heads a merged set.
std::vector<std::size_t> reads_joining(const ir::Network& net, const std::vector<Leaf>& leaves, std::size_t i);

/// Multiply-adds per step of the blocked exact algorithm at block length h >= 1, and its cost
/// (ExactCost).
std::int64_t blocked_macs_per_step(const Analysis& a, int block_length);
/// The cost (ExactCost) of blocked_macs_per_step's work.
double blocked_cost_per_step(const Analysis& a, int block_length, const ExactCostWeights& weights = {});
/// The blocked algorithm's two threads under BlockSchedule::background at block length h, in the
/// units of ExactCost's costs. `caller`: the mean step on the learner's thread, a sweep back
/// through the current block and the closing one ((3h + 1) / 2 reverse passes on average) and one
/// pass over Delta_s. `block_end`: one block end on the second thread (h steps of the sweeps of
/// every row, the rows' product with Delta_s, ExactCostWeights::background_start). The learner
/// waits for a block end at the next block's last step, so its mean step is about
/// max(caller, block_end / h).
struct BackgroundCost {
  double caller = 0;     ///< the learner's mean step
  double block_end = 0;  ///< one block end, on the second thread
};
/// BackgroundCost at block length h (ExactCost::background_block_length).
BackgroundCost background_cost_per_step(const Analysis& a, int block_length, const ExactCostWeights& weights = {});

// The passes of analyse(), in order. Each reads the network and the fields earlier passes filled
// in, and fills in its own (documented where it is defined).
void classify(const ir::Network& net, Analysis& a);  ///< edge classes, evaluation order, what reaches a loss
/// Recurrent loops, their order, cross terms, Analysis::reaches_state.
void find_loops(const ir::Network& net, Analysis& a);
/// Leaves, sensitivity blocks, patterns, MAC counts.
void plan_sensitivity(const ir::Network& net, Analysis& a, const AnalysisOptions& options = {});
/// The cost model: Analysis::exact_cost.
void plan_exact_cost(const ir::Network& net, Analysis& a, const ExactCostWeights& weights = {});

/// The whole pipeline. Throws ir::validate's std::invalid_argument for malformed IR and
/// AnalysisError for networks that cannot be evaluated.
Analysis analyse(const ir::Network& net, const AnalysisOptions& options = {});

}  // namespace loopgrad::analysis
