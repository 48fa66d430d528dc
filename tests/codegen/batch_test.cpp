// rtrl_step_batch and BatchPool, the generated kernels' batched step: B streams sharing the
// parameters, with and without threads, against the same streams advanced one by one; and all or
// nothing when memory runs out (this file replaces operator new to make allocations fail).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "k_diagonal.hpp"
#include "k_lstm_f.hpp"
#include "k_multi_loop.hpp"

// Fault injection for the whole test program: with allocations_left >= 0, that many more
// allocations succeed and every one after them throws std::bad_alloc; -1 (the default) never fails.
namespace fault {
std::atomic<long> allocations_left{-1};
}  // namespace fault

// Not inlined, so that the compiler sees the pair as one allocator (no -Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(std::size_t size) {
  for (long left = fault::allocations_left.load(); left >= 0;) {
    if (left == 0) throw std::bad_alloc();
    if (fault::allocations_left.compare_exchange_weak(left, left - 1)) break;
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// The nothrow form too (std::stable_sort's buffer, for one), so that every operator delete here
// frees what this file's malloc gave.
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(size);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

// Bitwise equality of two arrays of the same type.
template <class A>
bool same_bits(const A& a, const A& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(a[0]) * a.size()) == 0;
}

// `k` is a struct that names one generated kernel's types and functions (below).
template <class K>
void check_batch() {
  using Scalar = typename K::Scalar;
  constexpr std::size_t B = 5, steps = 30;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-0.6, 0.6);
  typename K::Params params;
  for (auto& p : params.flat) p = Scalar(u(rng));
  std::vector<std::vector<typename K::Input>> inputs(steps, std::vector<typename K::Input>(B));
  std::vector<std::vector<typename K::Target>> targets(steps, std::vector<typename K::Target>(B));
  for (std::size_t t = 0; t < steps; ++t)
    for (std::size_t b = 0; b < B; ++b) {
      for (auto& x : inputs[t][b].flat) x = Scalar(u(rng));
      for (auto& y : targets[t][b].flat) y = Scalar(u(rng) + 0.6);
    }
  auto target_ptrs = [&](std::size_t t) {
    std::vector<const typename K::Target*> out;
    for (std::size_t b = 0; b < B; ++b) out.push_back((t + b) % 4 == 3 ? nullptr : &targets[t][b]);  // some streams without a target
    return out;
  };

  // One by one.
  std::vector<typename K::Stream> alone(B);
  // Batched, in the calling thread, on three threads started per call, and on a pool of three.
  std::vector<typename K::Stream> batch1(B), batch3(B), pooled(B);
  typename K::Gradient sum, g1, g3, gp;
  typename K::Pool pool(3);
  CHECK(pool.threads() == 3);
  for (std::size_t t = 0; t < steps; ++t) {
    INFO("step " << t);
    const auto tp = target_ptrs(t);
    Scalar loss = 0;
    for (auto& g : sum.flat) g = 0;
    for (std::size_t b = 0; b < B; ++b) {
      auto& s = alone[b];
      loss += K::step(params, s.state, s.sensitivity, inputs[t][b], tp[b], s.gradient, s.step);
      for (std::size_t i = 0; i < sum.flat.size(); ++i) sum.flat[i] += s.gradient.flat[i];
    }
    const Scalar loss1 = K::batch(params, batch1, inputs[t], tp, g1, 1);
    const Scalar loss3 = K::batch(params, batch3, inputs[t], tp, g3, 3);
    const Scalar lossp = pool.step(params, pooled, inputs[t], tp, gp);
    CHECK(loss1 == loss);
    CHECK(loss3 == loss);
    CHECK(lossp == loss);
    CHECK(same_bits(g1.flat, sum.flat));
    CHECK(same_bits(g3.flat, sum.flat));
    CHECK(same_bits(gp.flat, sum.flat));
    for (std::size_t b = 0; b < B; ++b) {
      CHECK(same_bits(batch1[b].state.flat, alone[b].state.flat));
      CHECK(same_bits(batch3[b].sensitivity.flat, alone[b].sensitivity.flat));
      CHECK(batch3[b].loss == batch1[b].loss);
      CHECK(same_bits(pooled[b].sensitivity.flat, alone[b].sensitivity.flat));
    }
  }
  // The streams differ (different inputs), so the check above compared something.
  CHECK_FALSE(same_bits(alone[0].state.flat, alone[1].state.flat));
  // More threads than streams, and no streams at all.
  const auto first = target_ptrs(0);
  CHECK_NOTHROW(K::batch(params, std::span(batch3).first(2), std::span(inputs[0]).first(2), std::span(first).first(2), g3, 8));
  CHECK(K::batch(params, std::span<typename K::Stream>(), {}, {}, g3, 2) == Scalar(0));
  for (auto g : g3.flat) CHECK(g == Scalar(0));
  // Fewer streams than the pool has threads, and none.
  CHECK_NOTHROW(pool.step(params, std::span(pooled).first(2), std::span(inputs[0]).first(2), std::span(first).first(2), gp));
  CHECK(pool.step(params, std::span<typename K::Stream>(), {}, {}, gp) == Scalar(0));
  // Mismatched sizes are refused.
  CHECK_THROWS_AS(K::batch(params, batch1, std::span(inputs[0]).first(2), target_ptrs(0), g1, 1), std::invalid_argument);
  CHECK_THROWS_AS(pool.step(params, pooled, std::span(inputs[0]).first(2), target_ptrs(0), gp), std::invalid_argument);
}

// Fresh streams (no buffer sized yet) stepped as a batch while the k-th allocation fails, for
// k = 0, 1, ...: either the call throws std::bad_alloc and no stream has changed, or it returns
// and every stream is where stepping it alone puts it. Per call mode: one thread, threads started
// per call, a pool.
template <class K>
void check_all_or_nothing() {
  using Scalar = typename K::Scalar;
  constexpr std::size_t B = 4;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-0.6, 0.6);
  typename K::Params params;
  for (auto& p : params.flat) p = Scalar(u(rng));
  std::vector<typename K::Input> inputs(B);
  std::vector<typename K::Target> targets(B);
  for (std::size_t b = 0; b < B; ++b) {
    for (auto& x : inputs[b].flat) x = Scalar(u(rng) + 0.7);
    for (auto& y : targets[b].flat) y = Scalar(u(rng) + 0.6);
  }
  std::vector<const typename K::Target*> tp;
  for (std::size_t b = 0; b < B; ++b) tp.push_back(&targets[b]);
  std::vector<typename K::Stream> alone(B);
  typename K::Gradient g;
  for (std::size_t b = 0; b < B; ++b)
    K::step(params, alone[b].state, alone[b].sensitivity, inputs[b], tp[b], alone[b].gradient, alone[b].step);
  const typename K::Stream untouched;
  typename K::Pool pool(3);
  for (int mode = 0; mode < 3; ++mode) {
    INFO("mode " << (mode == 0 ? "one thread" : mode == 1 ? "3 threads per call" : "pool of 3"));
    int failures = 0;
    for (long k = 0;; ++k) {
      std::vector<typename K::Stream> streams(B);
      bool threw = false;
      fault::allocations_left = k;
      try {
        if (mode == 2)
          pool.step(params, streams, inputs, tp, g);
        else
          K::batch(params, streams, inputs, tp, g, mode == 0 ? 1 : 3);
      } catch (const std::bad_alloc&) {
        threw = true;
      }
      fault::allocations_left = -1;
      bool unchanged = true, stepped = true;
      for (std::size_t b = 0; b < B; ++b) {
        unchanged = unchanged && same_bits(streams[b].state.flat, untouched.state.flat) &&
                    same_bits(streams[b].sensitivity.flat, untouched.sensitivity.flat);
        stepped = stepped && same_bits(streams[b].state.flat, alone[b].state.flat) &&
                  same_bits(streams[b].sensitivity.flat, alone[b].sensitivity.flat);
      }
      if (threw) {
        ++failures;
        CHECK(unchanged);
        REQUIRE(k < 10000);
        continue;
      }
      CHECK(stepped);
      break;
    }
    // Some allocations failed, so the all-or-nothing path was taken.
    CHECK(failures > 0);
  }
  CHECK_FALSE(same_bits(alone[0].state.flat, untouched.state.flat));
}

// Values that are not finite: rtrl_step and both batches throw std::domain_error naming what and
// change no state and no sensitivity; the good steps around them give what a run that never saw
// the bad ones gives, bit for bit.
template <class K>
void check_numeric_guard() {
  using Scalar = typename K::Scalar;
  constexpr std::size_t B = 4;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-0.6, 0.6);
  typename K::Params params;
  for (auto& p : params.flat) p = Scalar(u(rng));
  std::vector<typename K::Input> inputs(B);
  std::vector<typename K::Target> targets(B);
  for (std::size_t b = 0; b < B; ++b) {
    for (auto& x : inputs[b].flat) x = Scalar(u(rng));
    for (auto& y : targets[b].flat) y = Scalar(u(rng) + 0.6);
  }
  std::vector<const typename K::Target*> tp;
  for (std::size_t b = 0; b < B; ++b) tp.push_back(&targets[b]);
  // Two good steps, so that the state and the sensitivity are not zero.
  std::vector<typename K::Stream> streams(B), reference(B);
  typename K::Gradient g, g_reference;
  for (int t = 0; t < 2; ++t) {
    K::batch(params, streams, inputs, tp, g, 1);
    K::batch(params, reference, inputs, tp, g_reference, 1);
  }
  const std::vector<typename K::Stream> before = streams;
  auto unchanged = [&] {
    bool same = true;
    for (std::size_t b = 0; b < B; ++b)
      same = same && same_bits(streams[b].state.flat, before[b].state.flat) &&
             same_bits(streams[b].sensitivity.flat, before[b].sensitivity.flat);
    return same;
  };
  const Scalar nan = std::numeric_limits<Scalar>::quiet_NaN(), inf = std::numeric_limits<Scalar>::infinity();
  auto refused = [&](auto&& call, const char* what, const char* value) {
    std::string message;
    try {
      call();
    } catch (const std::domain_error& e) {
      message = e.what();
    }
    CHECK_MESSAGE(message.find(what) != std::string::npos, message);
    CHECK_MESSAGE(message.find(value) != std::string::npos, message);
    CHECK(unchanged());
  };
  // One stream alone: a NaN input, an infinite target, NaN parameters.
  auto bad_input = inputs[0];
  bad_input.flat[bad_input.flat.size() - 1] = nan;
  auto bad_target = targets[0];
  bad_target.flat[0] = inf;
  auto bad_params = params;
  for (auto& p : bad_params.flat) p = nan;
  auto& s0 = streams[0];
  refused([&] { K::step(params, s0.state, s0.sensitivity, bad_input, tp[0], s0.gradient, s0.step); }, "the input",
          "is NaN");
  refused([&] { K::step(params, s0.state, s0.sensitivity, inputs[0], &bad_target, s0.gradient, s0.step); }, "the target",
          "entry 0 is +inf");
  refused([&] { K::step(bad_params, s0.state, s0.sensitivity, inputs[0], tp[0], s0.gradient, s0.step); },
          "a value of the step", "NaN");
  // A batch with one bad stream (the third): no stream advances, on one thread, three, or a pool.
  auto batch_inputs = inputs;
  batch_inputs[2] = bad_input;
  typename K::Pool pool(3);
  refused([&] { K::batch(params, streams, batch_inputs, tp, g, 1); }, "the input", "is NaN");
  refused([&] { K::batch(params, streams, batch_inputs, tp, g, 3); }, "the input", "is NaN");
  refused([&] { pool.step(params, streams, batch_inputs, tp, g); }, "the input", "is NaN");
  // The next good batch: as if the bad ones had never been tried.
  K::batch(params, streams, inputs, tp, g, 1);
  K::batch(params, reference, inputs, tp, g_reference, 1);
  CHECK(same_bits(g.flat, g_reference.flat));
  for (std::size_t b = 0; b < B; ++b) {
    CHECK(same_bits(streams[b].state.flat, reference[b].state.flat));
    CHECK(same_bits(streams[b].sensitivity.flat, reference[b].sensitivity.flat));
  }
}

#define LOOPGRAD_BATCH_KERNEL(ns)                                                                   \
  struct ns##_types {                                                                               \
    using Scalar = ns::Scalar;                                                                      \
    using Params = ns::Params;                                                                      \
    using Input = ns::Input;                                                                        \
    using Target = ns::Target;                                                                      \
    using Gradient = ns::Gradient;                                                                  \
    using Stream = ns::Stream;                                                                      \
    using Pool = ns::BatchPool;                                                                     \
    static Scalar step(const Params& p, ns::State& s, ns::Sensitivity& d, const Input& x, const Target* y, \
                       Gradient& g, ns::Step& st) {                                                 \
      return ns::rtrl_step(p, s, d, x, y, g, st);                                                   \
    }                                                                                               \
    static Scalar batch(const Params& p, std::span<Stream> s, std::span<const Input> x,            \
                        std::span<const Target* const> y, Gradient& g, unsigned threads) {          \
      return ns::rtrl_step_batch(p, s, x, y, g, threads);                                           \
    }                                                                                               \
  };                                                                                                \
  TEST_CASE("rtrl_step_batch of " #ns ": bit for bit the streams one by one, with and without threads") { \
    check_batch<ns##_types>();                                                                      \
  }                                                                                                 \
  TEST_CASE("rtrl_step_batch of " #ns ": when memory runs out no stream advances") {                 \
    check_all_or_nothing<ns##_types>();                                                             \
  }                                                                                                 \
  TEST_CASE("rtrl_step and rtrl_step_batch of " #ns ": values that are not finite change nothing") {  \
    check_numeric_guard<ns##_types>();                                                              \
  }

LOOPGRAD_BATCH_KERNEL(k_multi_loop)
LOOPGRAD_BATCH_KERNEL(k_diagonal)
LOOPGRAD_BATCH_KERNEL(k_lstm_f)

}  // namespace

TEST_CASE("a generated Step names every group's values: the input's copy, the states and the outputs") {
  using namespace k_multi_loop;
  Params params;
  for (std::size_t i = 0; i < params.flat.size(); ++i) params.flat[i] = 0.1 * std::sin(double(i) + 1.0);
  State state;
  Sensitivity sensitivity;
  Input input;
  input.x()[0] = 0.5;
  input.x()[1] = -0.25;
  input.x()[2] = 1.0;
  Target target;
  Gradient gradient;
  Step step;
  const Kernel kernel;
  for (int t = 0; t < 3; ++t) rtrl_step(params, state, sensitivity, input, &target, gradient, step);
  // Each accessor is the group's slice of Step::values (groups in declaration order: x, a, b, c, d, y).
  const auto check = [&](auto span, int g, std::size_t size) {
    CHECK(span.data() == step.values.data() + Kernel::value_offset(g));
    CHECK(span.size() == size);
  };
  check(step.x(), 0, 3);
  check(step.a(), 1, 4);
  check(step.b(), 2, 3);
  check(step.c(), 3, 2);
  check(step.d(), 4, 2);
  check(step.y(), 5, 2);
  // The input's copy is the input; the states after the step are the state's values; the output
  // is what the loss compares with the target.
  CHECK(std::equal(step.x().begin(), step.x().end(), input.x().begin()));
  CHECK(std::equal(step.a().begin(), step.a().end(), state.a().begin()));
  CHECK(std::equal(step.c().begin(), step.c().end(), state.c().begin()));
  double loss = 0;
  for (std::size_t i = 0; i < 2; ++i) loss += (step.y()[i] - target.y()[i]) * (step.y()[i] - target.y()[i]) / 2.0;
  CHECK(kernel.loss(step, target.flat.data()) == doctest::Approx(loss).epsilon(1e-14));
}
