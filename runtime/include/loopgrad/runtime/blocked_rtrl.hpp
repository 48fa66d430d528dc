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
// n_R reverse passes and n_R / h products with Delta_s for the block end, (h - 1) / 2 reverse
// passes and one product with Delta_s for the gradient: O(n_R |P|) at h ~ n_R, against RTRL's
// O(n_R^2 |P|). analysis::exact_cost holds the model and the best h for a network. Memory: Delta_s
// and the block's Delta_(s+h) being built, h steps' values and the parameter vectors they used
// (one while the parameters do not change) — constant in the sequence length.
//
// The parameters may change every step: each stored step is reversed with the parameters it ran
// with, so the gradient is RTRL's to rounding, step by step.
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/runtime/rtrl.hpp"

namespace loopgrad::runtime {

// A learner with ExactRtrl's interface (learners.hpp): observe every step, apply gradient() when
// gradient_ready(). Runs on any kernel with the interpreter's interface, which includes
// sensitivity_row_size(unit) and set_sensitivity_row(delta, unit, row).
template <class Kernel, class T>
class BlockedRtrl {
 public:
  // block_length h >= 1: Delta is formed every h steps. accumulate = m > 1: the gradient is the
  // sum over m steps and is ready every m (the products with Delta_s then batch: one per m steps
  // within a block). `options` as for RTRL: attenuation gamma scales every crossing of a step's
  // recurrence exactly as Rtrl does; the explosion policy watches Delta at every block end.
  BlockedRtrl(const Kernel& k, int block_length, int accumulate = 1, RtrlOptions<T> options = {})
      : k_(&k),
        options_(options),
        accumulate_(accumulate < 1 ? 1 : accumulate),
        state_(k.state_size(), T(0)),
        block_start_state_(k.state_size(), T(0)),
        delta_(k.sensitivity_size(), T(0)),
        next_delta_(k.sensitivity_size(), T(0)),
        adjoint_(k.state_size(), T(0)),
        prev_adjoint_(k.state_size(), T(0)),
        target_adjoint_(k.state_size(), T(0)),
        row_(k.param_count(), T(0)),
        sum_(k.param_count(), T(0)) {
    if (block_length < 1)
      throw std::invalid_argument("BlockedRtrl: the block length must be at least 1, not " + std::to_string(block_length));
    entries_.resize(static_cast<std::size_t>(block_length));
    for (std::size_t u = 0; u < k.state_size(); ++u)
      if (k.sensitivity_row_size(u) > 0) units_.push_back(u);
  }

  // One step at parameters `params` (target may be nullptr); returns C_N.
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    if (ready_) std::fill(sum_.begin(), sum_.end(), T(0));
    Entry& e = entries_[count_];
    e.params = keep_params(params);
    e.input.assign(input, input + k_->input_size());
    e.has_target = target != nullptr;
    if (target != nullptr) e.target.assign(target, target + k_->target_size());
    k_->forward(params.data(), state_.data(), input, e.step);
    const T c = k_->loss(e.step, target);
    k_->next_state(e.step, state_.data());
    ++count_;
    ++steps_;
    ready_ = steps_ % accumulate_ == 0;
    if (ready_) add_pending_gradients();
    if (count_ == entries_.size()) {
      add_pending_gradients();
      close_block();
    }
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
    count_ = pending_ = pool_size_ = 0;
    steps_ = 0;
    ready_ = false;
  }

  const Kernel& kernel() const { return *k_; }
  int block_length() const { return static_cast<int>(entries_.size()); }
  int accumulate() const { return accumulate_; }
  const RtrlOptions<T>& options() const { return options_; }
  std::int64_t steps() const { return steps_; }
  // R_N, the state after the last step.
  const std::vector<T>& state() const { return state_; }
  // Delta_s, the sensitivity at the start of the current block (step steps() - block_steps()), in
  // the kernel's layout: after a step that ends a block, RTRL's Delta_N.
  const std::vector<T>& sensitivity() const { return delta_; }
  // Steps taken in the current block (0 right after a block end).
  std::size_t block_steps() const { return count_; }
  const typename Kernel::Step& last_step() const { return entries_[(count_ + entries_.size() - 1) % entries_.size()].step; }

  // What a checkpoint needs to resume mid-block bit for bit: the block's start (R_s, Delta_s) and
  // what each of its steps ran with. Resuming replays the block's forward steps.
  struct Snapshot {
    std::int64_t steps = 0;
    bool ready = false;
    std::size_t pending = 0;            // block steps whose losses are already in `accumulated`
    std::vector<T> block_start_state;   // R_s
    std::vector<T> sensitivity;         // Delta_s
    std::vector<T> accumulated;         // the gradient summed so far
    std::vector<std::vector<T>> params; // distinct parameter vectors of the block, in order of use
    std::vector<std::size_t> param_index;  // per block step: which of `params`
    std::vector<std::vector<T>> inputs;    // per block step
    std::vector<std::vector<T>> targets;   // per block step; empty: none
  };
  Snapshot snapshot() const {
    Snapshot s;
    s.steps = steps_;
    s.ready = ready_;
    s.pending = pending_;
    s.block_start_state = block_start_state_;
    s.sensitivity = delta_;
    s.accumulated = sum_;
    s.params.assign(pool_.begin(), pool_.begin() + static_cast<std::ptrdiff_t>(pool_size_));
    for (std::size_t j = 0; j < count_; ++j) {
      s.param_index.push_back(entries_[j].params);
      s.inputs.push_back(entries_[j].input);
      s.targets.push_back(entries_[j].has_target ? entries_[j].target : std::vector<T>{});
    }
    return s;
  }
  // Restores a snapshot of a learner with the same kernel and block length, or throws
  // std::invalid_argument naming what does not fit and changes nothing.
  void restore(const Snapshot& s) {
    const std::size_t n = s.inputs.size();
    auto fail = [](const std::string& what) { throw std::invalid_argument("BlockedRtrl::restore: " + what); };
    if (n >= entries_.size() || s.param_index.size() != n || s.targets.size() != n)
      fail("the block holds " + std::to_string(n) + " steps; this learner's block length is " +
           std::to_string(entries_.size()));
    if (s.pending > n) fail("more steps counted in the gradient than the block holds");
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
    // Checked: commit, then replay the block's forward steps from R_s.
    steps_ = s.steps;
    ready_ = s.ready;
    pending_ = s.pending;
    block_start_state_ = s.block_start_state;
    state_ = s.block_start_state;
    delta_ = s.sensitivity;
    sum_ = s.accumulated;
    pool_size_ = 0;
    for (const auto& p : s.params) keep_new_params(p);
    count_ = n;
    for (std::size_t j = 0; j < n; ++j) {
      Entry& e = entries_[j];
      e.params = s.param_index[j];
      e.input = s.inputs[j];
      e.has_target = !s.targets[j].empty();
      e.target = s.targets[j];
      k_->forward(pool_[e.params].data(), state_.data(), e.input.data(), e.step);
      k_->next_state(e.step, state_.data());
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

  // Reverses the block's steps from the newest to the oldest, adding the immediate parameter terms
  // to `grad`. The sweep starts from `seed` at the newest state (nullptr: none) and takes in the
  // losses of the steps from `first_target` on. On return adjoint_ holds the adjoint at R_s, the
  // attenuation applied at every crossing; returns false if nothing flowed back (no seed, no loss).
  bool sweep(const T* seed, std::size_t first_target, T* grad) {
    const T gamma = options_.attenuation;
    bool flowing = seed != nullptr;
    if (flowing) std::copy(seed, seed + adjoint_.size(), adjoint_.begin());
    for (std::size_t j = count_; j-- > 0;) {
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

  // The gradients of the block's steps not yet counted, into sum_: one sweep and one product with
  // Delta_s for all of them.
  void add_pending_gradients() {
    if (sweep(nullptr, pending_, sum_.data())) k_->apply_sensitivity(delta_.data(), adjoint_.data(), sum_.data());
    pending_ = count_;
  }

  // Delta_(s+h), row by row, from Delta_s and the block's steps; the block then starts afresh.
  void close_block() {
    std::vector<T>& seed = target_adjoint_;  // free until the next sweep that takes in losses
    for (std::size_t u : units_) {
      std::fill(row_.begin(), row_.end(), T(0));
      std::fill(seed.begin(), seed.end(), T(0));
      seed[u] = T(1);
      sweep(seed.data(), count_, row_.data());
      k_->apply_sensitivity(delta_.data(), adjoint_.data(), row_.data());
      k_->set_sensitivity_row(next_delta_.data(), u, row_.data());
    }
    delta_.swap(next_delta_);
    block_start_state_ = state_;
    count_ = pending_ = pool_size_ = 0;
    check_sensitivity_growth(delta_, options_, steps_, warned_);
  }

  const Kernel* k_;  // a pointer, so that a learner can be assigned (checkpoint loading)
  RtrlOptions<T> options_;
  int accumulate_;
  std::vector<Entry> entries_;  // the block's steps, oldest first; count_ of them in use
  std::vector<std::vector<T>> pool_;
  std::size_t count_ = 0, pending_ = 0, pool_size_ = 0;
  std::vector<std::size_t> units_;  // state units whose row of Delta stores anything
  std::vector<T> state_, block_start_state_, delta_, next_delta_, adjoint_, prev_adjoint_, target_adjoint_, row_, sum_;
  std::int64_t steps_ = 0;
  bool ready_ = false;
  bool warned_ = false;
};

}  // namespace loopgrad::runtime
