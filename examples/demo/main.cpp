// loopgrad demo: a network declared in the DSL (demo_network.hpp), generated at build time into a
// self-contained kernel (demo_kernel.hpp), trained online with exact gradients (RTRL, parameters
// updated every step) on a memory task: the output must repeat the input from `delay` steps ago.
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>

#include "demo_kernel.hpp"  // generated: needs nothing but the standard library
#include "demo_network.hpp"
#include "loopgrad/emit/report.hpp"

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

  // What the analysis found (the generator printed the same at build time).
  const auto net = loopgrad::dsl::lower(demo::network());
  fmt::print("{}\n", loopgrad::emit::summary(net, loopgrad::analysis::analyse(net)));
  fmt::print("generated kernel: {}\ngraph: {}\nreport: {}\ninspector (open in a browser): {}\n\n", LOOPGRAD_DEMO_HEADER,
             LOOPGRAD_DEMO_DOT, LOOPGRAD_DEMO_JSON, LOOPGRAD_DEMO_HTML);

  // PyTorch's initialisation: uniform in +-1/sqrt(fan_in), fan_in the columns of each weight.
  demo_kernel::Params params;
  std::mt19937_64 rng(7);
  auto init = [&](auto span, std::size_t fan_in) {
    std::uniform_real_distribution<double> u(-1 / std::sqrt(double(fan_in)), 1 / std::sqrt(double(fan_in)));
    for (auto& w : span) w = u(rng);
  };
  init(params.W_xh(), 1);
  init(params.W_hh(), 12);
  init(params.b_h(), 12);
  init(params.W_hm(), 12);
  init(params.w_mm(), 6);
  init(params.b_m(), 6);
  init(params.W_hy(), 12);
  init(params.W_my(), 6);
  init(params.b_y(), 1);

  demo_kernel::State state;
  demo_kernel::Sensitivity sensitivity;
  demo_kernel::Gradient gradient;
  demo_kernel::Step step;
  demo_kernel::Input input;
  demo_kernel::Target target;

  fmt::print("training online with the generated kernel: exact RTRL gradients, SGD every step (rate {}),\n"
             "target y_N = x_(N-{})\n",
             rate, delay);
  std::uniform_real_distribution<double> uniform(-1, 1);
  std::deque<double> past(static_cast<std::size_t>(delay) + 1, 0.0);
  // Mean loss over windows that double in length, so the early fall is visible too.
  int window_start = 1, window_end = 100;
  double window = 0;
  for (int t = 1; t <= steps; ++t) {
    input.x()[0] = uniform(rng);
    past.push_front(input.x()[0]);
    past.pop_back();
    target.y()[0] = past.back();
    window += demo_kernel::rtrl_step(params, state, sensitivity, input, &target, gradient, step);
    for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] -= rate * gradient.flat[i];
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
