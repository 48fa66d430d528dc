#pragma once
// Exact online gradients (real-time recurrent learning, the discrete forward sensitivity
// equation): constant memory and work per step, however long the sequence. Each step gives
// dC_N/dP by Eqn. 5 and advances Delta by Eqn. 4; the parameters may change between steps.
#include <vector>

namespace loopgrad::runtime {

template <class Kernel, class T>
class Rtrl {
 public:
  explicit Rtrl(const Kernel& k)
      : k_(k),
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
    k_.sensitivity_update(params.data(), step_, delta_.data(), next_delta_.data());
    delta_.swap(next_delta_);
    k_.next_state(step_, state_.data());
    return c;
  }

  const std::vector<T>& gradient() const { return gradient_; }
  const std::vector<T>& state() const { return state_; }
  std::vector<T>& state() { return state_; }  // e.g. to start from a given R_0
  const std::vector<T>& sensitivity() const { return delta_; }
  const typename Kernel::Step& last_step() const { return step_; }
  void reset() {
    std::fill(state_.begin(), state_.end(), T(0));
    std::fill(delta_.begin(), delta_.end(), T(0));
  }

 private:
  const Kernel& k_;
  typename Kernel::Step step_;
  std::vector<T> state_, delta_, next_delta_, adjoint_, gradient_;
};

// Plain stochastic gradient descent, P <- P - rate * g.
template <class T>
void sgd_update(std::vector<T>& params, const std::vector<T>& gradient, T rate) {
  for (std::size_t i = 0; i < params.size(); ++i) params[i] -= rate * gradient[i];
}

}  // namespace loopgrad::runtime
