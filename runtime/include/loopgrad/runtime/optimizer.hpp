#pragma once
// Optimizers: each applies a gradient to the parameters in place, and keeps its state in public
// plain data so that checkpoints can save and restore it exactly.
#include <cmath>
#include <cstdint>
#include <vector>

namespace loopgrad::runtime {

/// P <- P - rate * g
template <class T>
struct Sgd {
  T rate = T(0.01);  ///< the learning rate
  /// One update of `params` with `gradient` (same size).
  void apply(std::vector<T>& params, const std::vector<T>& gradient) {
    for (std::size_t i = 0; i < params.size(); ++i) params[i] -= rate * gradient[i];
  }
};

/// v <- momentum * v + g;  P <- P - rate * v
template <class T>
struct Momentum {
  T rate = T(0.01);  ///< the learning rate
  T momentum = T(0.9);  ///< the velocity's decay
  std::vector<T> velocity;  ///< v, sized on the first apply()
  /// One update of `params` with `gradient` (same size).
  void apply(std::vector<T>& params, const std::vector<T>& gradient) {
    velocity.resize(params.size(), T(0));
    for (std::size_t i = 0; i < params.size(); ++i) {
      velocity[i] = momentum * velocity[i] + gradient[i];
      params[i] -= rate * velocity[i];
    }
  }
};

/// Adam (Kingma & Ba 2015) with bias correction.
template <class T>
struct Adam {
  T rate = T(0.001);  ///< the learning rate
  T beta1 = T(0.9);  ///< decay of the first moment
  T beta2 = T(0.999);  ///< decay of the second moment
  T epsilon = T(1e-8);  ///< added to the second moment's root
  std::vector<T> first;   ///< m
  std::vector<T> second;  ///< v
  std::int64_t steps = 0;  ///< updates applied (for the bias correction)
  /// One update of `params` with `gradient` (same size).
  void apply(std::vector<T>& params, const std::vector<T>& gradient) {
    first.resize(params.size(), T(0));
    second.resize(params.size(), T(0));
    ++steps;
    const T c1 = T(1) - static_cast<T>(std::pow(static_cast<double>(beta1), static_cast<double>(steps)));
    const T c2 = T(1) - static_cast<T>(std::pow(static_cast<double>(beta2), static_cast<double>(steps)));
    for (std::size_t i = 0; i < params.size(); ++i) {
      first[i] = beta1 * first[i] + (T(1) - beta1) * gradient[i];
      second[i] = beta2 * second[i] + (T(1) - beta2) * gradient[i] * gradient[i];
      params[i] -= rate * (first[i] / c1) / (std::sqrt(second[i] / c2) + epsilon);
    }
  }
};

}  // namespace loopgrad::runtime
