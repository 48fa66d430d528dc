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
// O(n_R^2 |P|). analysis::ExactCost holds the model and the best h for a network. On a generated
// kernel the block end sweeps a chunk of 32 seeds at once, 64 in float (the kernel's
// reverse_columns: the weights read once per step for all of them) and adds the dense parameters'
// terms of up to 64 steps as one product (dense_gradients); the gradient's sweep, past the steps
// whose losses it takes in, goes the same way with one column. The block end's products with
// Delta_s run a chunk's rows at a time over tiles of Delta_s, packed and register-tiled over the
// rows of Delta_s that share a tile's columns (the sensitivity update's tile shapes: 8 x 24
// doubles with AVX-512), so Delta_s is read n_R / 32 times per block (n_R / 64 in float); the
// gradient's product reads it once per step (once per m steps when accumulating). Memory: Delta_s
// and the block's Delta_(s+h) being built, a chunk's rows plus one in the parameter layout, the
// dense connections' adjoints of a chunk's seeds over up to 64 steps (never more values than
// Delta holds), h steps' values and the parameter vectors they used (one while the parameters do
// not change) — constant in the sequence length.
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
// - background: as real_time, the closing block stays stored while the next one runs and the
//   gradient sweeps back through both blocks to Delta_s; but all rows of Delta_(s+h) are built as
//   block_end builds them, on a second thread, while the next block's steps run on the caller's.
//   The learner's thread waits for it at that block's last step, always there, so the results do
//   not depend on timing: bit for bit the same on every run. A step costs about a block_end median
//   step, as long as the block end takes less time than the h steps of the next block; it needs a
//   second core.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "loopgrad/runtime/rtrl.hpp"

namespace loopgrad::runtime {

/// When BlockedRtrl builds the sensitivity at a block boundary (see the file's comment).
enum class BlockSchedule {
  block_end,  ///< all at the step that ends a block
  real_time,  ///< spread evenly over the next block's steps
  background,  ///< on a second thread while the next block runs
};

/// The schedule's name, as checkpoints and loopgrad_bench write it: "block_end", "real_time" or
/// "background".
inline const char* schedule_name(BlockSchedule s) {
  switch (s) {
    case BlockSchedule::real_time: return "real_time";
    case BlockSchedule::background: return "background";
    case BlockSchedule::block_end: break;
  }
  return "block_end";
}

/// A learner with ExactRtrl's interface (learners.hpp): observe every step, apply gradient() when
/// gradient_ready(). Runs on any kernel with the interpreter's interface, which includes
/// sensitivity_runs(), Delta's layout as records {unit, column, at, length}.
template <class Kernel, class T>
class BlockedRtrl {
 public:
  /// Whether block ends sweep a chunk of seeds at a time with the kernel's reverse pass over many adjoint
  /// columns (reverse_columns and dense_gradients: generated kernels have them); otherwise, as on
  /// the interpreter, one seed at a time.
  static constexpr bool column_reverse = requires(const Kernel& k, const typename Kernel::Step* const* steps, T* x,
                                                  std::size_t n) {
    k.reverse_columns(x, *steps[0], n, x, x, x, n, x, x);
    k.dense_gradients(steps, n, n, x, x, n, x);
    Kernel::dense_adjoint_rows;
    Kernel::column_workspace(n, n);
  };

  /// block_length h >= 1: Delta is formed every h steps. accumulate = m > 1: the gradient is the
  /// sum over m steps and is ready every m (the products with Delta_s then batch: one per m steps
  /// within a block). `options` as for RTRL: attenuation gamma scales every crossing of a step's
  /// recurrence exactly as Rtrl does; the explosion policy watches Delta whenever a boundary's is
  /// complete. `schedule`: when that Delta is built (BlockSchedule).
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
        sum_(k.param_count(), T(0)) {
    if (block_length < 1)
      throw std::invalid_argument("BlockedRtrl: the block length must be at least 1, not " + std::to_string(block_length));
    if (!k.exact_gradient())
      throw std::invalid_argument(
          "BlockedRtrl: this network's analysis drops blocks of Delta (the layer_local approximation), which only RTRL "
          "evaluates; use ExactRtrl, or analyse without layer_local for the exact gradient");
    h_ = static_cast<std::size_t>(block_length);
    entries_.resize(schedule == BlockSchedule::block_end ? h_ : 2 * h_);
    // Never reallocated while a background block end reads the closing block's vectors.
    pool_.reserve(2 * h_ + 1);
    plan_block_end();
  }

  /// One step at parameters `params` (target may be nullptr); returns C_N. The options' explosion
  /// policy watches the input, the target and the loss (before the step is stored: when it throws,
  /// nothing has advanced), the gradient when it is ready, and Delta at every boundary.
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    const SubnormalsFlushed flushed(options_.flush_subnormals);
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
    // Background: the boundary must be complete at the block's last step, so that the block's
    // end starts from it.
    if (closing_ > 0 && schedule_ == BlockSchedule::real_time) build_rows(rows_due(count_), ready_);
    if (closing_ > 0 && schedule_ == BlockSchedule::background && count_ == h_) {
      if (!background_.done()) ++background_waits_;
      background_.wait();
      finish_boundary();
    }
    if (ready_) add_pending_gradients();
    if (count_ == h_) {
      add_pending_gradients();
      begin_boundary();
      if (schedule_ == BlockSchedule::block_end) build_rows(units_.size());
      if (schedule_ == BlockSchedule::background) start_background();
    }
    if (ready_) check_finite(sum_.data(), sum_.size(), "gradient", n, options_, warned_values_);
    return c;
  }
  bool gradient_ready() const { return ready_; }  ///< @copydoc ExactRtrl::gradient_ready
  /// The gradient to apply now (valid when ready): dC_N/dP, or its sum over the last m steps.
  const std::vector<T>& gradient() const { return sum_; }
  /// @copydoc ExactRtrl::reset
  void reset() {
    background_.wait();
    std::fill(state_.begin(), state_.end(), T(0));
    std::fill(block_start_state_.begin(), block_start_state_.end(), T(0));
    std::fill(delta_.begin(), delta_.end(), T(0));
    std::fill(sum_.begin(), sum_.end(), T(0));
    count_ = pending_ = pool_size_ = closing_ = rows_done_ = 0;
    steps_ = background_waits_ = 0;
    ready_ = false;
  }

  const Kernel& kernel() const { return *k_; }  ///< the kernel it runs on
  int block_length() const { return static_cast<int>(h_); }  ///< h: steps between stored sensitivities
  BlockSchedule schedule() const { return schedule_; }  ///< when the block end's work runs
  int accumulate() const { return accumulate_; }  ///< m: steps summed into one gradient
  const RtrlOptions<T>& options() const { return options_; }  ///< the options it was built with
  std::int64_t steps() const { return steps_; }  ///< steps observed since construction or reset()
  /// With BlockSchedule::background: how many times since construction or reset() a block's last
  /// step found the previous block end still running and waited for it, a block end that did not
  /// fit in the next block's steps (that step then takes the rest of the block end's time). None
  /// at a block length that suits the machine (tune_background_block_length,
  /// block_length_tuning.hpp, picks one by this count). Not part of a checkpoint.
  std::int64_t background_waits() const { return background_waits_; }
  /// R_N, the state after the last step.
  const std::vector<T>& state() const { return state_; }
  /// Delta at step sensitivity_step() in the kernel's layout: the newest complete boundary's.
  /// With block_end, after a step that ends a block it is RTRL's Delta_N; with real_time it is
  /// Delta_s of the block before the current one while that block's end is being built.
  const std::vector<T>& sensitivity() const { return delta_; }
  /// The step at which sensitivity() holds Delta (0: before the first step).
  std::int64_t sensitivity_step() const {
    return steps_ - static_cast<std::int64_t>(closing_ + count_);
  }
  ~BlockedRtrl() { background_.wait(); }
  BlockedRtrl(const BlockedRtrl&) = default;  ///< after the source's background block end finishes
  BlockedRtrl(BlockedRtrl&&) = default;  ///< after the source's background block end finishes
  BlockedRtrl& operator=(const BlockedRtrl&) = default;  ///< after both learners' block ends finish
  BlockedRtrl& operator=(BlockedRtrl&&) = default;  ///< after both learners' block ends finish

  /// Steps taken in the current block (0 right after a block end).
  std::size_t block_steps() const { return count_; }
  /// The bytes this learner holds on the heap now, what one stream costs in memory: Delta_s and
  /// the Delta being built, the stored steps and parameter vectors, and the block end's buffers.
  std::size_t memory_bytes() const {
    std::size_t n = 0;
    for (const Entry& e : entries_) {
      if constexpr (requires { e.step.values; }) n += heap_bytes(e.step.values);
      n += heap_bytes(e.input) + heap_bytes(e.target);
    }
    n += heap_bytes(entries_) + heap_bytes(pool_) + heap_bytes(units_) + heap_bytes(tiles_) + heap_bytes(groups_) +
         heap_bytes(seed_of_unit_);
    for (const Work* w : {&work_, &gradient_work_}) {
      n += heap_bytes(w->held_steps);
      for (const auto* v : {&w->adjoint, &w->prev_adjoint, &w->target_adjoint, &w->column_adjoint, &w->column_prev,
                            &w->dense_adjoints, &w->column_work})
        n += heap_bytes(*v);
    }
    for (const auto* v : {&chunk_rows_, &chunk_adjoints_, &packed_pieces_, &packed_adjoints_, &state_,
                          &block_start_state_, &boundary_state_, &delta_, &next_delta_, &sum_})
      n += heap_bytes(*v);
    return n;
  }
  /// The last step's values, as the kernel's forward pass left them (outputs, activations).
  const typename Kernel::Step& last_step() const {
    return entries_[closing_ + count_ > 0 ? closing_ + count_ - 1 : h_ - 1].step;
  }

  /// What a checkpoint needs to resume mid-block bit for bit: the start (R_s, Delta_s) of the
  /// oldest stored step and what each stored step ran with. Resuming replays the forward steps
  /// (and, with real_time, the rows of the next boundary built so far).
  struct Snapshot {
    std::int64_t steps = 0;  ///< steps observed
    bool ready = false;  ///< gradient_ready() after the last step
    std::size_t pending = 0;            ///< current block steps whose losses are already in `accumulated`
    std::size_t closing = 0;            ///< stored steps of the block whose end is being built (real_time)
    std::vector<T> block_start_state;   ///< R_s
    std::vector<T> sensitivity;         ///< Delta_s
    std::vector<T> accumulated;         ///< the gradient summed so far
    std::vector<std::vector<T>> params; ///< distinct parameter vectors of the stored steps, in order of use
    std::vector<std::size_t> param_index;  ///< per stored step, oldest first: which of `params`
    std::vector<std::vector<T>> inputs;    ///< per stored step
    std::vector<std::vector<T>> targets;   ///< per stored step; empty: none
  };
  /// What a checkpoint stores to resume exactly here (see Snapshot).
  Snapshot snapshot() const {
    background_.wait();
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
  /// Restores a snapshot of a learner with the same kernel, block length and schedule, or throws
  /// std::invalid_argument naming what does not fit and changes nothing.
  void restore(const Snapshot& s) {
    const std::size_t n = s.inputs.size();
    auto fail = [](const std::string& what) { throw std::invalid_argument("BlockedRtrl::restore: " + what); };
    if (s.param_index.size() != n || s.targets.size() != n) fail("the stored steps' parameters, inputs and targets differ in number");
    if (s.closing != 0 && (schedule_ == BlockSchedule::block_end || s.closing != h_))
      fail("the snapshot holds " + std::to_string(s.closing) + " steps of a closing block; this learner " +
           (schedule_ != BlockSchedule::block_end ? "keeps " + std::to_string(h_) : std::string("builds boundaries at the block end and keeps none")));
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
    background_.wait();
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
      if (closing_ > 0 && schedule_ == BlockSchedule::real_time) build_rows(rows_due(count_));
    }
    if (closing_ > 0 && schedule_ == BlockSchedule::background) start_background();
  }

  /// How many steps' dense parameter terms the reverse sweep of `columns` adjoint columns adds in
  /// one product (Kernel::dense_gradients' inner dimension), on `kernel` at block length h: at most
  /// flush_steps, at most h, and at most as many as keep the held adjoints within Delta's size (at
  /// least one). On networks of a few units per group the adjoints of 32 seeds over a block
  /// outgrew Delta several times (random14: 515 KB for 33 steps beside a 136 KB Delta, its memory
  /// 3.4x RTRL's); a product over fewer steps costs little there, the weights being small.
  static std::size_t steps_per_product(const Kernel& kernel, std::size_t h, std::size_t columns)
    requires column_reverse
  {
    const std::size_t per_step = std::max<std::size_t>(Kernel::dense_adjoint_rows * columns, 1);
    return std::max<std::size_t>(std::min({flush_steps, h, kernel.sensitivity_size() / per_step}), 1);
  }
  /// The most steps one such product spans. Each product reads and writes the chunk's rows of the
  /// dense weights (17 MB for 32 seeds on Elman 256): 64 steps made Elman 256's block end about
  /// 10% shorter than 32.
  static constexpr std::size_t flush_steps = 64;

 private:
  /// A vector's allocation, and its elements' own if they are vectors.
  template <class V>
  static std::size_t heap_bytes(const std::vector<V>& v) {
    std::size_t n = v.capacity() * sizeof(V);
    if constexpr (requires(const V& x) { heap_bytes(x); })
      for (const V& x : v) n += heap_bytes(x);
    return n;
  }

  /// Buffers of the reverse sweeps: the adjoint before and after a step, a loss's own adjoint (and
  /// a block end's seed on kernels without reverse_columns); with a kernel that reverses many
  /// columns at once (sweep_columns), the chunk's adjoints interleaved, before and after a step,
  /// the dense connections' adjoints of up to flush_steps steps and those steps, the kernel's
  /// workspace.
  struct Work {
    std::vector<T> adjoint, prev_adjoint, target_adjoint, column_adjoint, column_prev, dense_adjoints, column_work;
    std::vector<const typename Kernel::Step*> held_steps;
  };

  /// Waits for a background block end on copy, move, assignment and wait(): declared first among
  /// the learner's members, so that it waits before any other member is copied or moved.
  struct Background {
    std::future<void> task;
    Background() = default;
    Background(const Background& o) { o.wait(); }
    Background(Background&& o) noexcept { o.wait(); }
    Background& operator=(const Background& o) {
      wait();
      o.wait();
      return *this;
    }
    Background& operator=(Background&& o) noexcept {
      wait();
      o.wait();
      return *this;
    }
    ~Background() { wait(); }
    /// Waits until the block end's rows are built, if one runs (its rows never throw).
    void wait() const {
      if (task.valid()) task.wait();
    }
    /// Whether no block end runs now (none started, or the last one has finished).
    bool done() const { return !task.valid() || task.wait_for(std::chrono::seconds(0)) == std::future_status::ready; }
  };

  /// The closing block's rows, all of them, on a second thread (BlockSchedule::background). It
  /// reads the closing block's stored steps and parameter vectors and Delta_s, and writes only the
  /// block end's own buffers, next_delta_ and rows_done_; the learner's thread, until it waits,
  /// writes only the current block's steps, parameter vectors past the closing block's (pool_
  /// never reallocates) and the gradient, with its own sweep buffers (gradient_work_).
  /// Where no thread can be started (std::system_error), the rows are built here and now, as with
  /// block_end: the same arithmetic, so the same results.
  void start_background() {
    try {
      background_.task = std::async(std::launch::async, [this] {
        const SubnormalsFlushed flushed(options_.flush_subnormals);
        build_rows(units_.size());
      });
    } catch (const std::system_error&) {
      build_rows(units_.size());
    }
  }

  struct Entry {
    typename Kernel::Step step;
    std::vector<T> input, target;
    bool has_target = false;
    std::size_t params = 0;  ///< index into pool_
  };

  /// The index of `params` in the block's pool: the last vector again while they do not change.
  std::size_t keep_params(const std::vector<T>& params) {
    if (pool_size_ > 0 && pool_[pool_size_ - 1] == params) return pool_size_ - 1;
    return keep_new_params(params);
  }
  std::size_t keep_new_params(const std::vector<T>& params) {
    // A background block end reads the closing block's vectors: the pool grows only without one.
    // (Its capacity, 2h + 1 from the constructor, is enough unless the learner was copied.)
    if (pool_size_ == pool_.capacity()) background_.wait();
    if (pool_size_ == pool_.size()) pool_.emplace_back();
    pool_[pool_size_] = params;
    return pool_size_++;
  }

  /// Reverses the stored steps [0, end) from the newest to the oldest, adding the immediate
  /// parameter terms to `grad`. The sweep starts from `seed` at the newest state (nullptr: none) and
  /// takes in the losses of the steps from `first_target` on. On return w.adjoint holds the adjoint
  /// at R_s, the attenuation applied at every crossing; returns false if nothing flowed back.
  bool sweep(Work& w, const T* seed, std::size_t end, std::size_t first_target, T* grad) {
    const T gamma = options_.attenuation;
    bool flowing = seed != nullptr;
    if (flowing) std::copy(seed, seed + w.adjoint.size(), w.adjoint.begin());
    for (std::size_t j = end; j-- > 0;) {
      if constexpr (column_reverse) {
        // The older steps take in no loss: one column through them, dense terms as products.
        if (flowing && j < first_target) {
          std::copy(w.adjoint.begin(), w.adjoint.end(), w.column_adjoint.begin());
          sweep_columns(w, j + 1, 1, grad);
          std::copy(w.column_adjoint.begin(), w.column_adjoint.begin() + static_cast<std::ptrdiff_t>(w.adjoint.size()),
                    w.adjoint.begin());
          return true;
        }
      }
      const Entry& e = entries_[j];
      const T* params = pool_[e.params].data();
      const T* target = j >= first_target && e.has_target ? e.target.data() : nullptr;
      if (!flowing && target == nullptr) continue;
      if (flowing && (target == nullptr || gamma == T(1))) {
        k_->reverse(params, e.step, target, w.adjoint.data(), grad, w.prev_adjoint.data());
        // With attenuation, the part carried across the step is scaled and the step's own loss
        // is not: the loss then goes through a reverse pass of its own.
        if (gamma != T(1))
          for (T& a : w.prev_adjoint) a *= gamma;
      } else if (flowing) {
        k_->reverse(params, e.step, nullptr, w.adjoint.data(), grad, w.prev_adjoint.data());
        k_->reverse(params, e.step, target, nullptr, grad, w.target_adjoint.data());
        for (std::size_t i = 0; i < w.prev_adjoint.size(); ++i) w.prev_adjoint[i] = gamma * w.prev_adjoint[i] + w.target_adjoint[i];
      } else {
        k_->reverse(params, e.step, target, nullptr, grad, w.prev_adjoint.data());
      }
      w.adjoint.swap(w.prev_adjoint);
      flowing = true;
    }
    return flowing;
  }

  /// The gradients of the block's steps not yet counted, into sum_: one sweep (through the closing
  /// block too while its end is being built) and one product with Delta_s for all of them.
  void add_pending_gradients() {
    Work& w = schedule_ == BlockSchedule::background ? gradient_work_ : work_;
    if (sweep(w, nullptr, closing_ + count_, closing_ + pending_, sum_.data()))
      k_->apply_sensitivity(delta_.data(), w.adjoint.data(), sum_.data());
    pending_ = count_;
  }

  /// Columns of the parameter layout per tile of the block end's product, and seeds per chunk:
  /// a chunk's rows of one tile (chunk x tile values) stay in the L2 cache while Delta_s's rows
  /// stream past them once per chunk. Floats take 64 seeds in the bytes of 32 doubles: Delta_s is
  /// then read half as often, and the dense weights' rows once per 64 seeds (the float block end
  /// of Elman 256 and LSTM 128 measured 7-12% shorter than with 32).
  static constexpr std::size_t tile_columns = 288;
  static constexpr std::size_t chunk_seeds = sizeof(T) == 4 ? 64 : 32;

  struct Piece {
    std::size_t unit, at, offset, length;  ///< a run's part within one tile; offset from the tile's start
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  /// Cuts Delta's runs at tile boundaries: tiles_[t] lists, for columns [t * tile_columns, ...),
  /// the pieces of every stored row; units_ are the state units whose row stores anything.
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
    // Pieces over the same columns of a tile form one product (add_group): in a dense block every
    // row's piece does.
    groups_.assign(n_tiles, {});
    for (std::size_t t = 0; t < n_tiles; ++t) {
      auto& pieces = tiles_[t];
      std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
        if (a.offset != b.offset) return a.offset < b.offset;
        if (a.length != b.length) return a.length < b.length;
        return a.at < b.at;  // a total order: the same on every run
      });
      for (std::size_t i = 0; i < pieces.size();) {
        std::size_t j = i + 1;
        while (j < pieces.size() && pieces[j].offset == pieces[i].offset && pieces[j].length == pieces[i].length) ++j;
        groups_[t].push_back({i, j});
        i = j;
      }
    }
    seed_of_unit_.assign(k_->state_size(), npos);
    const std::size_t chunk = std::min(chunk_seeds, units_.size());
    // One row more for the gradient (real_time: it joins the rows' pass).
    chunk_rows_.assign((chunk + 1) * k_->param_count(), T(0));
    chunk_adjoints_.assign((chunk + 1) * k_->state_size(), T(0));
    packed_pieces_.assign((units_.size() + 1) * tile_columns, T(0));  // + add_group's padding
    packed_adjoints_.assign((chunk + 1) * units_.size(), T(0));
    // At least one column: the gradient's sweep uses them too. With the background schedule the
    // gradient sweeps one column with buffers of its own.
    allocate(work_, std::max<std::size_t>(chunk, 1));
    if (schedule_ == BlockSchedule::background) allocate(gradient_work_, 1);
  }
  void allocate(Work& w, std::size_t columns) {
    const std::size_t S = k_->state_size();
    w.adjoint.assign(S, T(0));
    w.prev_adjoint.assign(S, T(0));
    w.target_adjoint.assign(S, T(0));
    if constexpr (column_reverse) {
      // Steps whose dense adjoints the Work holds (steps_per_product: at most h, and within Delta's size).
      const std::size_t steps = steps_per_product(*k_, h_, columns);
      w.column_adjoint.assign(columns * S, T(0));
      w.column_prev.assign(columns * S, T(0));
      w.dense_adjoints.assign(steps * Kernel::dense_adjoint_rows * columns, T(0));
      w.column_work.assign(Kernel::column_workspace(columns, steps), T(0));
      w.held_steps.assign(steps, nullptr);
    }
  }

  /// The block just completed becomes the closing block: its end R_(s+h) is the boundary whose
  /// Delta build_rows builds; a new block starts.
  void begin_boundary() {
    closing_ = count_;
    count_ = pending_ = rows_done_ = 0;
    boundary_state_ = state_;
  }

  /// How many of the boundary's rows must be built once `steps` steps of the block after it have
  /// run: evenly spread, all of them at the block's last step.
  std::size_t rows_due(std::size_t steps) const { return (steps * units_.size() + h_ - 1) / h_; }

  /// Rows [rows_done_, upto) of Delta_(s+h) from Delta_s and the closing block's steps, a chunk at a
  /// time: each row's sweep gives its immediate part (in the parameter layout) and its adjoint at
  /// R_s; then, tile by tile, the adjoints times Delta_s's rows are added and the rows' stored
  /// entries written out. With the last row the boundary is complete (finish_boundary).
  /// `with_gradient`: the pending gradients too, their adjoint at R_s one more row of the first
  /// chunk's pass (only while the boundary stays open after these rows, so that Delta_s is theirs).
  void build_rows(std::size_t upto, bool with_gradient = false) {
    const std::size_t P = k_->param_count(), S = k_->state_size();
    bool gradient_row = with_gradient && rows_done_ < upto && upto < units_.size();
    for (std::size_t first = rows_done_; first < upto; first += chunk_seeds) {
      const std::size_t count = std::min(chunk_seeds, upto - first);
      if (gradient_row) {
        gradient_row = sweep(work_, nullptr, closing_ + count_, closing_ + pending_, sum_.data());
        pending_ = count_;
        std::copy(work_.adjoint.begin(), work_.adjoint.end(),
                  chunk_adjoints_.begin() + static_cast<std::ptrdiff_t>(count * S));
      }
      const std::size_t rows = count + (gradient_row ? 1 : 0);
      std::fill(chunk_rows_.begin(), chunk_rows_.begin() + static_cast<std::ptrdiff_t>(rows * P), T(0));
      for (std::size_t c = 0; c < count; ++c) seed_of_unit_[units_[first + c]] = c;
      if constexpr (column_reverse) {
        std::vector<T>& columns = work_.column_adjoint;
        std::fill(columns.begin(), columns.begin() + static_cast<std::ptrdiff_t>(S * count), T(0));
        for (std::size_t c = 0; c < count; ++c) columns[units_[first + c] * count + c] = T(1);
        sweep_columns(work_, closing_, count, chunk_rows_.data());
        for (std::size_t c = 0; c < count; ++c)
          for (std::size_t i = 0; i < S; ++i) chunk_adjoints_[c * S + i] = work_.column_adjoint[i * count + c];
      } else {
        std::vector<T>& seed = work_.target_adjoint;  // free: these sweeps take in no losses
        for (std::size_t c = 0; c < count; ++c) {
          std::fill(seed.begin(), seed.end(), T(0));
          seed[units_[first + c]] = T(1);
          sweep(work_, seed.data(), closing_, closing_, chunk_rows_.data() + c * P);
          std::copy(work_.adjoint.begin(), work_.adjoint.end(),
                    chunk_adjoints_.begin() + static_cast<std::ptrdiff_t>(c * S));
        }
      }
      for (std::size_t t = 0; t < tiles_.size(); ++t) {
        for (const auto& [begin, end] : groups_[t])
          add_group(tiles_[t].data() + begin, end - begin, t * tile_columns + tiles_[t][begin].offset, rows);
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
    // In the background the learner's thread finishes the boundary, at the block's last step.
    if (rows_done_ == units_.size() && schedule_ != BlockSchedule::background) finish_boundary();
  }

  /// Reverses the stored steps [0, end), newest first, for the `count` adjoint columns in
  /// w.column_adjoint (entry i of column c at [i * count + c]) with the kernel's reverse pass over
  /// many columns, adding column c's parameter terms to rows[c * param_count(), ...). The dense
  /// parameters' terms are added every flush_steps steps as one product over those steps. On return
  /// w.column_adjoint holds the adjoints at R_s, the attenuation applied at every crossing. The
  /// steps must have no losses to take in.
  void sweep_columns(Work& w, std::size_t end, std::size_t count, T* rows) {
    const std::size_t P = k_->param_count(), S = k_->state_size();
    const std::size_t kept = Kernel::dense_adjoint_rows * count;  // dense adjoints per step
    const T gamma = options_.attenuation;
    std::size_t held = 0;
    for (std::size_t j = end; j-- > 0;) {
      const Entry& e = entries_[j];
      k_->reverse_columns(pool_[e.params].data(), e.step, count, w.column_adjoint.data(), w.column_prev.data(), rows, P,
                          w.dense_adjoints.data() + held * kept, w.column_work.data());
      w.held_steps[held++] = &e.step;
      if (gamma != T(1))
        for (std::size_t i = 0; i < S * count; ++i) w.column_prev[i] *= gamma;
      w.column_adjoint.swap(w.column_prev);
      if (held == w.held_steps.size() || j == 0) {
        k_->dense_gradients(w.held_steps.data(), held, count, w.dense_adjoints.data(), rows, P, w.column_work.data());
        held = 0;
      }
    }
  }

  /// Delta_(s+h) is complete: it replaces Delta_s, and the closing block's steps and the parameter
  /// vectors only they used are dropped (the current block's move to the front).
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

  // Register tiles of the block end's product (add_group): tile_height rows by tile_width columns
  // of accumulators, the shape of the emitted kernels' product tiles (24 vector registers with
  // AVX-512, 12 with AVX2 and FMA under g++ or clang and with AVX, 4 otherwise). tile_columns is a
  // multiple of every tile_width.
#if defined(__AVX512F__)
  static constexpr std::size_t tile_height = 8, tile_width = 192 / sizeof(T);
#elif defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
  static constexpr std::size_t tile_height = 6, tile_width = 64 / sizeof(T);
#elif defined(__AVX__)
  static constexpr std::size_t tile_height = 4, tile_width = 96 / sizeof(T);
#else
  static constexpr std::size_t tile_height = 4, tile_width = 32 / sizeof(T);
#endif
  static_assert(tile_columns % tile_width == 0, "a tile of Delta's columns holds whole register tiles");

  /// The chunk's `rows` rows over the columns [column, column + length) that `n` pieces share
  /// (rows v of Delta_s there) += sum over the pieces of (the row's adjoint at R_s, entry v) times
  /// the piece: a product with the pieces as its inner dimension. Fewer rows than a register tile
  /// (a real-time step builds a few) go piece by piece, up to 4 rows in one read of each piece.
  /// More are packed as a BLAS packs a product: the pieces are copied, each read in order (the way
  /// the hardware prefetches from memory), into micro-panels of tile_width columns, which stay in
  /// L2, and the rows' adjoints into micro-panels of tile_height rows. The micro-panels lie one
  /// panel plus tile_width values apart: n * tile_width values would be a multiple of 4 KiB for
  /// n = 256, and the copy of a piece, which writes one line into every panel, would then write
  /// all of them into one set of the L1 and L2 caches. Every register tile then reads both
  /// sequentially, accumulating over all the pieces before it stores; the last rows % tile_height
  /// rows form one shorter register tile. Every entry sums its terms in the pieces' order,
  /// whichever way the rows are cut.
  void add_group(const Piece* pieces, std::size_t n, std::size_t column, std::size_t rows) {
    if (rows < tile_height) {
      for (std::size_t c = 0; c < rows; c += 4) stream_rows(pieces, n, column, c, std::min<std::size_t>(4, rows - c));
      return;
    }
    const std::size_t P = k_->param_count(), S = k_->state_size(), length = pieces[0].length;
    const std::size_t panels = (length + tile_width - 1) / tile_width, stride = (n + 1) * tile_width;
    T* const b = packed_pieces_.data();
    for (std::size_t p = 0; p < n; ++p) {
      const T* const x = delta_.data() + pieces[p].at;
      for (std::size_t q = 0; q < panels; ++q) {
        T* const panel = b + q * stride + p * tile_width;
        const std::size_t j0 = q * tile_width, wide = std::min(tile_width, length - j0);
        for (std::size_t j = 0; j < wide; ++j) panel[j] = x[j0 + j];
        for (std::size_t j = wide; j < tile_width; ++j) panel[j] = T(0);
      }
    }
    // The rows' adjoints in micro-panels of tile_height rows, the last one of rows % tile_height.
    T* const a = packed_adjoints_.data();
    for (std::size_t r0 = 0; r0 < rows; r0 += tile_height) {
      const std::size_t height = std::min(tile_height, rows - r0);
      T* const micro = a + r0 * n;
      for (std::size_t p = 0; p < n; ++p)
        for (std::size_t i = 0; i < height; ++i) micro[p * height + i] = chunk_adjoints_[(r0 + i) * S + pieces[p].unit];
    }
    for (std::size_t q = 0; q < panels; ++q) {
      const std::size_t j0 = q * tile_width, wide = std::min(tile_width, length - j0);
      const T* const panel = b + q * stride;
      for (std::size_t r0 = 0; r0 < rows; r0 += tile_height) {
        const std::size_t height = std::min(tile_height, rows - r0);
        T* const t = chunk_rows_.data() + r0 * P + column + j0;
        if (wide == tile_width) {
          product_tile(height, n, a + r0 * n, panel, t, P);
          continue;
        }
        T part[tile_height * tile_width] = {};
        for (std::size_t i = 0; i < height; ++i)
          for (std::size_t j = 0; j < wide; ++j) part[i * tile_width + j] = t[i * P + j];
        product_tile(height, n, a + r0 * n, panel, part, tile_width);
        for (std::size_t i = 0; i < height; ++i)
          for (std::size_t j = 0; j < wide; ++j) t[i * P + j] = part[i * tile_width + j];
      }
    }
  }

  /// Rows [c, c + rows) (1 to 4) of add_group's product, piece after piece; the rows stay in L1.
  void stream_rows(const Piece* pieces, std::size_t n, std::size_t column, std::size_t c, std::size_t rows) {
    const std::size_t P = k_->param_count(), S = k_->state_size(), length = pieces[0].length;
    const T* const a = chunk_adjoints_.data() + c * S;
    // Only the rows there are: no pointer past the chunk's rows is formed.
    T* const r0 = chunk_rows_.data() + c * P + column;
    T* const r1 = rows > 1 ? r0 + P : r0;
    T* const r2 = rows > 2 ? r1 + P : r1;
    T* const r3 = rows > 3 ? r2 + P : r2;
    for (std::size_t p = 0; p < n; ++p) {
      const std::size_t v = pieces[p].unit;
      const T* const x = delta_.data() + pieces[p].at;
      const T a0 = a[v];
      switch (rows) {
        case 1:
          for (std::size_t j = 0; j < length; ++j) r0[j] += a0 * x[j];
          break;
        case 2: {
          const T a1 = a[S + v];
          for (std::size_t j = 0; j < length; ++j) {
            r0[j] += a0 * x[j];
            r1[j] += a1 * x[j];
          }
          break;
        }
        case 3: {
          const T a1 = a[S + v], a2 = a[2 * S + v];
          for (std::size_t j = 0; j < length; ++j) {
            r0[j] += a0 * x[j];
            r1[j] += a1 * x[j];
            r2[j] += a2 * x[j];
          }
          break;
        }
        default: {
          const T a1 = a[S + v], a2 = a[2 * S + v], a3 = a[3 * S + v];
          for (std::size_t j = 0; j < length; ++j) {
            r0[j] += a0 * x[j];
            r1[j] += a1 * x[j];
            r2[j] += a2 * x[j];
            r3[j] += a3 * x[j];
          }
        }
      }
    }
  }

  /// t (Rows x tile_width, row stride ldt) += A B over n pieces: A a micro-panel of adjoints (row
  /// i of piece p at a[p * Rows + i]), B one of the pieces (column j of piece p at
  /// b[p * tile_width + j]). The accumulators stay in registers for all n.
  template <std::size_t Rows>
  static void product_tile(std::size_t n, const T* a, const T* b, T* t, std::size_t ldt) {
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)
    // With AVX2 the accumulators are the compiler's vector type, as in the emitted kernels: g++ 12
    // keeps a plain array of 12 of them on the stack there, at under half the speed.
    if constexpr (std::is_same_v<T, double> || std::is_same_v<T, float>) {
      typedef T Vector __attribute__((vector_size(32)));
      constexpr std::size_t lanes = sizeof(Vector) / sizeof(T), vectors = tile_width / lanes;
      Vector acc[Rows][vectors];
      for (std::size_t i = 0; i < Rows; ++i)
        for (std::size_t v = 0; v < vectors; ++v) std::memcpy(&acc[i][v], t + i * ldt + v * lanes, sizeof(Vector));
      for (std::size_t p = 0; p < n; ++p, a += Rows, b += tile_width) {
        Vector x[vectors];
        for (std::size_t v = 0; v < vectors; ++v) std::memcpy(&x[v], b + v * lanes, sizeof(Vector));
        for (std::size_t i = 0; i < Rows; ++i) {
          const T w = a[i];
          for (std::size_t v = 0; v < vectors; ++v) acc[i][v] += w * x[v];
        }
      }
      for (std::size_t i = 0; i < Rows; ++i)
        for (std::size_t v = 0; v < vectors; ++v) std::memcpy(t + i * ldt + v * lanes, &acc[i][v], sizeof(Vector));
      return;
    }
#endif
    T acc[Rows][tile_width];
    for (std::size_t i = 0; i < Rows; ++i)
      for (std::size_t j = 0; j < tile_width; ++j) acc[i][j] = t[i * ldt + j];
    for (std::size_t p = 0; p < n; ++p, a += Rows, b += tile_width)
      for (std::size_t i = 0; i < Rows; ++i) {
        const T w = a[i];
        for (std::size_t j = 0; j < tile_width; ++j) acc[i][j] += w * b[j];
      }
    for (std::size_t i = 0; i < Rows; ++i)
      for (std::size_t j = 0; j < tile_width; ++j) t[i * ldt + j] = acc[i][j];
  }

  /// product_tile with `rows` (1 to tile_height) rows: the register tile of that height.
  static void product_tile(std::size_t rows, std::size_t n, const T* a, const T* b, T* t, std::size_t ldt) {
    [&]<std::size_t... R>(std::index_sequence<R...>) {
      ((rows == R + 1 ? product_tile<R + 1>(n, a, b, t, ldt) : void()), ...);
    }(std::make_index_sequence<tile_height>{});
  }

  Background background_;  ///< first: copies and moves wait for a background block end before the rest
  const Kernel* k_;  ///< a pointer, so that a learner can be assigned (checkpoint loading)
  RtrlOptions<T> options_;
  int accumulate_;
  BlockSchedule schedule_;
  std::size_t h_ = 1;
  /// The stored steps, oldest first: closing_ of the block whose end is being built (real_time and
  /// background; otherwise none), then count_ of the current block.
  std::vector<Entry> entries_;
  std::vector<std::vector<T>> pool_;
  std::size_t count_ = 0, pending_ = 0, pool_size_ = 0, closing_ = 0;
  std::size_t rows_done_ = 0;  ///< rows of the boundary's Delta built so far (indices into units_)
  std::vector<std::size_t> units_;  ///< state units whose row of Delta stores anything
  std::vector<std::vector<Piece>> tiles_;
  /// Per tile: [begin, end) of pieces over the same columns.
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> groups_;
  std::vector<std::size_t> seed_of_unit_;  ///< during a block end: the unit's row in the chunk, or npos
  std::vector<T> chunk_rows_;              ///< chunk x param_count(): the rows of Delta_(s+h) being built
  std::vector<T> chunk_adjoints_;          ///< chunk x state_size(): their adjoints at R_s
  /// add_group's packed operands: a tile's pieces (at most one per unit) in micro-panels of
  /// tile_width columns, and the chunk's adjoints at the pieces' units in micro-panels of tile_height.
  std::vector<T> packed_pieces_, packed_adjoints_;
  /// The sweeps' buffers: the block end's (and the gradient's, except in the background schedule),
  /// and the gradient's in the background schedule (one column; empty otherwise).
  Work work_, gradient_work_;
  std::vector<T> state_, block_start_state_, boundary_state_, delta_, next_delta_, sum_;
  std::int64_t steps_ = 0;
  std::int64_t background_waits_ = 0;  ///< see background_waits()
  bool ready_ = false;
  bool warned_ = false, warned_values_ = false;
};

}  // namespace loopgrad::runtime
