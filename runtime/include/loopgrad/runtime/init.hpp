#pragma once
// Parameter initialisation as PyTorch does it for its recurrent layers: every value uniform in
// [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in the number of columns of the group's weight matrix
// (for biases and diagonal weights, the size of the group they belong to).
#include <cmath>
#include <random>
#include <vector>

#include "loopgrad/ir/network.hpp"

namespace loopgrad::runtime {

/// Initial parameters for `net` as PyTorch draws them (uniform in +-1/sqrt(fan_in), above), from a
/// generator seeded with `seed`, times `scale`.
template <class T>
std::vector<T> initial_params(const ir::Network& net, unsigned seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::vector<T> params;
  for (const auto& p : net.params) {
    const double fan_in = p.cols > 1 ? p.cols : net.groups[static_cast<std::size_t>(p.group)].size;
    std::uniform_real_distribution<double> u(-scale / std::sqrt(fan_in), scale / std::sqrt(fan_in));
    for (int i = 0; i < p.size(); ++i) params.push_back(static_cast<T>(u(rng)));
  }
  return params;
}

}  // namespace loopgrad::runtime
