// chaotic_online: one-step-ahead prediction of the Mackey-Glass series (tau = 17, a chaotic delay
// differential equation), learned online: one step of the series at a time, a parameter update
// every step (or every k1 steps for truncated BPTT), no epochs, no replay. Exact RTRL against
// truncated BPTT and an N-th order approximation, on the same generated GRU kernel.
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "chaotic_kernel.hpp"
#include "example_support.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace {

using Kernel = chaotic_kernel::Kernel;
using Scalar = chaotic_kernel::Scalar;

// Mackey-Glass, dx/dt = 0.2 x(t - 17) / (1 + x(t - 17)^10) - 0.1 x(t), integrated with fourth-order
// Runge-Kutta at dt = 0.1 (the delayed term held over each step), sampled every 1.0 and
// standardised to zero mean and unit variance.
std::vector<double> mackey_glass(int samples) {
  const double dt = 0.1;
  const int lag = 170, per_sample = 10, warmup = 3000;
  std::deque<double> past(lag, 1.2);
  double x = 1.2;
  auto f = [](double v, double delayed) { return 0.2 * delayed / (1 + std::pow(delayed, 10)) - 0.1 * v; };
  std::vector<double> out;
  for (int i = 0; i < (warmup + samples) * per_sample; ++i) {
    const double d = past.front();
    const double k1 = f(x, d), k2 = f(x + dt / 2 * k1, d), k3 = f(x + dt / 2 * k2, d), k4 = f(x + dt * k3, d);
    past.pop_front();
    past.push_back(x);
    x += dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
    if (i % per_sample == 0 && i / per_sample >= warmup) out.push_back(x);
  }
  double mean = 0, var = 0;
  for (double v : out) mean += v / out.size();
  for (double v : out) var += (v - mean) * (v - mean) / out.size();
  for (double& v : out) v = (v - mean) / std::sqrt(var);
  return out;
}

std::vector<Scalar> initial_params() {
  chaotic_kernel::Params p;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1 / std::sqrt(8.0), 1 / std::sqrt(8.0));
  for (auto& w : p.flat) w = u(rng);
  return p.flat;
}

// Mean squared one-step error per window; the series has unit variance, so this is the NMSE.
template <class Learner>
std::vector<double> run(Learner& learner, const std::vector<double>& series, int window, double rate) {
  auto params = initial_params();
  loopgrad::runtime::Adam<Scalar> adam;
  adam.rate = rate;
  std::vector<double> curve;
  double sum = 0;
  for (std::size_t t = 0; t + 1 < series.size(); ++t) {
    const Scalar x = series[t], target = series[t + 1];
    // C_N = (y - target)^2 for one output, so the loss is the squared error.
    sum += learner.observe(params, &x, &target);
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    if ((t + 1) % static_cast<std::size_t>(window) == 0) {
      curve.push_back(sum / window);
      sum = 0;
      if (curve.size() % 10 == 0) {
        std::printf("    step %6zu: mean squared error %.5f\n", t + 1, curve.back());
        std::fflush(stdout);
      }
    }
  }
  return curve;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Options opt(argc, argv, {{"steps", "50000"}, {"rate", "0.001"}, {"out", "chaotic_online_results"}},
                        "chaotic_online: Mackey-Glass one-step prediction learned online");
  const int steps = opt.integer("steps");
  const double rate = opt.number("rate");
  const std::filesystem::path out = opt.text("out");
  std::filesystem::create_directories(out);
  const auto series = mackey_glass(steps + 1);
  const int window = std::max(1, steps / 50);
  const Kernel kernel;

  examples::Curves curves{"step", {}, {}, {}};
  for (int i = 1; i <= steps / window; ++i) curves.x.push_back(i * window);
  std::vector<std::pair<std::string, double>> finals;
  auto record = [&](const std::string& name, const std::vector<double>& curve) {
    curves.names.push_back(name);
    curves.columns.push_back(curve);
    double last = 0;
    const std::size_t n = std::min<std::size_t>(5, curve.size());
    for (std::size_t i = curve.size() - n; i < curve.size(); ++i) last += curve[i] / static_cast<double>(n);
    finals.emplace_back(name, last);
  };
  std::printf("exact RTRL, an update every step\n");
  loopgrad::runtime::ExactRtrl<Kernel, Scalar> rtrl(kernel);
  record("exact_rtrl", run(rtrl, series, window, rate));
  std::printf("truncated BPTT(10, 10), an update every 10 steps\n");
  loopgrad::runtime::TruncatedBptt<Kernel, Scalar> tbptt(kernel, 10, 10);
  record("truncated_bptt_10", run(tbptt, series, window, rate));
  std::printf("N-th order, N = 2, an update every step\n");
  loopgrad::runtime::NthOrder<Kernel, Scalar> nth(kernel, 2);
  record("nth_order_2", run(nth, series, window, rate));

  std::printf("\nfinal one-step error (mean over the last %d steps, series of unit variance):\n", 5 * window);
  for (const auto& [name, e] : finals) std::printf("  %-20s %.5f\n", name.c_str(), e);
  curves.write_csv(out / "chaotic_online_curves.csv");
  examples::plot_csv(out / "chaotic_online_curves.csv", out / "chaotic_online_curves.png",
                     "chaotic_online: Mackey-Glass one-step error while learning", "mean squared error", 3, true);
  std::printf("wrote %s/chaotic_online_curves.csv\n", out.string().c_str());
  return 0;
}
