#pragma once
// What the exactness checks share: a relative difference, and a random sequence of inputs and
// targets for a network (some steps without a target).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "loopgrad/ir/network.hpp"
#include "loopgrad/runtime/sequence.hpp"

namespace loopgrad::testing {

// ||a - b|| / ||b|| (0 when both are zero).
template <class A, class B>
double relative_difference(const A* a, const B* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
    den += double(b[i]) * double(b[i]);
  }
  if (num == 0) return 0;
  return std::sqrt(num / std::max(den, 1e-300));
}

inline std::string fmt_double(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", x);
  return buffer;
}

// `steps` steps of normal inputs; every fifth step (from the third) has no target, the others a
// uniform target per MSE output and a one-hot one per softmax output.
template <class T>
runtime::Sequence<T> random_sequence(const ir::Network& net, std::size_t input_size, std::size_t steps, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-1, 1);
  runtime::Sequence<T> seq;
  for (std::size_t t = 0; t < steps; ++t) {
    std::vector<T> x(input_size);
    for (auto& v : x) v = T(normal(rng));
    seq.inputs.push_back(x);
    if (t % 5 == 2) {
      seq.targets.emplace_back();
      continue;
    }
    std::vector<T> y;
    for (const auto& g : net.groups) {
      if (!g.is_output()) continue;
      std::vector<T> part(std::size_t(g.size), T(0));
      if (g.loss == ir::Loss::softmax_cross_entropy)
        part[rng() % part.size()] = T(1);
      else
        for (auto& v : part) v = T(uniform(rng));
      y.insert(y.end(), part.begin(), part.end());
    }
    seq.targets.emplace_back(y);
  }
  return seq;
}

}  // namespace loopgrad::testing
