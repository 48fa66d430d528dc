#pragma once
// Gradient clipping, applied to a gradient before the optimizer sees it.
#include <algorithm>
#include <cmath>
#include <vector>

namespace loopgrad::runtime {

/// Scales g so that its Euclidean norm is at most max_norm; returns the norm before clipping.
template <class T>
T clip_by_global_norm(std::vector<T>& gradient, T max_norm) {
  T sum = 0;
  for (T g : gradient) sum += g * g;
  const T norm = std::sqrt(sum);
  if (norm > max_norm && norm > T(0)) {
    const T scale = max_norm / norm;
    for (T& g : gradient) g *= scale;
  }
  return norm;
}

/// Clamps every component of g into [-limit, limit]; returns how many were clamped.
template <class T>
std::size_t clip_by_value(std::vector<T>& gradient, T limit) {
  std::size_t clamped = 0;
  for (T& g : gradient) {
    const T c = std::clamp(g, -limit, limit);
    clamped += c != g ? 1 : 0;
    g = c;
  }
  return clamped;
}

}  // namespace loopgrad::runtime
