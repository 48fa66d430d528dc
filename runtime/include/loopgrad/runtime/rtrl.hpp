#pragma once
// Exact online gradients (real-time recurrent learning, the discrete forward sensitivity
// equation): constant memory and work per step, however long the sequence. Each step gives
// dC_N/dP by Eqn. 5 and advances Delta by Eqn. 4; the parameters may change between steps.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>  // _mm_getcsr, _mm_setcsr: RtrlOptions::flush_subnormals
#endif

namespace loopgrad::runtime {

/// What to do when the sensitivity Delta grows without bound (temporal gradient explosion: the
/// recurrence is chaotic or unstable at the current parameters, and the gradient sum diverges).
enum class ExplosionPolicy {
  ignore,  ///< nothing is checked
  warn,   ///< one line on stderr the first time the threshold is crossed
  fail,   ///< throw TemporalGradientExplosion
};

class TemporalGradientExplosion : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown under ExplosionPolicy::fail when a step would take in or produce a non-finite number (NaN
/// or an infinity): an input, a target, the loss or the gradient. The learner has not advanced.
class NonFiniteValue : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A number for a message, in %g form (1.10168e+23, not 110168288866829363838976.000000).
inline std::string format_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

/// Options of the exact learners (Rtrl, ExactRtrl, BlockedRtrl, ExactOnline): attenuation, the
/// explosion policy and its threshold, subnormal flushing.
template <class T>
struct RtrlOptions {
  /// Attenuation factor gamma on the recurrent term: Delta_N = I_N + gamma * sum_l D^(kl) Delta^l_(N-1).
  /// gamma = 1 is exact. gamma < 1 is an approximation that trades exactness for stability: it
  /// forgets the influence of old steps geometrically, like a soft truncation; gamma = 0 keeps one
  /// step back (the 1st-order approximation).
  T attenuation = T(1);
  /// The largest |Delta| entry (max norm) tolerated before `explosion` applies; non-finite values
  /// always count as an explosion.
  T explosion_threshold = T(1e8);
  ExplosionPolicy explosion = ExplosionPolicy::warn;  ///< what a non-finite number or a too large |Delta| entry does
  /// Subnormal numbers (magnitudes below 1.2e-38 in float, 2.2e-308 in double) cost a CPU tens to
  /// hundreds of cycles per operation. Sensitivities that decay over many steps (a forget gate's
  /// products) reach them in float after a few hundred steps, and then a float step can run at half
  /// speed. true: each step runs with subnormal inputs and results taken as zero (x86's FTZ and DAZ
  /// for the duration of the call, restored after it, exceptions included), which changes results
  /// only by amounts below the smallest normal number. Off by default, as in PyTorch
  /// (torch.set_flush_denormal); a no-op where the CPU is not x86 with SSE.
  bool flush_subnormals = false;
};

/// While alive (and `on`), the calling thread computes with subnormal numbers flushed to zero: x86
/// MXCSR's flush-to-zero and denormals-are-zero bits, set back by the destructor (the status flags
/// raised meanwhile are kept). A no-op elsewhere.
class SubnormalsFlushed {
 public:
  /// Flushes subnormals until destruction if `on`; otherwise does nothing.
  explicit SubnormalsFlushed(bool on) {
#if defined(__SSE__)
    if (on) {
      saved_ = _mm_getcsr();
      _mm_setcsr(saved_ | 0x8040u);  // FTZ (bit 15) and DAZ (bit 6)
      active_ = true;
    }
#else
    (void)on;
#endif
  }
  ~SubnormalsFlushed() {
#if defined(__SSE__)
    // The two mode bits back as they were; the status flags the step raised stay raised.
    if (active_) _mm_setcsr((_mm_getcsr() & ~0x8040u) | (saved_ & 0x8040u));
#endif
  }
  SubnormalsFlushed(const SubnormalsFlushed&) = delete;
  SubnormalsFlushed& operator=(const SubnormalsFlushed&) = delete;

 private:
  [[maybe_unused]] unsigned saved_ = 0;
  [[maybe_unused]] bool active_ = false;
};

/// Applies `options.explosion` to a sensitivity Delta after step `steps`: its largest |entry| above
/// `options.explosion_threshold`, or any non-finite entry, is a temporal gradient explosion. `warned`
/// keeps the warning to one line per learner.
template <class T>
void check_sensitivity_growth(const std::vector<T>& delta, const RtrlOptions<T>& options, std::int64_t steps,
                              bool& warned) {
  if (options.explosion == ExplosionPolicy::ignore) return;
  bool finite = true;
  T largest = 0;
  for (T d : delta) {
    finite = finite && std::isfinite(d);
    largest = std::max(largest, std::abs(d));
  }
  if (finite && largest <= options.explosion_threshold) return;
  std::string reached = format_number(static_cast<double>(largest));
  if (!finite)
    for (std::size_t i = 0; i < delta.size(); ++i)
      if (!std::isfinite(delta[i])) {
        reached = "a non-finite value (" + format_number(static_cast<double>(delta[i])) + " at entry " + std::to_string(i) + ")";
        break;
      }
  const std::string message =
      "temporal gradient explosion at step " + std::to_string(steps) + ": the sensitivity dR/dP reached " + reached +
      " (threshold " + format_number(static_cast<double>(options.explosion_threshold)) +
      "); lower the learning rate, clip gradients, or set an attenuation factor below 1 (an approximation)";
  if (options.explosion == ExplosionPolicy::fail) throw TemporalGradientExplosion(message);
  if (!warned) std::fprintf(stderr, "loopgrad warning: %s\n", message.c_str());
  warned = true;
}

/// The guard every exact learner applies to what enters and leaves a step: `count` values (nullptr:
/// none) named `what` ("input", "target", "loss", "gradient") at step `step`. A non-finite one is,
/// by `options.explosion`, ignored, warned about once (`warned`), or thrown as NonFiniteValue
/// naming the entry and its value.
template <class T>
void check_finite(const T* values, std::size_t count, const char* what, std::int64_t step, const RtrlOptions<T>& options,
                  bool& warned) {
  if (options.explosion == ExplosionPolicy::ignore || values == nullptr) return;
  for (std::size_t i = 0; i < count; ++i) {
    if (std::isfinite(values[i])) continue;
    const std::string message = std::string("non-finite ") + what + " at step " + std::to_string(step) + ": entry " +
                                std::to_string(i) + " is " + format_number(static_cast<double>(values[i])) +
                                (what == std::string("input") || what == std::string("target")
                                     ? "; check the data"
                                     : "; check the data and the parameters (lower the learning rate, clip gradients)");
    if (options.explosion == ExplosionPolicy::fail) throw NonFiniteValue(message);
    if (!warned) std::fprintf(stderr, "loopgrad warning: %s\n", message.c_str());
    warned = true;
    return;
  }
}

/// The RTRL engine (Eqns. 4 and 5) on a kernel: state R_N, sensitivity Delta_N, and each step's
/// gradient dC_N/dP. ExactRtrl wraps it in the learner interface.
template <class Kernel, class T>
class Rtrl {
 public:
  /// An engine on kernel k (kept by reference: it must outlive the engine) at step 0: zero state and sensitivity.
  explicit Rtrl(const Kernel& k, RtrlOptions<T> options = {})
      : k_(k),
        options_(options),
        state_(k.state_size(), T(0)),
        delta_(k.sensitivity_size(), T(0)),
        next_delta_(k.sensitivity_size(), T(0)),
        adjoint_(k.state_size(), T(0)),
        gradient_(k.param_count(), T(0)) {}

  /// One step at parameters `params`: returns C_N; gradient() then holds dC_N/dP (zero without a
  /// target). State and sensitivity advance to step N. The options' explosion policy watches the
  /// input, the target, the loss, the gradient and Delta_N; when it throws, state, sensitivity and
  /// step count are as before the call (with an attenuation below 1, a Delta explosion is found
  /// after the step has committed).
  T step(const std::vector<T>& params, const T* input, const T* target) {
    const SubnormalsFlushed flushed(options_.flush_subnormals);
    const std::int64_t n = steps_ + 1;
    check_finite(input, k_.input_size(), "input", n, options_, warned_values_);
    check_finite(target, k_.target_size(), "target", n, options_, warned_values_);
    k_.forward(params.data(), state_.data(), input, step_);
    std::fill(gradient_.begin(), gradient_.end(), T(0));
    T c = 0;
    const bool exact = options_.attenuation == T(1);
    // A generated kernel's sensitivity_update also adds the gradient's recurrent term (Eqn. 5) in
    // its passes over Delta_(N-1), saving apply_sensitivity's pass; the interpreter has no such
    // form, and an attenuated Delta_(N-1) is not the one the gradient needs.
    constexpr bool fusable = requires(const Kernel& k, typename Kernel::Step& s, const T* p, T* q) {
      k.sensitivity_update(p, s, p, q, p, q);
    };
    const bool fuse = fusable && exact && target != nullptr;
    if (target != nullptr) {
      c = k_.loss(step_, target);
      k_.reverse(params.data(), step_, target, nullptr, gradient_.data(), adjoint_.data());
      check_finite(&c, 1, "loss", n, options_, warned_values_);
      if (!fuse) k_.apply_sensitivity(delta_.data(), adjoint_.data(), gradient_.data());
    }
    // Delta_N is linear in Delta_(N-1) beyond the immediate term, so attenuating the recurrent
    // term is attenuating Delta_(N-1).
    if (!exact)
      for (T& d : delta_) d *= options_.attenuation;
    if constexpr (fusable)
      k_.sensitivity_update(params.data(), step_, delta_.data(), next_delta_.data(), fuse ? adjoint_.data() : nullptr,
                            fuse ? gradient_.data() : nullptr);
    else
      k_.sensitivity_update(params.data(), step_, delta_.data(), next_delta_.data());
    if (target != nullptr) check_finite(gradient_.data(), gradient_.size(), "gradient", n, options_, warned_values_);
    if (exact) check_sensitivity_growth(next_delta_, options_, n, warned_);
    delta_.swap(next_delta_);
    k_.next_state(step_, state_.data());
    ++steps_;
    if (!exact) check_explosion();
    return c;
  }

  const std::vector<T>& gradient() const { return gradient_; }  ///< dC_N/dP of the last step (param_count() values)
  const std::vector<T>& state() const { return state_; }  ///< R_N, the state after the last step
  std::vector<T>& state() { return state_; }  ///< e.g. to start from a given R_0 or restore one
  /// Delta_N in the kernel's layout (sensitivity_size() values).
  const std::vector<T>& sensitivity() const { return delta_; }
  std::vector<T>& sensitivity() { return delta_; }  ///< for checkpoints
  /// The last step's values, as the kernel's forward pass left them.
  const typename Kernel::Step& last_step() const { return step_; }
  std::int64_t steps() const { return steps_; }  ///< steps taken since construction or reset()
  void set_steps(std::int64_t n) { steps_ = n; }  ///< sets the step count (checkpoints restore it)
  const RtrlOptions<T>& options() const { return options_; }  ///< the options it was built with
  /// The largest |Delta| entry after the last step.
  T sensitivity_max() const {
    T m = 0;
    for (T d : delta_) m = std::max(m, std::abs(d));
    return m;
  }
  /// Back to step 0: zero state and sensitivity.
  void reset() {
    std::fill(state_.begin(), state_.end(), T(0));
    std::fill(delta_.begin(), delta_.end(), T(0));
    steps_ = 0;
  }

 private:
  void check_explosion() { check_sensitivity_growth(delta_, options_, steps_, warned_); }

  const Kernel& k_;
  RtrlOptions<T> options_;
  typename Kernel::Step step_;
  std::vector<T> state_, delta_, next_delta_, adjoint_, gradient_;
  std::int64_t steps_ = 0;
  bool warned_ = false, warned_values_ = false;
};

}  // namespace loopgrad::runtime
