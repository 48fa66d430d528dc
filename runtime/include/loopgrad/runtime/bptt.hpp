#pragma once
// Full backpropagation through time over a stored sequence, on any kernel with the interpreter's
// interface: every step's values are kept (memory grows with the sequence), then one reverse
// sweep. The gradient is that of L = sum_N C_N with the parameters held fixed.
#include <vector>

#include "loopgrad/runtime/sequence.hpp"

namespace loopgrad::runtime {

/// What bptt() returns: the sequence's loss L and dL/dP.
template <class T>
struct LossAndGradient {
  T loss = 0;  ///< L = sum_N C_N
  std::vector<T> gradient;  ///< dL/dP (param_count() values)
};

/// L = sum_N C_N over `seq`, starting from `initial_state` (empty: zero state). Forward only.
template <class Kernel, class T>
T sequence_loss(const Kernel& k, const std::vector<T>& params, const Sequence<T>& seq,
                std::vector<T> initial_state = {}) {
  std::vector<T> state = initial_state.empty() ? std::vector<T>(k.state_size(), T(0)) : std::move(initial_state);
  typename Kernel::Step step;
  T loss = 0;
  for (std::size_t t = 0; t < seq.size(); ++t) {
    k.forward(params.data(), state.data(), seq.inputs[t].data(), step);
    loss += k.loss(step, seq.target(t));
    k.next_state(step, state.data());
  }
  return loss;
}

/// L and dL/dP by BPTT over the whole sequence.
template <class Kernel, class T>
LossAndGradient<T> bptt_gradient(const Kernel& k, const std::vector<T>& params, const Sequence<T>& seq,
                                 std::vector<T> initial_state = {}) {
  std::vector<T> state = initial_state.empty() ? std::vector<T>(k.state_size(), T(0)) : std::move(initial_state);
  std::vector<typename Kernel::Step> steps(seq.size());
  LossAndGradient<T> out;
  out.gradient.assign(k.param_count(), T(0));
  for (std::size_t t = 0; t < seq.size(); ++t) {
    k.forward(params.data(), state.data(), seq.inputs[t].data(), steps[t]);
    out.loss += k.loss(steps[t], seq.target(t));
    k.next_state(steps[t], state.data());
  }
  std::vector<T> adjoint(k.state_size(), T(0)), prev(k.state_size(), T(0));
  for (std::size_t t = seq.size(); t-- > 0;) {
    k.reverse(params.data(), steps[t], seq.target(t), adjoint.data(), out.gradient.data(), prev.data());
    adjoint.swap(prev);
  }
  return out;
}

}  // namespace loopgrad::runtime
