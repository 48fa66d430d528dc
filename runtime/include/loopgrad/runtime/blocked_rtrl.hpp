#pragma once
// Exact online gradients at a factor of about n lower cost than RTRL on dense recurrences: the
// fixed-size-storage hybrid of RTRL and BPTT (J. Schmidhuber, "A fixed size storage O(n^3) time
// complexity learning algorithm for fully recurrent continually running networks", Neural
// Computation 4(2), 1992). Nothing is approximated: it is Eqns. 4 and 5 reassociated.
//
// The sensitivity Delta is kept only at block boundaries s, s + h, s + 2h, ... With
// Phi(a, b) = D_a D_(a-1) ... D_(b+1) (Phi(a, a) = I) and I_j the immediate term of step j,
//
//     Delta_(t-1) = Phi(t-1, s) Delta_s + sum_{j=s+1}^{t-1} Phi(t-1, j) I_j,
//
// so the recurrent part of step t's gradient (Eqn. 5), with g_t = dC_t/dR_(t-1), is
//
//     g_t^T Delta_(t-1) = (g_t^T Phi(t-1, s)) Delta_s + sum_j (g_t^T Phi(t-1, j)) I_j:
//
// a reverse sweep of g_t through the block's stored steps (the kernel's one-step reverse pass adds
// the second sum to the gradient and hands back the adjoint at R_s), then one product of that
// adjoint with Delta_s (the kernel's apply_sensitivity). At the end of a block each row u of
//
//     Delta_(s+h) = Phi(s+h, s) Delta_s + sum_{j=s+1}^{s+h} Phi(s+h, j) I_j
//
// is the same sweep seeded with the unit vector e_u at R_(s+h), plus its final adjoint times Delta_s.
//
// Cost per step for a dense recurrence of n_R state units, |P| parameters, block length h: about
// n_R reverse passes and n_R / h products with Delta_s for the block end, (h + 1) / 2 reverse
// passes and one product with Delta_s for the gradient: O(n_R |P|) at h ~ n_R, against RTRL's
// O(n_R^2 |P|). analysis::ExactCost holds the model and the best h for a network. The block end's
// products run 32 rows at a time over tiles of Delta_s, so Delta_s is read n_R / 32 times per
// block; the gradient's product reads it once per step (once per m steps when accumulating).
// Memory: Delta_s and the block's Delta_(s+h) being built, 33 rows in the parameter layout, h
// steps' values and the parameter vectors they used (one while the parameters do not change) —
// constant in the sequence length.
//
// The parameters may change every step: each stored step is reversed with the parameters it ran
// with, so the gradient is RTRL's to rounding, step by step.
//
// Two schedules for the block end's work (BlockSchedule):
// - block_end: all rows of Delta_(s+h) at the step that ends the block. Least work, but that step
//   costs about h times the median one.
// - real_time: the block that just ended stays stored while the next one runs, and each of the
//   next h steps builds n_R / h of Delta_(s+h)'s rows, so every step does about the same work.
//   Until Delta_(s+h) is complete the gradient sweeps back through both blocks to Delta_s, and its
//   product with Delta_s joins the new rows' pass over Delta_s: about h more reverse passes per
//   step than block_end, one pass over Delta_s per step as with block_end, h more stored steps.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/runtime/rtrl.hpp"

namespace loopgrad::runtime {

// When BlockedRtrl builds the sensitivity at a block boundary (see the file's comment).
enum class BlockSchedule {
  block_end,  // all at the step that ends a block
  real_time,  // spread evenly over the next block's steps
};

// A learner with ExactRtrl's interface (learners.hpp): observe every step, apply gradient() when
// gradient_ready(). Runs on any kernel with the interpreter's interface, which includes
// sensitivity_runs(), Delta's layout as records {unit, column, at, length}.
template <class Kernel, class T>
class BlockedRtrl {
 public:
  // block_length h >= 1: Delta is formed every h steps. accumulate = m > 1: the gradient is the
  // sum over m steps and is ready every m (the products with Delta_s then batch: one per m steps
  // within a block). `options` as for RTRL: attenuation gamma scales every crossing of a step's
  // recurrence exactly as Rtrl does; the explosion policy watches Delta whenever a boundary's is
  // complete. `schedule`: when that Delta is built (BlockSchedule).
  BlockedRtrl(const Kernel& k, int block_length, int accumulate = 1, RtrlOptions<T> options = {},
              BlockSchedule schedule = BlockSchedule::block_end)
      : k_(&k),
        options_(options),
        accumulate_(accumulate < 1 ? 1 : accumulate),
        schedule_(schedule),
        state_(k.state_size(), T(0)),
        block_start_state_(k.state_size(), T(0)),
        boundary_state_(k.state_size(), T(0)),
        delta_(k.sensitivity_size(), T(0)),
        next_delta_(k.sensitivity_size(), T(0)),
        adjoint_(k.state_size(), T(0)),
        prev_adjoint_(k.state_size(), T(0)),
        target_adjoint_(k.state_size(), T(0)),
        sum_(k.param_count(), T(0)) {
    if (block_length < 1)
      throw std::invalid_argument("BlockedRtrl: the block length must be at least 1, not " + std::to_string(block_length));
    h_ = static_cast<std::size_t>(block_length);
    entries_.resize(schedule == BlockSchedule::real_time ? 2 * h_ : h_);
    plan_block_end();
  }

  // One step at parameters `params` (target may be nullptr); returns C_N. The options' explosion
  // policy watches the input, the target and the loss (before the step is stored: when it throws,
  // nothing has advanced), the gradient when it is ready, and Delta at every boundary.
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    const std::int64_t n = steps_ + 1;
    check_finite(input, k_->input_size(), "input", n, options_, warned_values_);
    check_finite(target, k_->target_size(), "target", n, options_, warned_values_);
    Entry& e = entries_[closing_ + count_];
    k_->forward(params.data(), state_.data(), input, e.step);
    const T c = k_->loss(e.step, target);
    check_finite(&c, 1, "loss", n, options_, warned_values_);
    if (ready_) std::fill(sum_.begin(), sum_.end(), T(0));
    e.params = keep_params(params);
    e.input.assign(input, input + k_->input_size());
    e.has_target = target != nullptr;
    if (target != nullptr) e.target.assign(target, target + k_->target_size());
    k_->next_state(e.step, state_.data());
    ++count_;
    ++steps_;
    ready_ = steps_ % accumulate_ == 0;
    // Real time: this step's share of the previous boundary's rows (at the block's last step the
    // rest, so that the gradient below needs only this block). The gradient's product with
    // Delta_s rides along in the rows' pass over Delta_s while the boundary stays open.
    if (closing_ > 0) build_rows(rows_due(count_), ready_);
    if (ready_) add_pending_gradients();
    if (count_ == h_) {
      add_pending_gradients();
      begin_boundary();
      if (schedule_ == BlockSchedule::block_end) build_rows(units_.size());
    }
    if (ready_) check_finite(sum_.data(), sum_.size(), "gradient", n, options_, warned_values_);
    return c;
  }
  bool gradient_ready() const { return ready_; }
  // The gradient to apply now (valid when ready): dC_N/dP, or its sum over the last m steps.
  const std::vector<T>& gradient() const { return sum_; }
  void reset() {
    std::fill(state_.begin(), state_.end(), T(0));
    std::fill(block_start_state_.begin(), block_start_state_.end(), T(0));
    std::fill(delta_.begin(), delta_.end(), T(0));
    std::fill(sum_.begin(), sum_.end(), T(0));
    count_ = pending_ = pool_size_ = closing_ = rows_done_ = 0;
    steps_ = 0;
    ready_ = false;
  }

  const Kernel& kernel() const { return *k_; }
  int block_length() const { return static_cast<int>(h_); }
  BlockSchedule schedule() const { return schedule_; }
  int accumulate() const { return accumulate_; }
  const RtrlOptions<T>& options() const { return options_; }
  std::int64_t steps() const { return steps_; }
  // R_N, the state after the last step.
  const std::vector<T>& state() const { return state_; }
  // Delta at step sensitivity_step() in the kernel's layout: the newest complete boundary's.
  // With block_end, after a step that ends a block it is RTRL's Delta_N; with real_time it is
  // Delta_s of the block before the current one while that block's end is being built.
  const std::vector<T>& sensitivity() const { return delta_; }
  std::int64_t sensitivity_step() const {
    return steps_ - static_cast<std::int64_t>(closing_ + count_);
  }
  // Steps taken in the current block (0 right after a block end).
  std::size_t block_steps() const { return count_; }
  const typename Kernel::Step& last_step() const {
    return entries_[closing_ + count_ > 0 ? closing_ + count_ - 1 : h_ - 1].step;
  }

  // What a checkpoint needs to resume mid-block bit for bit: the start (R_s, Delta_s) of the
  // oldest stored step and what each stored step ran with. Resuming replays the forward steps
  // (and, with real_time, the rows of the next boundary built so far).
  struct Snapshot {
    std::int64_t steps = 0;
    bool ready = false;
    std::size_t pending = 0;            // current block steps whose losses are already in `accumulated`
    std::size_t closing = 0;            // stored steps of the block whose end is being built (real_time)
    std::vector<T> block_start_state;   // R_s
    std::vector<T> sensitivity;         // Delta_s
    std::vector<T> accumulated;         // the gradient summed so far
    std::vector<std::vector<T>> params; // distinct parameter vectors of the stored steps, in order of use
    std::vector<std::size_t> param_index;  // per stored step, oldest first: which of `params`
    std::vector<std::vector<T>> inputs;    // per stored step
    std::vector<std::vector<T>> targets;   // per stored step; empty: none
  };
  Snapshot snapshot() const {
    Snapshot s;
    s.steps = steps_;
    s.ready = ready_;
    s.pending = pending_;
    s.closing = closing_;
    s.block_start_state = block_start_state_;
    s.sensitivity = delta_;
    s.accumulated = sum_;
    s.params.assign(pool_.begin(), pool_.begin() + static_cast<std::ptrdiff_t>(pool_size_));
    for (std::size_t j = 0; j < closing_ + count_; ++j) {
      s.param_index.push_back(entries_[j].params);
      s.inputs.push_back(entries_[j].input);
      s.targets.push_back(entries_[j].has_target ? entries_[j].target : std::vector<T>{});
    }
    return s;
  }
  // Restores a snapshot of a learner with the same kernel, block length and schedule, or throws
  // std::invalid_argument naming what does not fit and changes nothing.
  void restore(const Snapshot& s) {
    const std::size_t n = s.inputs.size();
    auto fail = [](const std::string& what) { throw std::invalid_argument("BlockedRtrl::restore: " + what); };
    if (s.param_index.size() != n || s.targets.size() != n) fail("the stored steps' parameters, inputs and targets differ in number");
    if (s.closing != 0 && (schedule_ != BlockSchedule::real_time || s.closing != h_))
      fail("the snapshot holds " + std::to_string(s.closing) + " steps of a closing block; this learner " +
           (schedule_ == BlockSchedule::real_time ? "keeps " + std::to_string(h_) : std::string("builds boundaries at the block end and keeps none")));
    if (s.closing > n || n - s.closing >= h_)
      fail("the block holds " + std::to_string(n - std::min(n, s.closing)) + " steps; this learner's block length is " +
           std::to_string(h_));
    if (s.pending > n - s.closing) fail("more steps counted in the gradient than the block holds");
    if (s.block_start_state.size() != k_->state_size() || s.sensitivity.size() != k_->sensitivity_size() ||
        s.accumulated.size() != k_->param_count())
      fail("the state, sensitivity or gradient size differs from this kernel's");
    for (const auto& p : s.params)
      if (p.size() != k_->param_count()) fail("a parameter vector's size differs from this kernel's");
    for (std::size_t j = 0; j < n; ++j) {
      if (s.param_index[j] >= s.params.size()) fail("a block step names a parameter vector that is not there");
      if (s.inputs[j].size() != k_->input_size()) fail("an input's size differs from this kernel's");
      if (!s.targets[j].empty() && s.targets[j].size() != k_->target_size()) fail("a target's size differs from this kernel's");
    }
    // Checked: commit, then replay the forward steps from R_s (and the boundary rows built so far).
    steps_ = s.steps;
    ready_ = s.ready;
    pending_ = s.pending;
    block_start_state_ = s.block_start_state;
    state_ = s.block_start_state;
    delta_ = s.sensitivity;
    sum_ = s.accumulated;
    pool_size_ = 0;
    for (const auto& p : s.params) keep_new_params(p);
    closing_ = count_ = rows_done_ = 0;
    auto replay = [&](Entry& e, std::size_t j) {
      e.params = s.param_index[j];
      e.input = s.inputs[j];
      e.has_target = !s.targets[j].empty();
      e.target = s.targets[j];
      k_->forward(pool_[e.params].data(), state_.data(), e.input.data(), e.step);
      k_->next_state(e.step, state_.data());
    };
    for (std::size_t j = 0; j < s.closing; ++j) replay(entries_[j], j);
    if (s.closing > 0) {
      closing_ = s.closing;
      boundary_state_ = state_;
    }
    for (std::size_t j = s.closing; j < n; ++j) {
      replay(entries_[closing_ + count_], j);
      ++count_;
      if (closing_ > 0) build_rows(rows_due(count_));
    }
  }

 private:
  struct Entry {
    typename Kernel::Step step;
    std::vector<T> input, target;
    bool has_target = false;
    std::size_t params = 0;  // index into pool_
  };

  // The index of `params` in the block's pool: the last vector again while they do not change.
  std::size_t keep_params(const std::vector<T>& params) {
    if (pool_size_ > 0 && pool_[pool_size_ - 1] == params) return pool_size_ - 1;
    return keep_new_params(params);
  }
  std::size_t keep_new_params(const std::vector<T>& params) {
    if (pool_size_ == pool_.size()) pool_.emplace_back();
    pool_[pool_size_] = params;
    return pool_size_++;
  }

  // Reverses the stored steps [0, end) from the newest to the oldest, adding the immediate
  // parameter terms to `grad`. The sweep starts from `seed` at the newest state (nullptr: none) and
  // takes in the losses of the steps from `first_target` on. On return adjoint_ holds the adjoint
  // at R_s, the attenuation applied at every crossing; returns false if nothing flowed back.
  bool sweep(const T* seed, std::size_t end, std::size_t first_target, T* grad) {
    const T gamma = options_.attenuation;
    bool flowing = seed != nullptr;
    if (flowing) std::copy(seed, seed + adjoint_.size(), adjoint_.begin());
    for (std::size_t j = end; j-- > 0;) {
      const Entry& e = entries_[j];
      const T* params = pool_[e.params].data();
      const T* target = j >= first_target && e.has_target ? e.target.data() : nullptr;
      if (!flowing && target == nullptr) continue;
      if (flowing && (target == nullptr || gamma == T(1))) {
        k_->reverse(params, e.step, target, adjoint_.data(), grad, prev_adjoint_.data());
        // With attenuation, the part carried across the step is scaled and the step's own loss
        // is not: the loss then goes through a reverse pass of its own.
        if (gamma != T(1))
          for (T& a : prev_adjoint_) a *= gamma;
      } else if (flowing) {
        k_->reverse(params, e.step, nullptr, adjoint_.data(), grad, prev_adjoint_.data());
        k_->reverse(params, e.step, target, nullptr, grad, target_adjoint_.data());
        for (std::size_t i = 0; i < prev_adjoint_.size(); ++i) prev_adjoint_[i] = gamma * prev_adjoint_[i] + target_adjoint_[i];
      } else {
        k_->reverse(params, e.step, target, nullptr, grad, prev_adjoint_.data());
      }
      adjoint_.swap(prev_adjoint_);
      flowing = true;
    }
    return flowing;
  }

  // The gradients of the block's steps not yet counted, into sum_: one sweep (through the closing
  // block too while its end is being built) and one product with Delta_s for all of them.
  void add_pending_gradients() {
    if (sweep(nullptr, closing_ + count_, closing_ + pending_, sum_.data()))
      k_->apply_sensitivity(delta_.data(), adjoint_.data(), sum_.data());
    pending_ = count_;
  }

  // Columns of the parameter layout per tile of the block end's product, and seeds per chunk:
  // a chunk's rows of one tile (chunk x tile values) stay in the L2 cache while Delta_s's rows
  // stream past them once per chunk.
  static constexpr std::size_t tile_columns = 256;
  static constexpr std::size_t chunk_seeds = 32;

  // Cuts Delta's runs at tile boundaries: tiles_[t] lists, for columns [t * tile_columns, ...),
  // the pieces of every stored row; units_ are the state units whose row stores anything.
  void plan_block_end() {
    const std::size_t n_tiles = (k_->param_count() + tile_columns - 1) / tile_columns;
    tiles_.assign(n_tiles, {});
    std::vector<bool> stores(k_->state_size(), false);
    for (const auto& run : k_->sensitivity_runs()) {
      stores[run.unit] = stores[run.unit] || run.length > 0;
      for (std::size_t j = 0; j < run.length;) {
        const std::size_t column = run.column + j, t = column / tile_columns;
        const std::size_t length = std::min(run.length - j, (t + 1) * tile_columns - column);
        tiles_[t].push_back({run.unit, run.at + j, column - t * tile_columns, length});
        j += length;
      }
    }
    for (std::size_t u = 0; u < stores.size(); ++u)
      if (stores[u]) units_.push_back(u);
    seed_of_unit_.assign(k_->state_size(), npos);
    const std::size_t chunk = std::min(chunk_seeds, units_.size());
    // One row more for the gradient (real_time: it joins the rows' pass).
    chunk_rows_.assign((chunk + 1) * k_->param_count(), T(0));
    chunk_adjoints_.assign((chunk + 1) * k_->state_size(), T(0));
  }

  // The block just completed becomes the closing block: its end R_(s+h) is the boundary whose
  // Delta build_rows builds; a new block starts.
  void begin_boundary() {
    closing_ = count_;
    count_ = pending_ = rows_done_ = 0;
    boundary_state_ = state_;
  }

  // How many of the boundary's rows must be built once `steps` steps of the block after it have
  // run: evenly spread, all of them at the block's last step.
  std::size_t rows_due(std::size_t steps) const { return (steps * units_.size() + h_ - 1) / h_; }

  // Rows [rows_done_, upto) of Delta_(s+h) from Delta_s and the closing block's steps, a chunk at a
  // time: each row's sweep gives its immediate part (in the parameter layout) and its adjoint at
  // R_s; then, tile by tile, the adjoints times Delta_s's rows are added and the rows' stored
  // entries written out. With the last row the boundary is complete (finish_boundary).
  // `with_gradient`: the pending gradients too, their adjoint at R_s one more row of the first
  // chunk's pass (only while the boundary stays open after these rows, so that Delta_s is theirs).
  void build_rows(std::size_t upto, bool with_gradient = false) {
    const std::size_t P = k_->param_count(), S = k_->state_size();
    std::vector<T>& seed = target_adjoint_;  // free until the next sweep that takes in losses
    bool gradient_row = with_gradient && rows_done_ < upto && upto < units_.size();
    for (std::size_t first = rows_done_; first < upto; first += chunk_seeds) {
      const std::size_t count = std::min(chunk_seeds, upto - first);
      if (gradient_row) {
        gradient_row = sweep(nullptr, closing_ + count_, closing_ + pending_, sum_.data());
        pending_ = count_;
        std::copy(adjoint_.begin(), adjoint_.end(), chunk_adjoints_.begin() + static_cast<std::ptrdiff_t>(count * S));
      }
      const std::size_t rows = count + (gradient_row ? 1 : 0);
      std::fill(chunk_rows_.begin(), chunk_rows_.begin() + static_cast<std::ptrdiff_t>(rows * P), T(0));
      for (std::size_t c = 0; c < count; ++c) {
        const std::size_t u = units_[first + c];
        seed_of_unit_[u] = c;
        std::fill(seed.begin(), seed.end(), T(0));
        seed[u] = T(1);
        sweep(seed.data(), closing_, closing_, chunk_rows_.data() + c * P);
        std::copy(adjoint_.begin(), adjoint_.end(), chunk_adjoints_.begin() + static_cast<std::ptrdiff_t>(c * S));
      }
      for (std::size_t t = 0; t < tiles_.size(); ++t) {
        for (const Piece& piece : tiles_[t])
          add_piece(delta_.data() + piece.at, piece.unit, t * tile_columns + piece.offset, piece.length, rows);
        for (const Piece& piece : tiles_[t]) {
          const std::size_t c = seed_of_unit_[piece.unit];
          if (c == npos) continue;
          const T* row = chunk_rows_.data() + c * P + t * tile_columns + piece.offset;
          std::copy(row, row + piece.length, next_delta_.data() + piece.at);
        }
      }
      for (std::size_t c = 0; c < count; ++c) seed_of_unit_[units_[first + c]] = npos;
      if (gradient_row) {
        const T* row = chunk_rows_.data() + count * P;
        for (std::size_t j = 0; j < P; ++j) sum_[j] += row[j];
        gradient_row = false;
      }
    }
    rows_done_ = std::max(rows_done_, upto);
    if (rows_done_ == units_.size()) finish_boundary();
  }

  // Delta_(s+h) is complete: it replaces Delta_s, and the closing block's steps and the parameter
  // vectors only they used are dropped (the current block's move to the front).
  void finish_boundary() {
    delta_.swap(next_delta_);
    block_start_state_ = boundary_state_;
    for (std::size_t j = 0; j < count_; ++j) std::swap(entries_[j], entries_[closing_ + j]);
    const std::size_t first_kept = count_ > 0 ? entries_[0].params : pool_size_;
    for (std::size_t j = first_kept; j < pool_size_; ++j) std::swap(pool_[j - first_kept], pool_[j]);
    pool_size_ -= first_kept;
    for (std::size_t j = 0; j < count_; ++j) entries_[j].params -= first_kept;
    closing_ = rows_done_ = 0;
    check_sensitivity_growth(delta_, options_, sensitivity_step(), warned_);
  }

  // The chunk's rows [column, column + length) += (their adjoints at R_s, entry v) * d: one piece
  // of row v of Delta_s, read once for the whole chunk (four rows at a time).
  void add_piece(const T* d, std::size_t v, std::size_t column, std::size_t length, std::size_t count) {
    const std::size_t P = k_->param_count(), S = k_->state_size();
    const T* a = chunk_adjoints_.data() + v;
    T* rows = chunk_rows_.data() + column;
    std::size_t c = 0;
    for (; c + 4 <= count; c += 4) {
      const T a0 = a[c * S], a1 = a[(c + 1) * S], a2 = a[(c + 2) * S], a3 = a[(c + 3) * S];
      if (a0 == T(0) && a1 == T(0) && a2 == T(0) && a3 == T(0)) continue;
      T* r0 = rows + c * P;
      T* r1 = r0 + P;
      T* r2 = r1 + P;
      T* r3 = r2 + P;
      for (std::size_t j = 0; j < length; ++j) {
        const T x = d[j];
        r0[j] += a0 * x;
        r1[j] += a1 * x;
        r2[j] += a2 * x;
        r3[j] += a3 * x;
      }
    }
    for (; c < count; ++c) {
      const T ac = a[c * S];
      if (ac == T(0)) continue;
      T* r = rows + c * P;
      for (std::size_t j = 0; j < length; ++j) r[j] += ac * d[j];
    }
  }

  struct Piece {
    std::size_t unit, at, offset, length;  // a run's part within one tile; offset from the tile's start
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  const Kernel* k_;  // a pointer, so that a learner can be assigned (checkpoint loading)
  RtrlOptions<T> options_;
  int accumulate_;
  BlockSchedule schedule_;
  std::size_t h_ = 1;
  // The stored steps, oldest first: closing_ of the block whose end is being built (real_time;
  // otherwise none), then count_ of the current block.
  std::vector<Entry> entries_;
  std::vector<std::vector<T>> pool_;
  std::size_t count_ = 0, pending_ = 0, pool_size_ = 0, closing_ = 0;
  std::size_t rows_done_ = 0;  // rows of the boundary's Delta built so far (indices into units_)
  std::vector<std::size_t> units_;  // state units whose row of Delta stores anything
  std::vector<std::vector<Piece>> tiles_;
  std::vector<std::size_t> seed_of_unit_;  // during a block end: the unit's row in the chunk, or npos
  std::vector<T> chunk_rows_;              // chunk x param_count(): the rows of Delta_(s+h) being built
  std::vector<T> chunk_adjoints_;          // chunk x state_size(): their adjoints at R_s
  std::vector<T> state_, block_start_state_, boundary_state_, delta_, next_delta_, adjoint_, prev_adjoint_, target_adjoint_, sum_;
  std::int64_t steps_ = 0;
  bool ready_ = false;
  bool warned_ = false, warned_values_ = false;
};

}  // namespace loopgrad::runtime
