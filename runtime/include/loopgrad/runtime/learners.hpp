#pragma once
// Online learners: every gradient algorithm behind one interface, over any kernel with the
// interpreter's interface (the reference interpreter or a generated kernel):
//
//   T observe(params, input, target)   run one step (target may be nullptr); returns C_N
//   bool gradient_ready() const        an update is due after this step
//   const std::vector<T>& gradient()   the gradient to apply now (valid when ready)
//   void reset()                       zero state, no history
//
// ExactRtrl          exact, every step or accumulated over m steps (constant memory)
// BlockedRtrl        exact, the same gradients at about 1/n of RTRL's cost on dense recurrences
//                    (blocked_rtrl.hpp)
// ExactOnline        exact, by whichever of the two the analysis's cost model picks
// TruncatedBptt      every k1 steps, backpropagate the last k1 losses through the last k2 steps
// NthOrder           every step, backpropagate the step's loss through the last N steps
// RandomTruncation   unbiased random truncation (Tallec & Ollivier 2017)
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "loopgrad/runtime/blocked_rtrl.hpp"
#include "loopgrad/runtime/rtrl.hpp"

namespace loopgrad::runtime {

/// Exact RTRL; with accumulate = m > 1 the gradient is the sum over m steps and is ready every m.
template <class Kernel, class T>
class ExactRtrl {
 public:
  /// A learner on kernel k (kept by reference: it must outlive the learner); the gradient sums
  /// `accumulate` steps (values below 1 count as 1); `options` as for Rtrl.
  explicit ExactRtrl(const Kernel& k, int accumulate = 1, RtrlOptions<T> options = {})
      : rtrl_(k, options), accumulate_(accumulate < 1 ? 1 : accumulate), sum_(k.param_count(), T(0)) {}

  /// Runs one step with parameters `params` on `input` (input_size() values) against `target`
  /// (target_size() values, or nullptr for a step without a loss); returns the step's loss C_N.
  /// Throws NonFiniteValue under ExplosionPolicy::fail, with nothing changed.
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    const T c = rtrl_.step(params, input, target);  // first: if it throws, nothing has changed
    if (ready_) std::fill(sum_.begin(), sum_.end(), T(0));
    for (std::size_t i = 0; i < sum_.size(); ++i) sum_[i] += rtrl_.gradient()[i];
    ready_ = rtrl_.steps() % accumulate_ == 0;
    return c;
  }
  /// True when the step just observed completes a gradient: apply gradient() now.
  bool gradient_ready() const { return ready_; }
  /// The gradient to apply (param_count() values), valid while gradient_ready().
  const std::vector<T>& gradient() const { return sum_; }
  /// Back to the first step: zero state and sensitivity, no partial sum.
  void reset() {
    rtrl_.reset();
    std::fill(sum_.begin(), sum_.end(), T(0));
    ready_ = false;
  }
  /// Steps observed since construction or reset().
  std::int64_t steps() const { return rtrl_.steps(); }
  /// The RTRL engine underneath (state, sensitivity), for checkpoints and inspection.
  Rtrl<Kernel, T>& rtrl() { return rtrl_; }
  /// The RTRL engine underneath (state, sensitivity), for checkpoints and inspection.
  const Rtrl<Kernel, T>& rtrl() const { return rtrl_; }
  std::vector<T>& accumulated() { return sum_; }  ///< for checkpoints
  bool& ready_flag() { return ready_; }  ///< the ready flag, for checkpoints

 private:
  Rtrl<Kernel, T> rtrl_;
  int accumulate_;
  std::vector<T> sum_;
  bool ready_ = false;
};

/// Exact online gradients by the exact algorithm that is cheaper for the network: RTRL, or the
/// blocked algorithm at its best block length, as the analysis's cost model picks them (the
/// kernel's recommended_block_length(), or recommended_background_block_length() with
/// BlockSchedule::background); `block_length` overrides the pick (0: RTRL; h >= 1: blocked with
/// block length h). Either way the gradient is RTRL's to rounding; accumulate and options as for
/// ExactRtrl; `schedule` as for BlockedRtrl (real_time bounds every step's time).
template <class Kernel, class T>
class ExactOnline {
 public:
  static constexpr int automatic = -1;  ///< block_length: let the cost model pick
  /// A learner on kernel k running RTRL (block_length 0), the blocked algorithm with that block
  /// length, or (automatic) the one the cost model picks; throws std::invalid_argument for a
  /// negative block length other than automatic.
  explicit ExactOnline(const Kernel& k, int accumulate = 1, RtrlOptions<T> options = {}, int block_length = automatic,
                       BlockSchedule schedule = BlockSchedule::block_end)
      : learner_(make(k, accumulate, options, block_length == automatic ? recommended(k, schedule) : block_length,
                      schedule)) {}

  /// @copydoc ExactRtrl::observe
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    return std::visit([&](auto& l) { return l.observe(params, input, target); }, learner_);
  }
  /// @copydoc ExactRtrl::gradient_ready
  bool gradient_ready() const {
    return std::visit([](const auto& l) { return l.gradient_ready(); }, learner_);
  }
  /// @copydoc ExactRtrl::gradient
  const std::vector<T>& gradient() const {
    return std::visit([](const auto& l) -> const std::vector<T>& { return l.gradient(); }, learner_);
  }
  /// @copydoc ExactRtrl::reset
  void reset() {
    std::visit([](auto& l) { l.reset(); }, learner_);
  }
  /// 0 when running RTRL, else the blocked algorithm's block length.
  int block_length() const {
    const auto* blocked = std::get_if<BlockedRtrl<Kernel, T>>(&learner_);
    return blocked == nullptr ? 0 : blocked->block_length();
  }
  /// Steps observed since construction or reset().
  std::int64_t steps() const {
    return std::visit([](const auto& l) { return l.steps(); }, learner_);
  }
  /// The two exact learners ExactOnline chooses between.
  using Learner = std::variant<ExactRtrl<Kernel, T>, BlockedRtrl<Kernel, T>>;
  /// The learner it runs (for checkpoints and inspection).
  Learner& learner() { return learner_; }
  /// The learner it runs (for checkpoints and inspection).
  const Learner& learner() const { return learner_; }

 private:
  static int recommended(const Kernel& k, BlockSchedule schedule) {
    return schedule == BlockSchedule::background ? k.recommended_background_block_length() : k.recommended_block_length();
  }
  static Learner make(const Kernel& k, int accumulate, RtrlOptions<T> options, int block_length, BlockSchedule schedule) {
    if (block_length < 0)
      throw std::invalid_argument("ExactOnline: the block length must be 0 (RTRL), at least 1 (blocked) or automatic, not " +
                                  std::to_string(block_length));
    if (block_length == 0) return Learner(std::in_place_index<0>, k, accumulate, options);
    return Learner(std::in_place_index<1>, k, block_length, accumulate, options, schedule);
  }
  Learner learner_;
};

/// The history the BPTT-style learners keep: the last steps' values and targets, and the state
/// after the newest.
template <class Kernel, class T>
struct History {
  /// One step kept: its values (the kernel's Step) and its target, if it had one.
  struct Entry {
    typename Kernel::Step step;  ///< the step's values, as the kernel's forward pass left them
    std::optional<std::vector<T>> target;  ///< the step's target; empty for a step without a loss
  };
  std::deque<Entry> entries;  ///< oldest first
  std::vector<T> state;  ///< the state after the newest entry

  typename Kernel::Step scratch;  ///< the step being tried, until the guard has passed it
  RtrlOptions<T> guard;           ///< only `explosion` is used: the policy for non-finite values
  std::int64_t steps = 0;  ///< steps recorded since the last clear()
  bool warned = false;  ///< a non-finite value has been reported (warn reports once)

  /// An empty history of kernel k's steps; `policy` for non-finite values.
  History(const Kernel& k, ExplosionPolicy policy) : state(k.state_size(), T(0)) { guard.explosion = policy; }
  /// Runs one step from `state`, checking the input, the target and the loss before anything is
  /// kept: a non-finite one throws NonFiniteValue under ExplosionPolicy::fail with nothing changed.
  /// Then `make_room()` readies the newest entry, which takes the step and its target, and `state`
  /// advances; returns C_N.
  template <class MakeRoom>
  T record(const Kernel& k, const std::vector<T>& params, const T* input, const T* target, MakeRoom make_room) {
    check_finite(input, k.input_size(), "input", steps + 1, guard, warned);
    check_finite(target, k.target_size(), "target", steps + 1, guard, warned);
    k.forward(params.data(), state.data(), input, scratch);
    const T c = k.loss(scratch, target);
    check_finite(&c, 1, "loss", steps + 1, guard, warned);
    Entry& e = make_room();
    std::swap(e.step, scratch);
    if (target != nullptr)
      e.target.emplace(target, target + k.target_size());
    else
      e.target.reset();
    k.next_state(e.step, state.data());
    ++steps;
    return c;
  }
  /// Applies the explosion policy to a gradient about to be handed out.
  void check_gradient(const std::vector<T>& gradient) {
    check_finite(gradient.data(), gradient.size(), "gradient", steps, guard, warned);
  }
  /// No entries, zero state, step count 0.
  void clear() {
    entries.clear();
    std::fill(state.begin(), state.end(), T(0));
    steps = 0;
  }
};

/// Truncated BPTT(k1, k2) (Williams & Peng 1990): every k1 steps, the losses of the last k1 steps
/// are backpropagated through the last k2 steps (k2 >= k1). Memory grows with k2; dependencies
/// longer than k2 steps get no gradient. `policy` guards against non-finite numbers as for the
/// exact learners: an input, target or loss before the step is kept, the gradient when it is ready.
template <class Kernel, class T>
class TruncatedBptt {
 public:
  /// A learner on kernel k: a gradient every k1 steps (at least 1) through the last k2 steps (at least k1).
  TruncatedBptt(const Kernel& k, int k1, int k2, ExplosionPolicy policy = ExplosionPolicy::warn)
      : k_(k),
        k1_(k1 < 1 ? 1 : k1),
        k2_(k2 < k1_ ? k1_ : k2),
        history_(k, policy),
        gradient_(k.param_count(), T(0)),
        adjoint_(k.state_size(), T(0)),
        prev_(k.state_size(), T(0)) {}

  /// @copydoc ExactRtrl::observe
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    auto& h = history_.entries;
    const T c = history_.record(k_, params, input, target, [&]() -> auto& {
      if (h.size() == static_cast<std::size_t>(k2_)) {  // the oldest entry's buffers become the newest's
        auto oldest = std::move(h.front());
        h.pop_front();
        h.push_back(std::move(oldest));
      } else {
        h.emplace_back();
      }
      return h.back();
    });
    ready_ = ++count_ % k1_ == 0;
    if (ready_) {
      backpropagate(params);
      history_.check_gradient(gradient_);
    }
    return c;
  }
  bool gradient_ready() const { return ready_; }  ///< @copydoc ExactRtrl::gradient_ready
  const std::vector<T>& gradient() const { return gradient_; }  ///< @copydoc ExactRtrl::gradient
  /// @copydoc ExactRtrl::reset
  void reset() {
    history_.clear();
    count_ = 0;
    ready_ = false;
  }
  const std::vector<T>& state() const { return history_.state; }  ///< the state after the last step

 private:
  void backpropagate(const std::vector<T>& params) {
    std::fill(gradient_.begin(), gradient_.end(), T(0));
    std::fill(adjoint_.begin(), adjoint_.end(), T(0));
    auto& h = history_.entries;
    for (std::size_t back = 0; back < h.size(); ++back) {
      auto& e = h[h.size() - 1 - back];
      const T* target = back < static_cast<std::size_t>(k1_) && e.target ? e.target->data() : nullptr;
      k_.reverse(params.data(), e.step, target, back == 0 ? nullptr : adjoint_.data(), gradient_.data(), prev_.data());
      adjoint_.swap(prev_);
    }
  }

  const Kernel& k_;
  int k1_, k2_;
  History<Kernel, T> history_;
  std::vector<T> gradient_, adjoint_, prev_;
  std::int64_t count_ = 0;
  bool ready_ = false;
};

/// N-th order approximation: at every step, the step's loss backpropagated through the current
/// step and the N before it, and an update every step. N = 0 ignores the recurrence; N >= the
/// sequence length is exact for fixed parameters. (Truncated BPTT with k1 = 1, k2 = N + 1.)
template <class Kernel, class T>
class NthOrder : public TruncatedBptt<Kernel, T> {
 public:
  /// A learner on kernel k backpropagating each step's loss through that step and the n before it.
  NthOrder(const Kernel& k, int n, ExplosionPolicy policy = ExplosionPolicy::warn)
      : TruncatedBptt<Kernel, T>(k, 1, n + 1, policy) {}
};

/// Unbiased random truncation (Tallec & Ollivier 2017, "Unbiasing Truncated Backpropagation
/// Through Time", the ARTBP estimator): at each step the backward chain into the previous step is
/// cut with probability c; where it is kept, the gradient crossing it is divided by (1 - c). Each
/// cut closes a segment, which is backpropagated at once and yields a gradient; over the draws the
/// expected sum of the segments' gradients is the full BPTT gradient (for fixed parameters).
/// Segments are 1/c steps long on average. `max_length` (0: none) forces a cut on a longer
/// segment, which bounds memory but makes the estimate biased. `policy` as for TruncatedBptt.
template <class Kernel, class T>
class RandomTruncation {
 public:
  /// A learner on kernel k that cuts the backward chain with probability `cut_probability` at each
  /// step, drawn from a generator seeded with `seed`; `max_length` as above.
  RandomTruncation(const Kernel& k, double cut_probability, std::uint64_t seed, int max_length = 0,
                   ExplosionPolicy policy = ExplosionPolicy::warn)
      : k_(k),
        c_(cut_probability),
        max_length_(max_length),
        rng_(seed),
        history_(k, policy),
        gradient_(k.param_count(), T(0)),
        adjoint_(k.state_size(), T(0)),
        prev_(k.state_size(), T(0)) {}

  /// @copydoc ExactRtrl::observe
  T observe(const std::vector<T>& params, const T* input, const T* target) {
    auto& h = history_.entries;
    bool ready = false;
    // The draw and the segment's end come once the step has passed the guard.
    const T c = history_.record(k_, params, input, target, [&]() -> auto& {
      const bool cut = !h.empty() && (std::bernoulli_distribution(c_)(rng_) ||
                                      (max_length_ > 0 && h.size() >= static_cast<std::size_t>(max_length_)));
      if (cut) {
        backpropagate(params);
        ready = true;
      }
      h.emplace_back();
      return h.back();
    });
    ready_ = ready;
    if (ready_) history_.check_gradient(gradient_);
    return c;
  }
  /// Closes the open segment (the end of a finite sequence); its gradient is then ready.
  void flush(const std::vector<T>& params) {
    ready_ = !history_.entries.empty();
    if (ready_) {
      backpropagate(params);
      history_.check_gradient(gradient_);
    }
  }
  bool gradient_ready() const { return ready_; }  ///< @copydoc ExactRtrl::gradient_ready
  const std::vector<T>& gradient() const { return gradient_; }  ///< @copydoc ExactRtrl::gradient
  /// @copydoc ExactRtrl::reset
  void reset() {
    history_.clear();
    ready_ = false;
  }
  const std::vector<T>& state() const { return history_.state; }  ///< the state after the last step

 private:
  void backpropagate(const std::vector<T>& params) {
    auto& h = history_.entries;
    std::fill(gradient_.begin(), gradient_.end(), T(0));
    std::fill(adjoint_.begin(), adjoint_.end(), T(0));
    const T reweight = static_cast<T>(1.0 / (1.0 - c_));
    for (std::size_t back = 0; back < h.size(); ++back) {
      auto& e = h[h.size() - 1 - back];
      k_.reverse(params.data(), e.step, e.target ? e.target->data() : nullptr, back == 0 ? nullptr : adjoint_.data(),
                 gradient_.data(), prev_.data());
      // The chain into the previous step was kept (this segment goes on): compensate.
      for (std::size_t i = 0; i < prev_.size(); ++i) adjoint_[i] = prev_[i] * reweight;
    }
    h.clear();
  }

  const Kernel& k_;
  double c_;
  int max_length_;
  std::mt19937_64 rng_;
  History<Kernel, T> history_;
  std::vector<T> gradient_, adjoint_, prev_;
  bool ready_ = false;
};

}  // namespace loopgrad::runtime
