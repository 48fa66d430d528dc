// Per-step time of one exact RTRL step (forward, loss, gradient by Eqn. 5, sensitivity update by
// Eqn. 4) for the LSTM with 32 units: the generated kernel against the reference interpreter.
// A program that prints figures, run by hand: ./build/release/benchmarks/loopgrad_step_time
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

#include "loopgrad/cells/lstm.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/rtrl.hpp"
#include "lstm32_kernel.hpp"

namespace {

// Median of `repeats` runs of `steps` RTRL steps, in nanoseconds per step.
template <class Kernel>
double ns_per_step(const Kernel& kernel, const std::vector<double>& params, int steps, int repeats) {
  std::mt19937 rng(1);
  std::normal_distribution<double> normal;
  std::vector<std::vector<double>> inputs(static_cast<std::size_t>(steps), std::vector<double>(kernel.input_size()));
  for (auto& x : inputs)
    for (auto& v : x) v = normal(rng);
  std::vector<double> target(kernel.target_size(), 0.5);
  std::vector<double> times;
  double checksum = 0;
  for (int r = 0; r < repeats; ++r) {
    loopgrad::runtime::Rtrl<Kernel, double> rtrl(kernel);
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < steps; ++t) checksum += rtrl.step(params, inputs[static_cast<std::size_t>(t)].data(), target.data());
    const auto stop = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::nano>(stop - start).count() / steps);
  }
  std::sort(times.begin(), times.end());
  if (checksum == 42.4242) fmt::print("");  // keeps the work observable
  return times[times.size() / 2];
}

}  // namespace

int main() {
  const auto net = loopgrad::dsl::lower(loopgrad::cells::lstm_network<4, 32, 2>());
  const loopgrad::runtime::Interpreter<double> interpreter(net);
  const lstm32_kernel::Kernel generated;
  const auto params = loopgrad::runtime::initial_params<double>(net, 1);
  fmt::print("LSTM, 32 units, 4 inputs, {} parameters, {} sensitivity values, {} MACs per step (analysis)\n",
             interpreter.param_count(), interpreter.sensitivity_size(), lstm32_kernel::macs_per_step);
  const double interpreted = ns_per_step(interpreter, params, 20, 5);
  const double kernel = ns_per_step(generated, params, 200, 7);
  fmt::print("reference interpreter: {:>12.0f} ns per step\n", interpreted);
  fmt::print("generated kernel:      {:>12.0f} ns per step  ({:.1f}x faster, {:.2f} GMAC/s)\n", kernel,
             interpreted / kernel, static_cast<double>(lstm32_kernel::macs_per_step) / kernel);
  return 0;
}
