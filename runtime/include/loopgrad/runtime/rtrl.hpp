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

namespace loopgrad::runtime {

// What to do when the sensitivity Delta grows without bound (temporal gradient explosion: the
// recurrence is chaotic or unstable at the current parameters, and the gradient sum diverges).
enum class ExplosionPolicy {
  ignore,
  warn,   // one line on stderr the first time the threshold is crossed
  fail,   // throw TemporalGradientExplosion
};

class TemporalGradientExplosion : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T>
struct RtrlOptions {
  // Attenuation factor gamma on the recurrent term: Delta_N = I_N + gamma * sum_l D^(kl) Delta^l_(N-1).
  // gamma = 1 is exact. gamma < 1 is an approximation that trades exactness for stability: it
  // forgets the influence of old steps geometrically, like a soft truncation; gamma = 0 keeps one
  // step back (the 1st-order approximation).
  T attenuation = T(1);
  // The largest |Delta| entry (max norm) tolerated before `explosion` applies; non-finite values
  // always count as an explosion.
  T explosion_threshold = T(1e8);
  ExplosionPolicy explosion = ExplosionPolicy::warn;
};

// Applies `options.explosion` to a sensitivity Delta after step `steps`: its largest |entry| above
// `options.explosion_threshold`, or any non-finite entry, is a temporal gradient explosion. `warned`
// keeps the warning to one line per learner.
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
  const std::string message =
      "temporal gradient explosion at step " + std::to_string(steps) + ": the sensitivity dR/dP reached " +
      (finite ? std::to_string(static_cast<double>(largest)) : std::string("a non-finite value")) +
      " (threshold " + std::to_string(static_cast<double>(options.explosion_threshold)) +
      "); lower the learning rate, clip gradients, or set an attenuation factor below 1 (an approximation)";
  if (options.explosion == ExplosionPolicy::fail) throw TemporalGradientExplosion(message);
  if (!warned) std::fprintf(stderr, "loopgrad warning: %s\n", message.c_str());
  warned = true;
}

template <class Kernel, class T>
class Rtrl {
 public:
  explicit Rtrl(const Kernel& k, RtrlOptions<T> options = {})
      : k_(k),
        options_(options),
        state_(k.state_size(), T(0)),
        delta_(k.sensitivity_size(), T(0)),
        next_delta_(k.sensitivity_size(), T(0)),
        adjoint_(k.state_size(), T(0)),
        gradient_(k.param_count(), T(0)) {}

  // One step at parameters `params`: returns C_N; gradient() then holds dC_N/dP (zero without a
  // target). State and sensitivity advance to step N.
  T step(const std::vector<T>& params, const T* input, const T* target) {
    k_.forward(params.data(), state_.data(), input, step_);
    std::fill(gradient_.begin(), gradient_.end(), T(0));
    T c = 0;
    if (target != nullptr) {
      c = k_.loss(step_, target);
      k_.reverse(params.data(), step_, target, nullptr, gradient_.data(), adjoint_.data());
      k_.apply_sensitivity(delta_.data(), adjoint_.data(), gradient_.data());
    }
    // Delta_N is linear in Delta_(N-1) beyond the immediate term, so attenuating the recurrent
    // term is attenuating Delta_(N-1).
    if (options_.attenuation != T(1))
      for (T& d : delta_) d *= options_.attenuation;
    k_.sensitivity_update(params.data(), step_, delta_.data(), next_delta_.data());
    delta_.swap(next_delta_);
    k_.next_state(step_, state_.data());
    ++steps_;
    check_explosion();
    return c;
  }

  const std::vector<T>& gradient() const { return gradient_; }
  const std::vector<T>& state() const { return state_; }
  std::vector<T>& state() { return state_; }  // e.g. to start from a given R_0 or restore one
  const std::vector<T>& sensitivity() const { return delta_; }
  std::vector<T>& sensitivity() { return delta_; }  // for checkpoints
  const typename Kernel::Step& last_step() const { return step_; }
  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t n) { steps_ = n; }
  const RtrlOptions<T>& options() const { return options_; }
  // The largest |Delta| entry after the last step.
  T sensitivity_max() const {
    T m = 0;
    for (T d : delta_) m = std::max(m, std::abs(d));
    return m;
  }
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
  bool warned_ = false;
};

}  // namespace loopgrad::runtime
