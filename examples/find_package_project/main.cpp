// Learns online, one step at a time, to output the sum of the two inputs seen two steps ago.
#include <cmath>
#include <cstdio>
#include <random>

#include "gru_kernel.hpp"

int main() {
  gru_kernel::Params params;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> init(-0.35f, 0.35f), u(-1.0f, 1.0f);
  for (auto& w : params.flat) w = init(rng);
  gru_kernel::State state;
  gru_kernel::Sensitivity sensitivity;
  gru_kernel::Gradient gradient;
  gru_kernel::Step step;
  gru_kernel::Input input;
  gru_kernel::Target target;
  float s1 = 0, s2 = 0, first = 0, last = 0;
  const int steps = 8000;
  for (int t = 0; t < steps; ++t) {
    input.x()[0] = u(rng);
    input.x()[1] = u(rng);
    target.y()[0] = s2;
    const float loss = gru_kernel::rtrl_step(params, state, sensitivity, input, &target, gradient, step);
    for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] -= 0.1f * gradient.flat[i];
    if (t < 500) first += loss / 500;
    if (t >= steps - 500) last += loss / 500;
    s2 = s1;
    s1 = 0.5f * (input.x()[0] + input.x()[1]);
  }
  std::printf("%s: mean loss %.4f over the first 500 steps, %.4f over the last 500\n", gru_kernel::network_name,
              static_cast<double>(first), static_cast<double>(last));
  return last < 0.5f * first ? 0 : 1;
}
