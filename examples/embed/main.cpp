// embed: the smallest app. It includes one generated header and nothing else from loopgrad (its
// target links only the header's directory), and learns online, one exact step at a time, to
// predict the next sample of a signal.
#include <cmath>
#include <cstdio>

#include "embed_kernel.hpp"

int main() {
  embed_kernel::Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.3f * std::sin(1.7f * static_cast<float>(i));
  embed_kernel::State state;
  embed_kernel::Sensitivity sensitivity;
  embed_kernel::Gradient gradient;
  embed_kernel::Step step;
  embed_kernel::Input input;
  embed_kernel::Target target;
  float window = 0;
  for (int t = 0; t < 6000; ++t) {
    const float now = std::sin(0.2f * static_cast<float>(t)) * std::cos(0.031f * static_cast<float>(t));
    const float next = std::sin(0.2f * static_cast<float>(t + 1)) * std::cos(0.031f * static_cast<float>(t + 1));
    input.x()[0] = now;
    target.y()[0] = next;
    window += embed_kernel::rtrl_step(params, state, sensitivity, input, &target, gradient, step);
    for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] -= 0.05f * gradient.flat[i];
    if ((t + 1) % 1000 == 0) {
      std::printf("step %5d: mean squared error %.6f\n", t + 1, static_cast<double>(window / 1000));
      window = 0;
    }
  }
  return 0;
}
