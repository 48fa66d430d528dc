// long_memory: delayed recall. The input is a random sign x_N in {-1, +1}; the target is the input
// D steps back, y_N = x_(N-D). Solving it needs a memory of D steps, and learning it needs a
// gradient that reaches D steps back. Each delay is learned online (an Adam update every step)
// with exact RTRL and with truncated BPTT whose window k is shorter than some of the delays;
// accuracy is the share of signs recalled correctly afterwards, with the parameters frozen.
// What the seed paper claims: truncated BPTT cannot learn a dependency longer than its window,
// exact RTRL can.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "example_support.hpp"
#include "long_memory_kernel.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace {

using Kernel = long_memory_kernel::Kernel;
using Scalar = long_memory_kernel::Scalar;

std::vector<Scalar> initial_params(unsigned seed) {
  // PyTorch's initialisation: uniform in +-1/sqrt(fan_in).
  long_memory_kernel::Params p;
  std::mt19937 rng(seed);
  auto fill = [&](auto span, double fan_in) {
    std::uniform_real_distribution<double> u(-1 / std::sqrt(fan_in), 1 / std::sqrt(fan_in));
    for (auto& w : span) w = u(rng);
  };
  fill(p.rnn_W_xh(), 1);
  fill(p.rnn_W_hh(), 24);
  fill(p.rnn_b_h(), 24);
  fill(p.W_hy(), 24);
  fill(p.b_y(), 24);
  return p.flat;
}

struct Result {
  double accuracy;
  std::vector<double> curve;  // mean loss per window
};

template <class Learner>
Result run(Learner& learner, int delay, int steps, int window, double rate, unsigned seed) {
  const Kernel kernel;
  auto params = initial_params(seed);
  loopgrad::runtime::Adam<Scalar> adam;
  adam.rate = rate;
  std::mt19937 rng(seed * 31 + 7);
  std::vector<Scalar> history(static_cast<std::size_t>(delay) + 1, 0);
  Result result;
  double sum = 0;
  auto next = [&](std::size_t t) {
    const Scalar x = (rng() & 1) ? 1 : -1;
    history[t % history.size()] = x;
    return x;
  };
  for (int t = 0; t < steps; ++t) {
    const Scalar x = next(static_cast<std::size_t>(t));
    const Scalar target = t >= delay ? history[static_cast<std::size_t>(t - delay) % history.size()] : 0;
    sum += learner.observe(params, &x, t >= delay ? &target : nullptr);
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    if ((t + 1) % window == 0) {
      result.curve.push_back(sum / window);
      sum = 0;
    }
  }
  // Evaluation with frozen parameters on fresh inputs.
  Kernel::Step step;
  std::vector<Scalar> state(Kernel::state_size(), 0);
  int correct = 0, counted = 0;
  for (int t = 0; t < 2000; ++t) {
    const Scalar x = next(static_cast<std::size_t>(steps + t));
    kernel.forward(params.data(), state.data(), &x, step);
    kernel.next_state(step, state.data());
    if (t >= 100) {
      const Scalar target = history[static_cast<std::size_t>(steps + t - delay) % history.size()];
      const Scalar y = step.y()[0];
      correct += (y > 0) == (target > 0) ? 1 : 0;
      ++counted;
    }
  }
  result.accuracy = static_cast<double>(correct) / counted;
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Options opt(argc, argv,
                        {{"steps", "30000"}, {"truncation", "3"}, {"delays", "1,2,4,5,6"}, {"rate", "0.003"},
                         {"seed", "1"}, {"out", "long_memory_results"}},
                        "long_memory: delayed recall learned online with exact RTRL vs truncated BPTT");
  const int steps = opt.integer("steps"), k = opt.integer("truncation");
  const double rate = opt.number("rate");
  const auto seed = static_cast<unsigned>(opt.integer("seed"));
  std::vector<int> delays;
  for (std::size_t at = 0; at < opt.text("delays").size();) {
    const auto comma = opt.text("delays").find(',', at);
    delays.push_back(std::stoi(opt.text("delays").substr(at, comma - at)));
    at = comma == std::string::npos ? opt.text("delays").size() : comma + 1;
  }
  const std::filesystem::path out = opt.text("out");
  std::filesystem::create_directories(out);
  const int window = std::max(1, steps / 100);

  const Kernel kernel;
  examples::Curves curves{"step", {}, {}, {}};
  for (int i = 1; i <= steps / window; ++i) curves.x.push_back(i * window);
  std::string json = "[\n";
  std::printf("%-28s %6s %11s %9s\n", "method", "delay", "truncation", "accuracy");
  for (int d : delays) {
    for (int method = 0; method < 2; ++method) {
      Result r;
      std::string name;
      if (method == 0) {
        loopgrad::runtime::ExactRtrl<Kernel, Scalar> learner(kernel);
        r = run(learner, d, steps, window, rate, seed);
        name = "exact RTRL";
      } else {
        loopgrad::runtime::TruncatedBptt<Kernel, Scalar> learner(kernel, 1, k);
        r = run(learner, d, steps, window, rate, seed);
        name = "truncated BPTT(1, " + std::to_string(k) + ")";
      }
      std::printf("%-28s %6d %11s %8.1f%%\n", name.c_str(), d, method == 0 ? "none" : std::to_string(k).c_str(),
                  100 * r.accuracy);
      std::fflush(stdout);
      curves.names.push_back((method == 0 ? "rtrl_D" : "tbptt_D") + std::to_string(d));
      curves.columns.push_back(r.curve);
      json += std::string(json.size() > 2 ? ",\n" : "") + "  {\"method\": \"" + (method == 0 ? "rtrl" : "truncated_bptt") +
              "\", \"delay\": " + std::to_string(d) + ", \"truncation\": " + (method == 0 ? "null" : std::to_string(k)) +
              ", \"accuracy\": " + std::to_string(r.accuracy) + "}";
    }
  }
  json += "\n]\n";
  std::ofstream(out / "long_memory.json") << json;
  curves.write_csv(out / "long_memory_curves.csv");
  examples::plot_csv(out / "long_memory_curves.csv", out / "long_memory_curves.png",
                     "long_memory: mean loss while learning online", "mean squared error", curves.names.size(), true);
  std::printf("wrote %s/long_memory.json, long_memory_curves.csv%s\n", out.string().c_str(),
              std::filesystem::exists(out / "long_memory_curves.png") ? ", long_memory_curves.png" : "");
  return 0;
}
