// loopgrad::distributed under mpirun -np 1, 2 and 3: the summed gradient and loss are the same bits
// as one process's sum over the same streams (so the same for any number of ranks and threads),
// with an Adam update every step and with the gradient accumulated over m steps, where it equals
// BPTT's; checkpoints resume bit for bit on the same and on another number of ranks and refuse
// damaged files everywhere at once; a stream that throws stops every rank with its error. Run
// with --kill-rank R or --throw-rank R, the program instead loses rank R mid-run (SIGKILL, or an
// exception outside any collective) and the test command checks that mpirun ends every rank.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "../compare.hpp"
#include "loopgrad/cells/elman.hpp"
#include "loopgrad/cells/lstm.hpp"
#include "loopgrad/distributed/checkpoint.hpp"
#include "loopgrad/distributed/data_parallel.hpp"
#include "loopgrad/dsl/lower.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

using namespace loopgrad;
namespace dist = loopgrad::distributed;
using Kernel = runtime::Interpreter<double>;

namespace {

constexpr std::size_t n_streams = 7;  // not a multiple of 2 or 3: the shares differ in size

const ir::Network& lstm_net() {
  static const ir::Network net = dsl::lower(cells::lstm_network<3, 4, 2>());
  return net;
}
const Kernel& lstm_kernel() {
  static const Kernel k(lstm_net());
  return k;
}

// Stream b's input and target at step t: the same on every rank and in the reference.
struct Data {
  std::vector<std::vector<double>> inputs, targets;
  Data(const Kernel& k, std::size_t streams, std::size_t step) {
    for (std::size_t b = 0; b < streams; ++b) {
      std::mt19937_64 rng(1000 * b + step);
      std::normal_distribution<double> normal;
      inputs.emplace_back(k.input_size());
      targets.emplace_back(k.target_size());
      for (auto& v : inputs.back()) v = normal(rng);
      for (auto& v : targets.back()) v = 0.5 * normal(rng);
    }
  }
  // Pointers for the global streams [begin, end).
  std::vector<const double*> in(std::size_t begin, std::size_t end) const {
    std::vector<const double*> p;
    for (std::size_t b = begin; b < end; ++b) p.push_back(inputs[b].data());
    return p;
  }
  std::vector<const double*> tg(std::size_t begin, std::size_t end) const {
    std::vector<const double*> p;
    for (std::size_t b = begin; b < end; ++b) p.push_back(targets[b].data());
    return p;
  }
};

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// What each step of a run gave: loss, summed gradient, parameters after the update.
struct Trace {
  std::vector<double> losses;
  std::vector<std::vector<double>> gradients, params;
};

// One process, every stream: the single-process batch the distributed sum must reproduce.
template <class Learner, class Make>
Trace reference_run(Make make, std::size_t steps, std::vector<double> params, std::size_t first_step = 0) {
  std::vector<Learner> learners;
  for (std::size_t b = 0; b < n_streams; ++b) learners.push_back(make(b));
  runtime::Adam<double> adam;
  adam.rate = 0.01;
  Trace trace;
  std::vector<double> sum(params.size());
  for (std::size_t t = first_step; t < first_step + steps; ++t) {
    const Data data(lstm_kernel(), n_streams, t);
    double loss = 0;
    std::fill(sum.begin(), sum.end(), 0.0);
    for (std::size_t b = 0; b < n_streams; ++b) {
      loss += learners[b].observe(params, data.inputs[b].data(), data.targets[b].data());
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += learners[b].gradient()[i];
    }
    adam.apply(params, sum);
    trace.losses.push_back(loss);
    trace.gradients.push_back(sum);
    trace.params.push_back(params);
  }
  return trace;
}

// `steps` steps of a DataParallel run from step `first_step`, an Adam update every step.
template <class Learner>
Trace distributed_run(dist::DataParallel<Learner>& run, std::vector<double>& params, runtime::Adam<double>& adam,
                      std::size_t first_step, std::size_t steps) {
  Trace trace;
  const auto share = run.share();
  for (std::size_t t = first_step; t < first_step + steps; ++t) {
    const Data data(lstm_kernel(), run.streams(), t);
    const auto in = data.in(share.begin, share.end), tg = data.tg(share.begin, share.end);
    const double loss = run.observe(params, in, tg);
    REQUIRE(run.gradient_ready());
    adam.apply(params, run.gradient());
    trace.losses.push_back(loss);
    trace.gradients.push_back(run.gradient());
    trace.params.push_back(params);
  }
  return trace;
}

void check_same(const Trace& got, const Trace& want, std::size_t offset = 0) {
  REQUIRE(got.losses.size() + offset <= want.losses.size());
  for (std::size_t t = 0; t < got.losses.size(); ++t) {
    INFO("step " << t + offset + 1);
    CHECK(same_bits(got.losses[t], want.losses[t + offset]));
    CHECK(same_bits(got.gradients[t], want.gradients[t + offset]));
    CHECK(same_bits(got.params[t], want.params[t + offset]));
  }
}

runtime::ExactRtrl<Kernel, double> make_rtrl(std::size_t) { return runtime::ExactRtrl<Kernel, double>(lstm_kernel()); }
runtime::BlockedRtrl<Kernel, double> make_blocked(std::size_t) {
  return runtime::BlockedRtrl<Kernel, double>(lstm_kernel(), 3);
}

// A directory every rank of `comm` names alike: rank 0 makes it, then tells the others.
std::filesystem::path shared_scratch(const dist::Communicator& comm) {
  std::string name;
  if (comm.rank() == 0) {
    // mkdtemp replaces the trailing XXXXXX with a unique suffix and makes the directory.
    std::string pattern = (std::filesystem::temp_directory_path() / "loopgrad_distributed_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    name = pattern;
  }
  int length = static_cast<int>(name.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, comm.get());
  name.resize(static_cast<std::size_t>(length));
  MPI_Bcast(name.data(), length, MPI_CHAR, 0, comm.get());
  return name;
}

template <class Learner, class Make>
void check_sum_against_one_process(Make make) {
  const dist::Communicator world;
  const auto params0 = runtime::initial_params<double>(lstm_net(), 5, 0.5);
  const Trace want = reference_run<Learner>(make, 12, params0);
  for (unsigned threads : {1u, 3u}) {
    INFO(world.size() << " ranks, " << threads << " threads");
    dist::DataParallel<Learner> run(world, n_streams, threads, make);
    auto params = params0;
    runtime::Adam<double> adam;
    adam.rate = 0.01;
    const Trace got = distributed_run(run, params, adam, 0, 12);
    check_same(got, want);
    CHECK(dist::replicas_agree(world, params));
  }
}

}  // namespace

TEST_CASE("the summed gradient and loss are one process's bits, whatever the ranks and threads: exact RTRL") {
  check_sum_against_one_process<runtime::ExactRtrl<Kernel, double>>(make_rtrl);
}

TEST_CASE("the summed gradient and loss are one process's bits, whatever the ranks and threads: blocked") {
  check_sum_against_one_process<runtime::BlockedRtrl<Kernel, double>>(make_blocked);
}

TEST_CASE("accumulated over m steps with fixed parameters, the summed gradient is BPTT's over every stream") {
  const dist::Communicator world;
  constexpr std::size_t m = 10;
  const auto params = runtime::initial_params<double>(lstm_net(), 9, 0.5);
  dist::DataParallel<runtime::ExactOnline<Kernel, double>> run(world, n_streams, 2, [](std::size_t) {
    return runtime::ExactOnline<Kernel, double>(lstm_kernel(), static_cast<int>(m), {}, 2);
  });
  std::vector<runtime::Sequence<double>> sequences(n_streams);
  double loss = 0;
  for (std::size_t t = 0; t < m; ++t) {
    const Data data(lstm_kernel(), n_streams, t);
    for (std::size_t b = 0; b < n_streams; ++b) {
      sequences[b].inputs.push_back(data.inputs[b]);
      sequences[b].targets.emplace_back(data.targets[b]);
    }
    const auto share = run.share();
    loss += run.observe(params, data.in(share.begin, share.end), data.tg(share.begin, share.end));
    CHECK(run.gradient_ready() == (t + 1 == m));
  }
  std::vector<double> bptt(params.size(), 0.0);
  double bptt_loss = 0;
  for (const auto& seq : sequences) {
    const auto g = runtime::bptt_gradient(lstm_kernel(), params, seq);
    bptt_loss += g.loss;
    for (std::size_t i = 0; i < bptt.size(); ++i) bptt[i] += g.gradient[i];
  }
  const double worst = testing::relative_difference(run.gradient().data(), bptt.data(), bptt.size());
  MESSAGE(world.size() << " ranks: summed over " << m << " steps and " << n_streams
                       << " streams, largest relative difference to BPTT " << testing::fmt_double(worst));
  CHECK(worst < 1e-12);
  CHECK(std::abs(loss - bptt_loss) <= 1e-12 * std::abs(bptt_loss));
}

TEST_CASE_TEMPLATE("a checkpoint resumes bit for bit on the same and on another number of ranks", Learner,
                   runtime::ExactRtrl<Kernel, double>, runtime::BlockedRtrl<Kernel, double>) {
  const dist::Communicator world;
  auto make = [](std::size_t b) {
    if constexpr (std::is_same_v<Learner, runtime::ExactRtrl<Kernel, double>>)
      return make_rtrl(b);
    else
      return make_blocked(b);
  };
  const auto params0 = runtime::initial_params<double>(lstm_net(), 3, 0.5);
  const std::filesystem::path dir = shared_scratch(world);
  constexpr std::size_t before = 5, after = 6;  // 5 steps: mid-block for block length 3

  // The uninterrupted run, saved after `before` steps.
  dist::DataParallel<Learner> run(world, n_streams, 2, make);
  auto params = params0;
  runtime::Adam<double> adam;
  adam.rate = 0.01;
  distributed_run(run, params, adam, 0, before);
  dist::save_checkpoint(dir / "a", "lstm", params, run, adam, {{"note", "mid-block"}});
  const Trace want = distributed_run(run, params, adam, before, after);

  auto resume = [&](const dist::Communicator& comm, const std::filesystem::path& from) {
    dist::DataParallel<Learner> again(comm, n_streams, 1, make);
    auto p = params0;
    runtime::Adam<double> a;
    dist::load_checkpoint(from, "lstm", p, again, a);
    CHECK(a.steps == static_cast<std::int64_t>(before));
    return std::make_pair(distributed_run(again, p, a, before, after), p);
  };
  SUBCASE("on the same ranks") { check_same(resume(world, dir / "a").first, want); }
  SUBCASE("on fewer ranks, then saved there and resumed on all again") {
    // The first size-1 ranks (or the one rank) take over every stream.
    const int fewer = world.size() > 1 ? world.size() - 1 : 1;
    const auto part = world.split(world.rank() < fewer ? 0 : MPI_UNDEFINED);
    if (part) {
      CHECK(part->size() == fewer);
      dist::DataParallel<Learner> again(*part, n_streams, 2, make);
      auto p = params0;
      runtime::Adam<double> a;
      dist::load_checkpoint(dir / "a", "lstm", p, again, a);
      dist::save_checkpoint(dir / "b", "lstm", p, again, a);
      check_same(distributed_run(again, p, a, before, after), want);
    }
    world.barrier();
    check_same(resume(world, dir / "b").first, want);
  }
  SUBCASE("a second save replaces the first, whole") {
    distributed_run(run, params, adam, before + after, 1);
    dist::save_checkpoint(dir / "a", "lstm", params, run, adam);
    world.barrier();
    std::size_t files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir / "a")) {
      ++files;
      CHECK(entry.path().filename().string().rfind("g1.", 0) != 0);  // generation 1 is gone
    }
    CHECK(files == n_streams + 2);  // the streams, the run's file, the manifest
  }
  SUBCASE("a damaged stream file is refused on every rank, and nothing changes") {
    world.barrier();
    if (world.rank() == 0) {
      std::fstream f(dir / "a" / "g1.stream6.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(-3, std::ios::end);
      f.put('\x7f');
    }
    world.barrier();
    dist::DataParallel<Learner> again(world, n_streams, 1, make);
    auto p = params0;
    runtime::Adam<double> a;
    std::string message;
    try {
      dist::load_checkpoint(dir / "a", "lstm", p, again, a);
    } catch (const dist::CollectiveError& e) {
      message = e.what();
    }
    INFO(message);
    const int owner = world.size() - 1;  // stream 6, the last, is the last rank's
    CHECK(message.find("rank " + std::to_string(owner) + " failed") != std::string::npos);
    CHECK(message.find("g1.stream6.safetensors") != std::string::npos);
    CHECK(message.find("checksum") != std::string::npos);
    CHECK(same_bits(p, params0));
    CHECK(a.steps == 0);
    CHECK(again.steps() == 0);
  }
  SUBCASE("a missing checkpoint is refused on every rank") {
    dist::DataParallel<Learner> again(world, n_streams, 1, make);
    auto p = params0;
    runtime::Adam<double> a;
    CHECK_THROWS_AS(dist::load_checkpoint(dir / "none", "lstm", p, again, a), dist::CollectiveError);
  }
  world.barrier();
  if (world.rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("a stream that throws stops every rank with the rank, the stream and the error") {
  const dist::Communicator world;
  runtime::RtrlOptions<double> fail;
  fail.explosion = runtime::ExplosionPolicy::fail;
  dist::DataParallel<runtime::ExactRtrl<Kernel, double>> run(world, n_streams, 2, [&](std::size_t) {
    return runtime::ExactRtrl<Kernel, double>(lstm_kernel(), 1, fail);
  });
  const auto params = runtime::initial_params<double>(lstm_net(), 5, 0.5);
  std::string message;
  for (std::size_t t = 0; t < 5 && message.empty(); ++t) {
    Data data(lstm_kernel(), n_streams, t);
    if (t == 3) data.inputs[n_streams - 1][1] = std::numeric_limits<double>::quiet_NaN();
    const auto share = run.share();
    try {
      run.observe(params, data.in(share.begin, share.end), data.tg(share.begin, share.end));
    } catch (const dist::CollectiveError& e) {
      message = e.what();
    }
  }
  INFO(message);
  CHECK(message.find("step 4") != std::string::npos);
  CHECK(message.find("rank " + std::to_string(world.size() - 1) + " failed") != std::string::npos);
  CHECK(message.find("stream 6") != std::string::npos);
  CHECK(message.find("input") != std::string::npos);
}

TEST_CASE("misuse is refused on every rank with a sentence: wrong sizes on one rank, fewer streams than ranks") {
  const dist::Communicator world;
  dist::DataParallel<runtime::ExactRtrl<Kernel, double>> run(world, n_streams, 1, make_rtrl);
  const auto params = runtime::initial_params<double>(lstm_net(), 5, 0.5);
  const Data data(lstm_kernel(), n_streams, 0);
  const auto share = run.share();
  // Parameters of the wrong size on every rank: refused before any stream steps.
  auto short_params = params;
  short_params.pop_back();
  CHECK_THROWS_WITH_AS(run.observe(short_params, data.in(share.begin, share.end), data.tg(share.begin, share.end)),
                       doctest::Contains("parameters given; the network has"), dist::CollectiveError);
  CHECK(run.steps() == 0);
  // One input too few on the last rank: every rank stops with that rank's error (the others' streams
  // have taken the step, as documented: resume from a checkpoint).
  auto in = data.in(share.begin, share.end);
  if (world.rank() == world.size() - 1) in.pop_back();
  std::string message;
  try {
    run.observe(params, in, data.tg(share.begin, share.end));
  } catch (const dist::CollectiveError& e) {
    message = e.what();
  }
  CHECK(message.find("rank " + std::to_string(world.size() - 1) + " failed") != std::string::npos);
  CHECK(message.find("inputs") != std::string::npos);
}

TEST_CASE("fewer streams than ranks is refused on every rank") {
  const dist::Communicator world;
  if (world.size() > 1) {
    using Run = dist::DataParallel<runtime::ExactRtrl<Kernel, double>>;
    CHECK_THROWS_AS(Run(world, static_cast<std::size_t>(world.size() - 1), 1, make_rtrl), dist::DistributedError);
  }
}

namespace {

// --kill-rank R / --throw-rank R: a long run in which rank R dies at step 3, by SIGKILL or by an
// exception that escapes outside any collective. Without the fix the others would wait forever.
int lose_a_rank(bool kill, int victim) {
  return dist::run_guarded([&] {
    const dist::Communicator world;
    dist::DataParallel<runtime::ExactRtrl<Kernel, double>> run(world, n_streams, 1, make_rtrl);
    auto params = runtime::initial_params<double>(lstm_net(), 5, 0.5);
    for (std::size_t t = 0; t < 1000000; ++t) {
      if (t == 3 && world.rank() == victim) {
        if (kill) std::raise(SIGKILL);
        throw std::runtime_error("a failure outside any collective, on purpose");
      }
      const Data data(lstm_kernel(), n_streams, t);
      const auto share = run.share();
      run.observe(params, data.in(share.begin, share.end), data.tg(share.begin, share.end));
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  dist::Environment mpi(argc, argv);
  if (argc == 3 && (std::strcmp(argv[1], "--kill-rank") == 0 || std::strcmp(argv[1], "--throw-rank") == 0))
    return lose_a_rank(std::strcmp(argv[1], "--kill-rank") == 0, std::atoi(argv[2]));
  doctest::Context context(argc, argv);
  const int failed = context.run();
  // One rank's failed check must fail the job: every rank returns the worst result.
  int worst = 0;
  MPI_Allreduce(&failed, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
