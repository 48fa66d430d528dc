// The blocked exact algorithm (BlockedRtrl) on the reference interpreter: at every step the same
// gradient as exact RTRL, for block lengths 1, 2, 3, 7, n_R and longer than the sequence, with
// fixed parameters and with an Adam update every step, accumulated and attenuated, with both
// schedules; summed over a sequence it equals BPTT; a run resumed from a checkpoint taken mid-block
// continues bit for bit; ExactOnline follows the cost model; the background block length's
// search picks by its rule, and tune_background_block_length times the learner.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "../blocked_check.hpp"
#include "../codegen/random_network.hpp"
#include "../networks.hpp"
#include "../scratch.hpp"
#include "loopgrad/runtime/block_length_tuning.hpp"
#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/checkpoint.hpp"
#include "loopgrad/runtime/interpreter.hpp"

using namespace loopgrad;

namespace {

template <class T>
void check_network(const ir::Network& net, std::size_t steps, double tolerance) {
  const runtime::Interpreter<T> k(net);
  const auto seq = testing::random_sequence<T>(net, k.input_size(), steps, 17);
  double worst = 0;
  for (const auto& c : testing::blocked_cases(k.state_size(), steps))
    worst = std::max(worst, testing::check_blocked(k, net, seq, c, tolerance));
  const std::string scalar = std::is_same_v<T, float> ? " (float)" : "";
  MESSAGE(net.name << scalar << ": worst relative difference to RTRL " << testing::fmt_double(worst));
}

}  // namespace

// The interpreter sweeps one seed at a time; generated kernels, checked in test_codegen against the
// same reference, sweep many.
static_assert(!loopgrad::runtime::BlockedRtrl<loopgrad::runtime::Interpreter<double>, double>::column_reverse);

TEST_CASE("blocked exact RTRL equals RTRL at every step on every cell and the multi-loop networks") {
  check_network<double>(dsl::lower(cells::elman_network<3, 5, 2>()), 40, 1e-12);
  check_network<double>(dsl::lower(cells::stacked_rnn_network<3, 4, 5, 3>()), 40, 1e-12);
  check_network<double>(dsl::lower(cells::lstm_network<3, 4, 2>()), 40, 1e-12);
  check_network<double>(dsl::lower(cells::gru_network<3, 4, 2>()), 40, 1e-12);
  check_network<double>(dsl::lower(cells::diagonal_rnn_network<3, 6, 2>()), 40, 1e-12);
  check_network<double>(dsl::lower(testing::multi_loop_network()), 40, 1e-12);
  check_network<double>(dsl::lower(testing::all_ops_network()), 40, 1e-12);
}

TEST_CASE("blocked exact RTRL equals RTRL in float") {
  check_network<float>(dsl::lower(cells::elman_network<3, 5, 2>()), 40, 1e-4);
  check_network<float>(dsl::lower(cells::lstm_network<3, 4, 2>()), 40, 1e-4);
  check_network<float>(dsl::lower(testing::multi_loop_network()), 40, 1e-4);
}

TEST_CASE("blocked exact RTRL equals RTRL on the 80 random networks") {
  for (unsigned seed = 1; seed <= 80; ++seed) {
    INFO("random network " << seed);
    check_network<double>(testing::random_network(seed), 24, 1e-12);
  }
}

TEST_CASE("blocked exact RTRL summed over a sequence equals BPTT") {
  for (const auto& net : {dsl::lower(cells::lstm_network<3, 4, 2>()), dsl::lower(testing::multi_loop_network())}) {
    INFO("network " << net.name);
    const runtime::Interpreter<double> k(net);
    const auto params = runtime::initial_params<double>(net, 3, 0.8);
    const auto seq = testing::random_sequence<double>(net, k.input_size(), 50, 5);
    const auto bptt = runtime::bptt_gradient(k, params, seq).gradient;
    for (int h : {1, 4, 13, 64})
    for (auto schedule : {runtime::BlockSchedule::block_end, runtime::BlockSchedule::real_time}) {
      runtime::BlockedRtrl<runtime::Interpreter<double>, double> blocked(k, h, 1, {}, schedule);
      std::vector<double> sum(params.size(), 0.0);
      for (std::size_t t = 0; t < seq.size(); ++t) {
        blocked.observe(params, seq.inputs[t].data(), seq.target(t));
        for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += blocked.gradient()[i];
      }
      CHECK(testing::relative_difference(sum.data(), bptt.data(), sum.size()) <= 1e-10);
    }
  }
}

TEST_CASE("a blocked learner's memory holds Delta_s, the Delta being built and h steps, and stays constant in T") {
  using runtime::BlockSchedule;
  using Kernel = runtime::Interpreter<double>;
  const auto net = dsl::lower(testing::multi_loop_network());
  const Kernel k(net);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 120, 29);
  const int h = 7;
  for (const auto schedule : {BlockSchedule::block_end, BlockSchedule::real_time, BlockSchedule::background}) {
    const std::size_t stored = schedule == BlockSchedule::block_end ? h : 2 * h;
    INFO("stored steps " << stored);
    runtime::BlockedRtrl<Kernel, double> blocked(k, h, 1, {}, schedule);
    runtime::Adam<double> adam;
    auto params = runtime::initial_params<double>(net, 3);
    std::size_t after_five_blocks = 0;
    for (std::size_t t = 0; t < seq.size(); ++t) {
      blocked.observe(params, seq.inputs[t].data(), seq.target(t));
      adam.apply(params, blocked.gradient());  // new parameters every step: one stored vector per step
      if (t + 1 == 5 * h) after_five_blocks = blocked.memory_bytes();
    }
    // At least Delta_s, the Delta being built, the stored steps' inputs and parameter vectors.
    CHECK(blocked.memory_bytes() >=
          sizeof(double) * (2 * k.sensitivity_size() + stored * (k.input_size() + params.size())));
    CHECK(blocked.memory_bytes() == after_five_blocks);
  }
}

TEST_CASE("blocked exact RTRL refuses a block length below 1") {
  const runtime::Interpreter<double> k(dsl::lower(cells::elman_network<3, 5, 2>()));
  CHECK_THROWS_WITH_AS((runtime::BlockedRtrl<runtime::Interpreter<double>, double>(k, 0)),
                       "BlockedRtrl: the block length must be at least 1, not 0", std::invalid_argument);
}

TEST_CASE("a blocked run resumed from a checkpoint taken mid-block continues bit for bit") {
  using Kernel = runtime::Interpreter<double>;
  using Learner = runtime::BlockedRtrl<Kernel, double>;
  const auto net = dsl::lower(testing::multi_loop_network());
  const Kernel k(net);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 60, 23);
  const auto dir = std::filesystem::temp_directory_path() / ("loopgrad_blocked_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto train = [&](std::vector<double>& params, Learner& learner, runtime::Adam<double>& adam, std::size_t from,
                   std::size_t to) {
    for (std::size_t t = from; t < to; ++t) {
      learner.observe(params, seq.inputs[t].data(), seq.target(t));
      if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    }
  };
  const auto initial = runtime::initial_params<double>(net, 3);
  // Block length 7; accumulated over 3 steps, so step 31 is mid-block (3 of 7) and mid-accumulation;
  // with the real-time schedule the previous block's end is then partly built, in the background
  // being built on the other thread.
  for (const auto schedule :
       {runtime::BlockSchedule::block_end, runtime::BlockSchedule::real_time, runtime::BlockSchedule::background})
  for (const int accumulate : {1, 3}) {
    const bool keeps_closing = schedule != runtime::BlockSchedule::block_end;
    const std::string name = runtime::schedule_name(schedule);
    INFO("accumulate " << accumulate << ", " << name << " schedule");
    auto params_a = initial;
    Learner learner_a(k, 7, accumulate, {}, schedule);
    runtime::Adam<double> adam_a;
    adam_a.rate = 0.01;
    train(params_a, learner_a, adam_a, 0, 60);
    const auto path = dir / ("blocked_" + std::to_string(accumulate) + "_" + name + ".safetensors");
    {
      auto params_b = initial;
      Learner learner_b(k, 7, accumulate, {}, schedule);
      runtime::Adam<double> adam_b;
      adam_b.rate = 0.01;
      train(params_b, learner_b, adam_b, 0, 31);
      REQUIRE(learner_b.block_steps() == 3);
      REQUIRE(learner_b.snapshot().closing == (keeps_closing ? 7u : 0u));
      runtime::save_checkpoint(path, net.name, params_b, learner_b, adam_b);
    }
    std::vector<double> params_c(initial.size(), 0.0);
    Learner learner_c(k, 7, accumulate, {}, schedule);
    runtime::Adam<double> adam_c;
    runtime::load_checkpoint(path, net.name, params_c, learner_c, adam_c);
    CHECK(learner_c.block_steps() == 3);
    train(params_c, learner_c, adam_c, 31, 60);
    CHECK(std::memcmp(params_a.data(), params_c.data(), params_a.size() * sizeof(double)) == 0);
    CHECK(learner_a.sensitivity() == learner_c.sensitivity());
    CHECK(learner_a.state() == learner_c.state());

    // The wrong learner, block length or network is refused, and nothing changes.
    const auto before = params_c;
    Learner other_length(k, 5, accumulate, {}, schedule);
    CHECK_THROWS_WITH(runtime::load_checkpoint(path, net.name, params_c, other_length, adam_c),
                      doctest::Contains("has block length 7, this learner 5"));
    const auto other = keeps_closing ? runtime::BlockSchedule::block_end : runtime::BlockSchedule::background;
    Learner other_schedule(k, 7, accumulate, {}, other);
    const std::string refusal =
        "was written with the " + name + " schedule; this learner uses " + runtime::schedule_name(other);
    CHECK_THROWS_WITH(runtime::load_checkpoint(path, net.name, params_c, other_schedule, adam_c),
                      doctest::Contains(refusal.c_str()));
    runtime::ExactRtrl<Kernel, double> rtrl(k, accumulate);
    CHECK_THROWS_WITH(runtime::load_checkpoint(path, net.name, params_c, rtrl, adam_c),
                      doctest::Contains("was written by the blocked learner; this run uses rtrl"));
    CHECK_THROWS_WITH(runtime::load_checkpoint(path, "elman", params_c, learner_c, adam_c),
                      doctest::Contains("belongs to network 'multi_loop', not 'elman'"));
    CHECK(params_c == before);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("an ExactOnline run resumes from a checkpoint bit for bit, with either algorithm underneath") {
  using Kernel = runtime::Interpreter<double>;
  using Learner = runtime::ExactOnline<Kernel, double>;
  const auto net = dsl::lower(cells::lstm_network<3, 4, 2>());
  const Kernel k(net);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 30, 8);
  const auto path = testing::scratch_file("blocked_test", "exact_online.safetensors");
  const auto initial = runtime::initial_params<double>(net, 6);
  auto train = [&](std::vector<double>& params, Learner& learner, runtime::Adam<double>& adam, std::size_t from,
                   std::size_t to) {
    for (std::size_t t = from; t < to; ++t) {
      learner.observe(params, seq.inputs[t].data(), seq.target(t));
      if (learner.gradient_ready()) adam.apply(params, learner.gradient());
    }
  };
  for (const int block_length : {0, 4}) {  // RTRL; blocked, saved at step 13: mid-block
    INFO("block length " << block_length);
    auto params_a = initial;
    Learner a(k, 1, {}, block_length);
    runtime::Adam<double> adam_a;
    train(params_a, a, adam_a, 0, 13);
    runtime::save_checkpoint(path, net.name, params_a, a, adam_a);
    train(params_a, a, adam_a, 13, 30);
    std::vector<double> params_b(initial.size(), 0.0);
    Learner b(k, 1, {}, block_length);
    runtime::Adam<double> adam_b;
    runtime::load_checkpoint(path, net.name, params_b, b, adam_b);
    CHECK(b.steps() == 13);
    train(params_b, b, adam_b, 13, 30);
    CHECK(std::memcmp(params_a.data(), params_b.data(), params_a.size() * sizeof(double)) == 0);
    // The other algorithm's learner is refused, and nothing changes.
    Learner other(k, 1, {}, block_length == 0 ? 4 : 0);
    const auto before = params_b;
    CHECK_THROWS_WITH(runtime::load_checkpoint(path, net.name, params_b, other, adam_b),
                      doctest::Contains(block_length == 0 ? "written by the rtrl learner; this run uses blocked"
                                                          : "written by the blocked learner; this run uses rtrl"));
    CHECK(params_b == before);
  }
}

TEST_CASE("ExactOnline follows the cost model, and a block length overrides it") {
  using Kernel = runtime::Interpreter<double>;
  const Kernel small(dsl::lower(cells::elman_network<3, 2, 2>()));
  const Kernel wide(dsl::lower(cells::elman_network<8, 64, 2>()));
  REQUIRE(small.recommended_block_length() == 0);
  REQUIRE(wide.recommended_block_length() == wide.analysis().exact_cost.block_length);
  CHECK(runtime::ExactOnline<Kernel, double>(small).block_length() == 0);
  CHECK(runtime::ExactOnline<Kernel, double>(wide).block_length() == wide.analysis().exact_cost.block_length);
  CHECK(runtime::ExactOnline<Kernel, double>(wide, 1, {}, 0).block_length() == 0);
  CHECK(runtime::ExactOnline<Kernel, double>(small, 1, {}, 3).block_length() == 3);
  // With the block end on a second thread, the cost model's block length for that schedule.
  using runtime::BlockSchedule;
  REQUIRE(small.recommended_background_block_length() == 0);
  REQUIRE(wide.recommended_background_block_length() == wide.analysis().exact_cost.background_block_length);
  REQUIRE(wide.recommended_background_block_length() < wide.recommended_block_length());
  CHECK(runtime::ExactOnline<Kernel, double>(small, 1, {}, runtime::ExactOnline<Kernel, double>::automatic,
                                             BlockSchedule::background)
            .block_length() == 0);
  CHECK(runtime::ExactOnline<Kernel, double>(wide, 1, {}, runtime::ExactOnline<Kernel, double>::automatic,
                                             BlockSchedule::background)
            .block_length() == wide.recommended_background_block_length());
  CHECK(runtime::ExactOnline<Kernel, double>(wide, 1, {}, runtime::ExactOnline<Kernel, double>::automatic,
                                             BlockSchedule::real_time)
            .block_length() == wide.recommended_block_length());
  CHECK(runtime::ExactOnline<Kernel, double>(wide, 1, {}, 5, BlockSchedule::background).block_length() == 5);
  // Either way the gradients are RTRL's.
  const auto net = dsl::lower(cells::lstm_network<3, 4, 2>());
  const Kernel k(net);
  const auto params = runtime::initial_params<double>(net, 2);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 20, 4);
  runtime::ExactOnline<Kernel, double> rtrl(k, 1, {}, 0), blocked(k, 1, {}, 6),
      real_time(k, 1, {}, 6, runtime::BlockSchedule::real_time), background(k, 1, {}, 6, runtime::BlockSchedule::background);
  for (std::size_t t = 0; t < seq.size(); ++t) {
    rtrl.observe(params, seq.inputs[t].data(), seq.target(t));
    blocked.observe(params, seq.inputs[t].data(), seq.target(t));
    real_time.observe(params, seq.inputs[t].data(), seq.target(t));
    background.observe(params, seq.inputs[t].data(), seq.target(t));
    CHECK(testing::relative_difference(blocked.gradient().data(), rtrl.gradient().data(), params.size()) <= 1e-12);
    CHECK(testing::relative_difference(real_time.gradient().data(), rtrl.gradient().data(), params.size()) <= 1e-12);
    CHECK(testing::relative_difference(background.gradient().data(), rtrl.gradient().data(), params.size()) <= 1e-12);
  }
  CHECK_THROWS_AS((runtime::ExactOnline<Kernel, double>(k, 1, {}, -2)), std::invalid_argument);
}

// The background block length's search on a trial runner with known answers: trials fit from
// some block length up; below it each block's last step waited for the block end (9000 ns
// against 1000).
TEST_CASE("the background block length's search shrinks while trials fit and keeps one step of headroom") {
  const auto runner = [](int least_fitting, std::vector<int>& asked) {
    return [least_fitting, &asked](int h) {
      asked.push_back(h);
      runtime::TrialSteps trial;
      trial.step_ns.assign(static_cast<std::size_t>(3 * h), 1000.0);
      if (h < least_fitting) {
        for (int b = 1; b <= 3; ++b) trial.step_ns[static_cast<std::size_t>(b * h - 1)] = 9000.0;
        trial.waits = 3;
      }
      return trial;
    };
  };
  std::vector<int> asked;
  int reported = 0;
  runtime::BlockLengthTuningOptions options;
  options.on_trial = [&](const runtime::BlockLengthTrial&) { ++reported; };
  // From 107 by 0.9 (rounded down): 96, 86, 77, 69, 62 fit, 55 does not: 62 is the least that
  // fit and 69, one above it, the pick.
  auto tuned = runtime::search_block_length(107, runner(60, asked), options);
  CHECK(asked == std::vector<int>{107, 96, 86, 77, 69, 62, 55});
  CHECK(tuned.block_length == 69);
  REQUIRE(tuned.trials.size() == 7);
  CHECK(reported == 7);
  CHECK(tuned.trials[5].fits);
  CHECK_FALSE(tuned.trials[6].fits);
  CHECK(tuned.trials[6].max_ns == 9000.0);
  CHECK(tuned.trials[6].median_ns == 1000.0);
  CHECK(tuned.trials[6].waits == 3);
  // The start fits and the next does not: the start.
  asked.clear();
  CHECK(runtime::search_block_length(107, runner(100, asked)).block_length == 107);
  CHECK(asked == std::vector<int>{107, 96});
  // The start does not fit: up by 1 / 0.9 (rounded up) to 119, 133, 148, 165 (fits); the pick one
  // above it, 184.
  asked.clear();
  CHECK(runtime::search_block_length(107, runner(150, asked)).block_length == 184);
  CHECK(asked == std::vector<int>{107, 119, 133, 148, 165});
  // Everything fits down to 1: 1 (nothing smaller to try).
  asked.clear();
  CHECK(runtime::search_block_length(3, runner(1, asked)).block_length == 1);
  CHECK(asked == std::vector<int>{3, 2, 1});
  // A trial's figures.
  const auto trial = runtime::summarize_trial(4, {{4.0, 1.0, 2.0, 3.0, 10.0}, 1});
  CHECK(trial.mean_ns == 4.0);
  CHECK(trial.median_ns == 3.0);
  CHECK(trial.max_ns == 10.0);
  CHECK_FALSE(trial.fits);
  CHECK(runtime::summarize_trial(4, {{4.0, 1.0, 2.0, 3.0, 10.0}, 0}).fits);
  CHECK_THROWS_AS(runtime::summarize_trial(4, {}), std::invalid_argument);
  CHECK_THROWS_AS(runtime::search_block_length(0, runner(1, asked)), std::invalid_argument);
}

namespace {
// The interpreter with the cost model's background block length replaced, so that the tuner runs
// on a network small enough for a test.
struct BackgroundAt4 : runtime::Interpreter<double> {
  using runtime::Interpreter<double>::Interpreter;
  int recommended_background_block_length() const { return 4; }
};
}  // namespace

TEST_CASE("tune_background_block_length times the learner at each candidate, and refuses networks RTRL serves") {
  const auto net = dsl::lower(cells::elman_network<3, 5, 2>());
  const BackgroundAt4 k(net);
  const auto params = runtime::initial_params<double>(net, 2);
  const auto seq = testing::random_sequence<double>(net, k.input_size(), 1, 4);
  const auto times = runtime::time_background_steps(k, 5, params, seq.inputs[0].data(), seq.target(0), 2);
  CHECK(times.step_ns.size() == 10);
  CHECK(std::all_of(times.step_ns.begin(), times.step_ns.end(), [](double t) { return t > 0; }));
  CHECK(times.waits >= 0);
  CHECK(times.waits <= 2);  // at most one per timed block
  runtime::BlockLengthTuningOptions options;
  options.timed_blocks = 2;
  const auto tuned = runtime::tune_background_block_length(k, params, seq.inputs[0].data(), seq.target(0), options);
  REQUIRE(!tuned.trials.empty());
  CHECK(tuned.trials[0].block_length == 4);
  CHECK(tuned.block_length >= 1);
  // Whether a block end finishes before the next block's last step is up to the machine's
  // timing; whatever the trials found, the pick is a block length tried (shrinking) or one above
  // every length tried (growing).
  CHECK(tuned.trials.size() <= static_cast<std::size_t>(options.max_trials));
  const bool tried = std::any_of(tuned.trials.begin(), tuned.trials.end(),
                                 [&](const runtime::BlockLengthTrial& t) { return t.block_length == tuned.block_length; });
  if (!tried)
    for (const auto& t : tuned.trials) CHECK(t.block_length < tuned.block_length);
  const runtime::Interpreter<double> plain(net);
  REQUIRE(plain.recommended_background_block_length() == 0);
  CHECK_THROWS_WITH_AS(runtime::tune_background_block_length(plain, params, seq.inputs[0].data(), seq.target(0)),
                       doctest::Contains("picks RTRL"), std::invalid_argument);
}
