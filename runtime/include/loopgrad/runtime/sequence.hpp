#pragma once
// A sequence of steps: inputs every step, a target on the steps that have one.
#include <cstddef>
#include <optional>
#include <vector>

namespace loopgrad::runtime {

/// A sequence of steps: inputs every step, a target on the steps that have one (what bptt() and
/// sequence_loss() run over).
template <class T>
struct Sequence {
  std::vector<std::vector<T>> inputs;                 ///< per step, the kernel's input layout
  std::vector<std::optional<std::vector<T>>> targets;  ///< per step, the target layout or none
  std::size_t size() const { return inputs.size(); }  ///< the number of steps
  /// Step t's target, or nullptr when it has none.
  const T* target(std::size_t t) const { return targets[t] ? targets[t]->data() : nullptr; }
};

}  // namespace loopgrad::runtime
