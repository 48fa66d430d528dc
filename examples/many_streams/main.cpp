// many_streams: one network learning online from many streams at once, spread over MPI ranks.
// Each of S streams is a sensor of its own: a sine of its own frequency and phase plus noise,
// and the network predicts the next reading. Every stream runs exact RTRL; every step the
// gradients of all streams of all ranks are summed (in global stream order: the same bits for any
// number of ranks) and every rank applies the same Adam update, so the parameters stay replicated.
// Prints the loss early and late, the throughput in stream-steps per second, and where a step's
// time goes on each rank: stepping its streams against communicating.
//
//   mpirun -np 2 ./many_streams --streams 64 --steps 2000
//   mpirun -np 2 ./many_streams --checkpoint run/ --every 500      (and --resume run/ to go on)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "example_support.hpp"
#include "loopgrad/distributed/checkpoint.hpp"
#include "loopgrad/distributed/data_parallel.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "many_streams_kernel.hpp"

namespace {

namespace dist = loopgrad::distributed;
using Kernel = many_streams_kernel::Kernel;
using Scalar = many_streams_kernel::Scalar;
using Learner = loopgrad::runtime::ExactRtrl<Kernel, Scalar>;

const Kernel kernel;

std::vector<Scalar> initial_params() {
  many_streams_kernel::Params p;
  std::mt19937 rng(7);
  auto fill = [&](auto span, double fan_in) {
    std::uniform_real_distribution<double> u(-1 / std::sqrt(fan_in), 1 / std::sqrt(fan_in));
    for (auto& w : span) w = u(rng);
  };
  fill(p.rnn_W_xh(), 1);
  fill(p.rnn_W_hh(), 16);
  fill(p.rnn_b_h(), 16);
  fill(p.W_hy(), 16);
  fill(p.b_y(), 16);
  return p.flat;
}

// Global stream b's reading at step t: the same whichever rank runs the stream.
Scalar reading(std::size_t b, std::size_t t) {
  const double frequency = 0.05 + 0.25 * static_cast<double>((b * 37) % 64) / 64.0;
  const double phase = 0.7 * static_cast<double>(b);
  std::mt19937_64 rng(b * 1'000'003 + t);
  std::normal_distribution<double> noise(0, 0.05);
  return static_cast<Scalar>(std::sin(frequency * static_cast<double>(t) + phase) + noise(rng));
}

int run(int argc, char** argv) {
  const examples::Options opt(argc, argv,
                              {{"streams", "64"}, {"steps", "2000"}, {"threads", "1"}, {"rate", "0.003"},
                               {"checkpoint", ""}, {"every", "0"}, {"resume", ""}},
                              "many_streams: exact online learning from many streams over MPI ranks");
  const dist::Communicator world;
  const auto streams = static_cast<std::size_t>(opt.integer("streams"));
  const auto steps = static_cast<std::size_t>(opt.integer("steps"));
  dist::DataParallel<Learner> learner(world, streams, static_cast<unsigned>(opt.integer("threads")),
                                      [](std::size_t) { return Learner(kernel); });
  auto params = initial_params();
  loopgrad::runtime::Adam<Scalar> adam;
  adam.rate = static_cast<Scalar>(opt.number("rate"));
  if (!opt.text("resume").empty()) {
    dist::load_checkpoint(opt.text("resume"), "many_streams", params, learner, adam);
    if (world.rank() == 0)
      std::printf("resumed from '%s' at step %lld\n", opt.text("resume").c_str(), static_cast<long long>(learner.steps()));
  }
  const auto share = learner.share();
  if (world.rank() == 0)
    std::printf("%zu streams over %d ranks (%zu-%zu streams each), %u threads per rank, %zu parameters\n", streams,
                world.size(), streams / static_cast<std::size_t>(world.size()),
                (streams + static_cast<std::size_t>(world.size()) - 1) / static_cast<std::size_t>(world.size()),
                learner.threads(), params.size());

  std::vector<Scalar> inputs(share.size()), targets(share.size());
  std::vector<const Scalar*> in(share.size()), tg(share.size());
  for (std::size_t i = 0; i < share.size(); ++i) {
    in[i] = &inputs[i];
    tg[i] = &targets[i];
  }
  const std::size_t window = std::max<std::size_t>(1, std::min<std::size_t>(200, steps / 4));
  double first_window = 0, last_window = 0, compute = 0, communicate = 0;
  const auto first = static_cast<std::size_t>(learner.steps());
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t t = first; t < first + steps; ++t) {
    for (std::size_t i = 0; i < share.size(); ++i) {
      inputs[i] = reading(share.begin + i, t);
      targets[i] = reading(share.begin + i, t + 1);
    }
    const double loss = static_cast<double>(learner.observe(params, in, tg)) / static_cast<double>(streams);
    if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    compute += learner.last_timing().compute_seconds;
    communicate += learner.last_timing().communicate_seconds;
    if (t - first < window) first_window += loss / static_cast<double>(window);
    if (t + window >= first + steps) last_window += loss / static_cast<double>(window);
    const auto every = static_cast<std::size_t>(opt.integer("every"));
    if (!opt.text("checkpoint").empty() && every > 0 && (t + 1) % every == 0)
      dist::save_checkpoint(opt.text("checkpoint"), "many_streams", params, learner, adam);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool replicated = dist::replicas_agree(learner.communicator(), params);
  // Every rank's split of its time, printed by rank 0 in rank order.
  const double mine[2] = {compute, communicate};
  std::vector<double> all(2 * static_cast<std::size_t>(world.size()));
  dist::detail::check(MPI_Gather(mine, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, 0, world.get()), "MPI_Gather");
  if (world.rank() == 0) {
    std::printf("mean loss per stream: first %zu steps %.4f, last %zu steps %.4f\n", window, first_window, window,
                last_window);
    std::printf("throughput: %.0f stream-steps/s (%zu steps of %zu streams in %.2f s)\n",
                static_cast<double>(streams * steps) / seconds, steps, streams, seconds);
    for (int r = 0; r < world.size(); ++r) {
      const double c = all[2 * static_cast<std::size_t>(r)], m = all[2 * static_cast<std::size_t>(r) + 1];
      std::printf("rank %d: per step %.1f us stepping its streams, %.1f us communicating (%.0f%% of its step)\n", r,
                  1e6 * c / static_cast<double>(steps), 1e6 * m / static_cast<double>(steps), 100 * m / (c + m));
    }
    std::printf("parameters identical on every rank: %s\n", replicated ? "yes" : "NO");
  }
  return replicated ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  return dist::run_guarded([&] { return run(argc, argv); });
}
