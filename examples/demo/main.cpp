// loopgrad demo: declare a network in the DSL, print what the analysis finds, and train it online
// with exact gradients (RTRL, parameters updated every step) on a memory task: the output must
// repeat the input from `delay` steps ago.
#include <fmt/format.h>

#include <cstdlib>
#include <algorithm>
#include <deque>
#include <random>
#include <string>

#include "demo_network.hpp"
#include "loopgrad/emit/report.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/rtrl.hpp"

int main(int argc, char** argv) {
  int steps = 20000;
  int delay = 3;
  double rate = 0.02;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (arg == "--delay" && i + 1 < argc) {
      delay = std::atoi(argv[++i]);
    } else if (arg == "--rate" && i + 1 < argc) {
      rate = std::atof(argv[++i]);
    } else {
      fmt::print("usage: {} [--steps N] [--delay D] [--rate R]\n", argv[0]);
      return arg == "--help" ? 0 : 2;
    }
  }
  if (steps <= 0 || delay < 0 || rate <= 0) {
    fmt::print(stderr, "{}: --steps and --rate must be positive and --delay not negative\n", argv[0]);
    return 2;
  }

  const auto net = loopgrad::dsl::lower(demo::network());
  const auto analysis = loopgrad::analysis::analyse(net);
  fmt::print("{}\n", loopgrad::emit::summary(net, analysis));

  const loopgrad::runtime::Interpreter<double> kernel(net, analysis);
  auto params = loopgrad::runtime::initial_params<double>(net, 7);
  loopgrad::runtime::Rtrl<loopgrad::runtime::Interpreter<double>, double> rtrl(kernel);

  fmt::print("training online, exact RTRL gradients, SGD every step (rate {}): y_N = x_(N-{})\n", rate, delay);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::deque<double> past(static_cast<std::size_t>(delay) + 1, 0.0);
  // Mean loss over windows that double in length, so the early fall is visible too.
  int window_start = 1, window_end = 100;
  double window = 0;
  for (int t = 1; t <= steps; ++t) {
    const double x = uniform(rng);
    past.push_front(x);
    past.pop_back();
    const double target = past.back();
    window += rtrl.step(params, &x, &target);
    loopgrad::runtime::sgd_update(params, rtrl.gradient(), rate);
    if (t == window_end || t == steps) {
      fmt::print("  steps {:>6} to {:>6}: mean loss {:.5f}\n", window_start, t, window / (t - window_start + 1));
      window = 0;
      window_start = t + 1;
      window_end = std::min(steps, 2 * window_end);
    }
  }
  fmt::print("(a network that ignores its memory scores about {:.3f}: the variance of the input)\n", 1.0 / 3.0);
  return 0;
}
