#pragma once
// The check every generated kernel passes: the same parameters and inputs through the generated
// kernel and the reference interpreter, 100 steps, comparing at every step the forward values,
// the loss, the gradient (Eqn. 5), the sensitivity (Eqn. 4) and the state, once with fixed
// parameters and once with an SGD update between steps; and with fixed parameters the summed
// generated RTRL gradient against the interpreter's BPTT; then the blocked exact algorithm on the
// generated kernel against RTRL on it.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "loopgrad/runtime/bptt.hpp"
#include "loopgrad/runtime/init.hpp"
#include "loopgrad/runtime/interpreter.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "loopgrad/runtime/rtrl.hpp"
#include "../blocked_check.hpp"
#include "../compare.hpp"
#include "random_network.hpp"
#include "test_kernels.hpp"

namespace loopgrad::testing {

// The multiplications a generated header says it performs (emitted_*macs*), counted by the
// emitter loop by loop as it wrote them.
struct EmittedMacs {
  long long update = 0, reverse = 0, column = 0, column_call = 0;
};

template <class Kernel, class T>
void check_kernel(const char* name, const ir::Network& net, const EmittedMacs& emitted,
                  const analysis::AnalysisOptions& options = {}) {
  const double tolerance = std::is_same_v<T, double> ? 1e-12 : 1e-4;
  INFO("kernel " << std::string(name) << " (network '" << net.name << "'), tolerance " << tolerance);
  const runtime::Interpreter<T> interpreter(net, analysis::analyse(net, options));
  // An approximation (layer_local) is generated as analysed: the header says so, and RTRL on it
  // gives the interpreter's approximate gradient (its own test checks that against a BPTT with the
  // same paths cut); BPTT's exact gradient and the blocked learner do not apply.
  const bool exact = interpreter.exact_gradient();
  CHECK(Kernel::exact_gradient() == exact);
  const Kernel kernel;
  REQUIRE(kernel.param_count() == interpreter.param_count());
  REQUIRE(kernel.input_size() == interpreter.input_size());
  REQUIRE(kernel.target_size() == interpreter.target_size());
  REQUIRE(kernel.state_size() == interpreter.state_size());
  // The kernel stores the entries of the neuron-level patterns; written out whole its blocks are
  // the interpreter's.
  REQUIRE(kernel.sensitivity_size() == static_cast<std::size_t>(interpreter.analysis().sensitivity_values));
  REQUIRE(kernel.sensitivity_block_size() == interpreter.sensitivity_size());
  for (std::size_t p = 0; p < net.params.size(); ++p) REQUIRE(kernel.param_offset(int(p)) == interpreter.param_offset(int(p)));
  // The multiplications the emitted update and reverse passes perform, counted loop by loop as
  // they were written, are the ones the analysis reports (and its cost model weighs).
  const auto& cost = interpreter.analysis().exact_cost;
  CHECK(emitted.update == interpreter.analysis().macs_per_step);
  CHECK(emitted.reverse == cost.reverse_macs);
  CHECK(emitted.column == cost.column_reverse_macs);
  CHECK(emitted.column_call == cost.column_call_macs);
  // The header carries the cost model's pick of exact algorithm.
  CHECK(Kernel::recommended_block_length() == interpreter.recommended_block_length());
  CHECK(Kernel::recommended_background_block_length() == interpreter.recommended_background_block_length());

  const auto seq = random_sequence<T>(net, interpreter.input_size(), 100, std::hash<std::string>{}(name));

  for (const bool online : {false, true}) {
    INFO((online ? "with an SGD update every step" : "with fixed parameters"));
    auto params = runtime::initial_params<T>(net, 5, 0.8);
    runtime::Rtrl<runtime::Interpreter<T>, T> reference(interpreter);
    runtime::Rtrl<Kernel, T> generated(kernel);
    std::vector<double> summed(params.size(), 0.0);
    std::vector<T> expanded(kernel.sensitivity_block_size());
    double worst = 0;
    for (std::size_t t = 0; t < seq.size(); ++t) {
      INFO("step " << t);
      const T expected_loss = reference.step(params, seq.inputs[t].data(), seq.target(t));
      const T loss = generated.step(params, seq.inputs[t].data(), seq.target(t));
      auto record = [&](double d) {
        worst = std::max(worst, d);
        return d;
      };
      CHECK(record(relative_difference(&loss, &expected_loss, 1)) <= tolerance);
      for (std::size_t g = 0; g < net.groups.size(); ++g) {
        if (net.groups[g].kind == ir::GroupKind::input) continue;
        const auto& want = interpreter.value(reference.last_step(), int(g));
        INFO("group " << net.groups[g].name);
        CHECK(record(relative_difference(generated.last_step().values.data() + kernel.value_offset(int(g)), want.data(),
                                         want.size())) <= tolerance);
      }
      CHECK(record(relative_difference(generated.gradient().data(), reference.gradient().data(), params.size())) <= tolerance);
      kernel.expand_sensitivity(generated.sensitivity().data(), expanded.data());
      CHECK(record(relative_difference(expanded.data(), reference.sensitivity().data(), expanded.size())) <= tolerance);
      CHECK(record(relative_difference(generated.state().data(), reference.state().data(), reference.state().size())) <=
            tolerance);
      for (std::size_t i = 0; i < summed.size(); ++i) summed[i] += double(generated.gradient()[i]);
      if (online) runtime::Sgd<T>{T(0.01)}.apply(params, reference.gradient());
    }
    const std::string summary = std::string(name) + (online ? " online" : " fixed") +
                                ": worst relative difference to the interpreter " + fmt_double(worst);
    MESSAGE(summary);
    if (!online && std::is_same_v<T, double> && exact) {
      const auto bptt = runtime::bptt_gradient(interpreter, params, seq);
      CHECK(relative_difference(summed.data(), bptt.gradient.data(), summed.size()) <= 1e-10);
      // The BPTT-style learners run on the generated kernel as on the interpreter.
      runtime::TruncatedBptt<Kernel, T> on_kernel(kernel, 3, 5);
      runtime::TruncatedBptt<runtime::Interpreter<T>, T> on_interpreter(interpreter, 3, 5);
      for (std::size_t t = 0; t < 30; ++t) {
        on_kernel.observe(params, seq.inputs[t].data(), seq.target(t));
        on_interpreter.observe(params, seq.inputs[t].data(), seq.target(t));
        if (on_kernel.gradient_ready())
          CHECK(relative_difference(on_kernel.gradient().data(), on_interpreter.gradient().data(), params.size()) <= tolerance);
      }
    }
  }
  // sensitivity_update given dC/dR_(N-1) and the gradient (what Rtrl and rtrl_step call) adds the
  // gradient's recurrent term that apply_sensitivity adds, in its passes over Delta_(N-1), and
  // writes the same Delta_N bit for bit.
  {
    const auto params = runtime::initial_params<T>(net, 5, 0.8);
    std::mt19937 rng(11);
    std::uniform_real_distribution<double> uniform(-1, 1);
    auto random = [&](std::size_t n) {
      std::vector<T> v(n);
      for (auto& x : v) x = T(uniform(rng));
      return v;
    };
    const auto delta = random(kernel.sensitivity_size()), adjoint = random(kernel.state_size()),
               state = random(kernel.state_size());
    typename Kernel::Step step;
    kernel.forward(params.data(), state.data(), seq.inputs[0].data(), step);
    std::vector<T> plain(delta.size()), fused(delta.size()), want(params.size(), T(0.5)), got(params.size(), T(0.5));
    kernel.apply_sensitivity(delta.data(), adjoint.data(), want.data());
    kernel.sensitivity_update(params.data(), step, delta.data(), plain.data());
    kernel.sensitivity_update(params.data(), step, delta.data(), fused.data(), adjoint.data(), got.data());
    CHECK(plain == fused);
    CHECK(relative_difference(got.data(), want.data(), got.size()) <= tolerance);
  }
  // The blocked exact algorithm on the generated kernel (it builds Delta row by row through the
  // kernel's sensitivity_runs, its block ends' sweeps and the gradient's sweep over the steps
  // without a loss through the kernel's reverse pass over many columns): RTRL's gradients at every
  // step, RTRL's Delta at every block end.
  static_assert(runtime::BlockedRtrl<Kernel, T>::column_reverse,
                "a generated kernel has reverse_columns and dense_gradients, so these checks cover them");
  if (!exact) {
    CHECK_THROWS_AS((runtime::BlockedRtrl<Kernel, T>(kernel, 2)), std::invalid_argument);
    return;
  }
  runtime::Sequence<T> head;
  head.inputs.assign(seq.inputs.begin(), seq.inputs.begin() + 30);
  head.targets.assign(seq.targets.begin(), seq.targets.begin() + 30);
  double worst = 0;
  for (const auto& c : blocked_cases(kernel.state_size(), head.size()))
    worst = std::max(worst, check_blocked(kernel, net, head, c, tolerance));
  const std::string blocked_summary = std::string(name) + " blocked: worst relative difference to RTRL " + fmt_double(worst);
  MESSAGE(blocked_summary);
}

}  // namespace loopgrad::testing

// `...`: the analysis options the kernel was generated with (test_kernels.hpp), if any.
#define LOOPGRAD_CHECK_KERNEL(ns, scalar, expression, ...)                 \
  TEST_CASE("generated kernel " #ns " equals the interpreter (" #expression ")") { \
    loopgrad::testing::check_kernel<ns::Kernel, scalar>(                                     \
        #ns, expression,                                                                     \
        {ns::emitted_macs_per_step, ns::emitted_reverse_macs_per_step, ns::emitted_column_macs_per_column, \
         ns::emitted_column_macs_per_call} __VA_OPT__(, __VA_ARGS__));                       \
  }
