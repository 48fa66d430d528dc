// deep_online: a stack of four minGRU layers (128 units each, 2 inputs, 99,969 parameters)
// learning marked recall online. Every step brings a random sign x_N in {-1, +1} and a marker m_N,
// which is 1 once a round and 0 otherwise; a round lasts D + 1 to D + 1 + D/2 steps (D = 30 by
// default). Exactly D steps after the marker comes the round's one target: the sign that came with
// the marker. The readout sees only the top layer, so the marked sign must be carried up through
// all four layers, and the gates that store it at the marker (and not the signs around it) learn
// only from the error made D steps later.
//
// Three learners on the same network, the same initial parameters and the same stream, an Adam
// update every step, no epochs, no replay:
//   exact        the exact gradient (ExactOnline: the algorithm the cost model picks for this
//                network, here the blocked one; its gradient is RTRL's to rounding);
//   layer_local  RTRL on the kernel generated with LAYER_LOCAL "*": each layer's sensitivity keeps
//                only its own parameters, so a lower layer's weights learn from what they do to
//                the loss now (through the layers above, within the step) and through their own
//                layer's memory, not through the memory of the layers above;
//   tbptt        truncated BPTT over the last k = 10 steps, every step: no error reaches back to a
//                marker, so nothing teaches the gates to store its sign.
// While learning, the progress lines and the curves give the loss and the share of right signs at
// the targets; accuracy is the share of targets whose sign the network gives afterwards, with the
// parameters frozen, on a fresh stream. The learners run side by side, one thread each.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "deep_online_kernel.hpp"
#include "deep_online_layer_local_kernel.hpp"
#include "example_support.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace {

using Kernel = deep_online_kernel::Kernel;
using LocalKernel = deep_online_layer_local_kernel::Kernel;
using Scalar = deep_online_kernel::Scalar;
static_assert(Kernel::param_count() == LocalKernel::param_count() && Kernel::state_size() == LocalKernel::state_size(),
              "the two kernels must be the same network");

// PyTorch's initialisation (uniform in +-1/sqrt(fan_in)) for the weights and the candidates'
// biases; the update gates' biases by chrono initialisation (Tallec and Ollivier 2018): unit i of
// each layer starts with z = 1/T_i, T_i log-uniform in [2, max_memory], so that the stack starts
// with memories of every length up to max_memory steps instead of all about two steps.
std::vector<Scalar> initial_params(unsigned seed, double max_memory) {
  deep_online_kernel::Params p;
  std::mt19937 rng(seed);
  auto fill = [&](auto span, double fan_in) {
    std::uniform_real_distribution<double> u(-1 / std::sqrt(fan_in), 1 / std::sqrt(fan_in));
    for (auto& w : span) w = u(rng);
  };
  auto chrono = [&](auto span) {
    std::uniform_real_distribution<double> u(std::log(2.0), std::log(std::max(2.0, max_memory)));
    for (auto& b : span) b = -std::log(std::exp(u(rng)) - 1);  // sigmoid(b) = 1/T
  };
  const double n = static_cast<double>(p.l1_b_z().size());
  fill(p.l1_W_z(), 2), chrono(p.l1_b_z()), fill(p.l1_W_h(), 2), fill(p.l1_b_h(), 2);
  fill(p.l2_W_z(), n), chrono(p.l2_b_z()), fill(p.l2_W_h(), n), fill(p.l2_b_h(), n);
  fill(p.l3_W_z(), n), chrono(p.l3_b_z()), fill(p.l3_W_h(), n), fill(p.l3_b_h(), n);
  fill(p.l4_W_z(), n), chrono(p.l4_b_z()), fill(p.l4_W_h(), n), fill(p.l4_b_h(), n);
  fill(p.W_hy(), n), fill(p.b_y(), n);
  return p.flat;
}

// The task's stream (above): each step's input (x_N, m_N) and, D steps after a marker, the marked
// sign as the target.
class MarkedRecall {
 public:
  MarkedRecall(int delay, unsigned seed) : delay_(delay), rng_(seed), gap_(delay + 1, delay + 1 + delay / 2) {
    until_marker_ = gap_(rng_);
  }
  // The next step's input; has_target() and target() then describe that step.
  const Scalar* next() {
    input_[0] = (rng_() & 1) ? 1 : -1;
    input_[1] = 0;
    if (--until_marker_ == 0) {
      input_[1] = 1;
      marked_ = input_[0];
      since_marker_ = 0;
      until_marker_ = gap_(rng_);
    } else if (since_marker_ >= 0) {
      ++since_marker_;
    }
    return input_;
  }
  bool has_target() const { return since_marker_ == delay_; }
  Scalar target() const { return marked_; }

 private:
  int delay_;
  std::mt19937 rng_;
  std::uniform_int_distribution<int> gap_;
  Scalar input_[2] = {0, 0};
  Scalar marked_ = 0;
  int until_marker_ = 0, since_marker_ = -1;
};

struct Settings {
  int steps, delay, window, report, eval;
  double rate, max_memory;
  unsigned seed;
};

struct Result {
  std::string method, label;
  std::vector<double> loss;  // mean loss per window while learning
  double accuracy = 0, eval_mse = 0, ms_per_step = 0;
};

std::mutex print_mutex;

// Learns online with `learner` (every step: observe, then an Adam update when a gradient is ready),
// then evaluates with the parameters frozen.
template <class Learner>
void run(Learner& learner, const Settings& s, Result& result) {
  const Kernel kernel;
  auto params = initial_params(s.seed, s.max_memory);
  loopgrad::runtime::Adam<Scalar> adam;
  adam.rate = s.rate;
  MarkedRecall task(s.delay, s.seed * 31 + 7);
  Kernel::Step step;
  double loss_sum = 0, counted = 0;                              // this window's
  double report_loss = 0, report_right = 0, report_counted = 0;  // since the last progress line
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < s.steps; ++t) {
    const Scalar* x = task.next();
    const bool scored = task.has_target();
    const Scalar target = scored ? task.target() : 0;
    const double loss = learner.observe(params, x, scored ? &target : nullptr);
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    if (scored) {
      // The learner's loss is the mean squared error (y - target)^2, so |y - target| < 1 says
      // that y has target's sign.
      loss_sum += loss, report_loss += loss;
      report_right += loss < 1 ? 1 : 0;
      ++counted, ++report_counted;
    }
    if ((t + 1) % s.window == 0) {
      result.loss.push_back(counted > 0 ? loss_sum / counted : result.loss.empty() ? 1.0 : result.loss.back());
      loss_sum = counted = 0;
    }
    if ((t + 1) % s.report == 0 || t + 1 == s.steps) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double rate = (t + 1) / seconds;
      const std::lock_guard lock(print_mutex);
      std::printf("  [%-11s] step %7d/%d  loss %.4f  recalled %5.1f%%  %8.1f steps/s  %5.0f s left\n",
                  result.method.c_str(), t + 1, s.steps, report_counted > 0 ? report_loss / report_counted : 1.0,
                  100 * (report_counted > 0 ? report_right / report_counted : 0.5), rate, (s.steps - t - 1) / rate);
      std::fflush(stdout);
      report_loss = report_right = report_counted = 0;
    }
  }
  result.ms_per_step = 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / s.steps;

  // Evaluation with frozen parameters, on a stream the learner has not seen.
  MarkedRecall fresh(s.delay, s.seed * 31 + 1009);
  std::vector<Scalar> state(Kernel::state_size(), 0);
  int correct = 0, scored = 0;
  double squared = 0;
  for (int t = 0; t < s.eval; ++t) {
    const Scalar* x = fresh.next();
    kernel.forward(params.data(), state.data(), x, step);
    kernel.next_state(step, state.data());
    if (fresh.has_target()) {
      const Scalar y = step.y()[0], target = fresh.target();
      correct += (y > 0) == (target > 0) ? 1 : 0;
      squared += (y - target) * (y - target);
      ++scored;
    }
  }
  result.accuracy = scored > 0 ? static_cast<double>(correct) / scored : 0;
  result.eval_mse = scored > 0 ? squared / scored : 0;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Options opt(argc, argv,
                        {{"steps", "40000"},
                         {"delay", "30"},
                         {"truncation", "10"},
                         {"rate", "0.001"},
                         {"max-memory", "100"},
                         {"eval", "5000"},
                         {"methods", "exact,layer_local,tbptt"},
                         {"seed", "1"},
                         {"out", "deep_online_results"}},
                        "deep_online: marked recall learned online by a 4-layer minGRU stack, with the exact gradient,\n"
                        "the layer_local approximation and truncated BPTT (methods: exact, layer_local, tbptt)");
  Settings s{};
  s.steps = opt.integer("steps"), s.delay = opt.integer("delay"), s.eval = opt.integer("eval");
  s.rate = opt.number("rate"), s.max_memory = opt.number("max-memory");
  s.seed = static_cast<unsigned>(opt.integer("seed"));
  const int k = opt.integer("truncation");
  if (s.steps < 1 || s.delay < 1 || s.eval < 1 || k < 1 || s.rate <= 0) {
    std::fprintf(stderr, "deep_online: --steps, --delay, --eval and --truncation must be at least 1, --rate positive\n");
    return 2;
  }
  s.window = std::max(1, s.steps / 40);
  s.report = std::max(s.window, s.steps / 20);
  const auto methods = split(opt.text("methods"));
  if (methods.empty()) {
    std::fprintf(stderr, "deep_online: --methods names none (use exact, layer_local, tbptt)\n");
    return 2;
  }
  for (const auto& m : methods)
    if (m != "exact" && m != "layer_local" && m != "tbptt") {
      std::fprintf(stderr, "deep_online: unknown method '%s' in --methods (use exact, layer_local, tbptt)\n", m.c_str());
      return 2;
    }
  const std::filesystem::path out = opt.text("out");
  std::filesystem::create_directories(out);

  const Kernel kernel;
  const LocalKernel local_kernel;
  std::printf("network: 4 minGRU layers of %zu units on 2 inputs, %zu parameters\n", deep_online_kernel::Params{}.l1_b_z().size(),
              Kernel::param_count());
  std::printf("task: marked recall, D = %d; %d steps online, Adam rate %g, evaluated on %d fresh steps\n", s.delay,
              s.steps, s.rate, s.eval);
  std::printf("sensitivity values stored: exact %zu, layer_local %zu (%s gradient)\n", Kernel::sensitivity_size(),
              LocalKernel::sensitivity_size(), LocalKernel::exact_gradient() ? "exact" : "approximate");

  std::vector<Result> results;
  for (const auto& m : methods) results.push_back(Result{m, "", {}});
  std::vector<std::function<void()>> jobs;
  for (auto& r : results) {
    if (r.method == "exact") {
      r.label = Kernel::recommended_block_length() > 0
                    ? "exact (blocked, h = " + std::to_string(Kernel::recommended_block_length()) + ")"
                    : "exact (RTRL)";
      jobs.emplace_back([&] {
        loopgrad::runtime::ExactOnline<Kernel, Scalar> learner(kernel);
        run(learner, s, r);
      });
    } else if (r.method == "layer_local") {
      r.label = "layer_local RTRL";
      jobs.emplace_back([&] {
        loopgrad::runtime::ExactRtrl<LocalKernel, Scalar> learner(local_kernel);
        run(learner, s, r);
      });
    } else {
      r.label = "truncated BPTT(1, " + std::to_string(k) + ")";
      jobs.emplace_back([&, k] {
        loopgrad::runtime::TruncatedBptt<Kernel, Scalar> learner(kernel, 1, k);
        run(learner, s, r);
      });
    }
  }
  // One thread per learner; the exact one takes the longest, so the others finish beside it.
  std::vector<std::thread> threads;
  std::vector<std::string> errors(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i)
    threads.emplace_back([&, i] {
      try {
        jobs[i]();
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < errors.size(); ++i)
    if (!errors[i].empty()) {
      std::fprintf(stderr, "deep_online: %s failed: %s\n", results[i].method.c_str(), errors[i].c_str());
      return 1;
    }

  std::printf("\n%-26s %9s %9s %11s\n", "method", "accuracy", "eval MSE", "ms / step");
  std::string json = "[\n";
  examples::Curves curves{"step", {}, {}, {}};
  for (std::size_t i = 1; i <= results.front().loss.size(); ++i) curves.x.push_back(static_cast<double>(i * s.window));
  for (const auto& r : results) {
    std::printf("%-26s %8.1f%% %9.4f %11.3f\n", r.label.c_str(), 100 * r.accuracy, r.eval_mse, r.ms_per_step);
    json += std::string(json.size() > 2 ? ",\n" : "") + "  {\"method\": \"" + r.method + "\", \"label\": \"" + r.label +
            "\", \"delay\": " + std::to_string(s.delay) + ", \"steps\": " + std::to_string(s.steps) +
            ", \"accuracy\": " + std::to_string(r.accuracy) + ", \"eval_mse\": " + std::to_string(r.eval_mse) +
            ", \"ms_per_step\": " + std::to_string(r.ms_per_step) + "}";
    curves.names.push_back(r.method);
    curves.columns.push_back(r.loss);
  }
  json += "\n]\n";
  std::ofstream(out / "deep_online.json") << json;
  curves.write_csv(out / "deep_online_curves.csv");
  examples::plot_csv(out / "deep_online_curves.csv", out / "deep_online_curves.png",
                     "deep_online: mean loss while learning marked recall online (D = " + std::to_string(s.delay) + ")",
                     "mean squared error at the targets", curves.names.size(), false);
  std::printf("wrote %s/deep_online.json, deep_online_curves.csv%s\n", out.string().c_str(),
              std::filesystem::exists(out / "deep_online_curves.png") ? ", deep_online_curves.png" : "");
  return 0;
}
