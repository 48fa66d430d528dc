// The kernel emitter: assembles the header from its sections (kernel_layout, kernel_forward,
// kernel_reverse, kernel_reverse_columns, kernel_sensitivity, kernel_batch), all reading one
// KernelPlan.
#include "loopgrad/emit/kernel.hpp"

#include <fmt/format.h>

#include <tuple>

#include "code_writer.hpp"
#include "kernel_plan.hpp"
#include "loopgrad/emit/report.hpp"

namespace loopgrad::emit {

const char* to_string(ScalarType s) { return s == ScalarType::float32 ? "float" : "double"; }

namespace {

// With the BLAS option: OpenBLAS picks its kernels for the CPU when it loads, and Debian's 0.3.21
// does not recognise every CPU; it then runs its generic SSE3 kernels at a fraction of the speed.
// The first sensitivity update says so once, with the fix.
std::string blas_check() {
  return R"(// OpenBLAS picks its kernels for the CPU when it loads; some builds (Debian's 0.3.21) do not
// recognise every CPU and then run their generic SSE3 kernels at a fraction of the speed. The first
// sensitivity update says so once on stderr, with the fix. With another CBLAS the weak symbol is
// null and nothing is said.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
extern "C" char* openblas_get_corename(void) __attribute__((weak));
inline void check_blas_kernels() {
  static const bool checked = [] {
    if (openblas_get_corename == nullptr || std::getenv("OPENBLAS_CORETYPE") != nullptr) return true;
    const std::string_view core = openblas_get_corename();
    const bool generic = core == "Prescott" || core == "Core2" || core == "Penryn" || core == "Dunnington" ||
                         core == "Nehalem" || core == "Atom" || core == "Katmai" || core == "Northwood" || core == "Banias";
    const char* want = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
    if (generic && want != nullptr)
      std::fprintf(stderr,
                   "loopgrad: OpenBLAS runs its generic %s kernels on this CPU, which has %s: set OPENBLAS_CORETYPE=%s "
                   "in the environment before the program starts for its fast ones\n",
                   openblas_get_corename(), want[0] == 'S' ? "AVX-512" : "AVX2", want);
    return true;
  }();
  (void)checked;
}
#else
inline void check_blas_kernels() {}
#endif

)";
}

// rtrl_step and its two phases: the same for every network, so one block of C++.
constexpr const char* rtrl_step_section = R"cpp(
// What rtrl_step checks before it changes anything.
namespace step_detail {

// Whether every value is finite (not NaN, not infinite): 32 partial sums of value * 0 stay 0
// exactly then, at the cost of one read of the values (32, so that several vector registers of
// sums hide the latency of the additions).
inline bool all_finite(const Scalar* x, std::size_t n) {
  Scalar probe[32] = {};
  const std::size_t whole = n / 32 * 32;
  for (std::size_t i = 0; i < whole; i += 32)
    for (std::size_t j = 0; j < 32; ++j) probe[j] += x[i + j] * Scalar(0);
  for (std::size_t j = 0; j < n - whole; ++j) probe[j] += x[whole + j] * Scalar(0);
  Scalar sum = 0;
  for (const Scalar p : probe) sum += p;
  return sum == Scalar(0);
}

// Throws std::domain_error naming `what` and its first value that is not finite.
inline void check_finite(const Scalar* x, std::size_t n, const char* what) {
  if (all_finite(x, n)) return;
  std::size_t i = 0;
  while (i < n && std::isfinite(x[i])) ++i;
  const char* value = i == n ? "not finite" : std::isnan(x[i]) ? "NaN" : x[i] > 0 ? "+inf" : "-inf";
  throw std::domain_error(std::string("loopgrad rtrl_step (network ") + network_name + "): " + what +
                          " is not finite (entry " + std::to_string(i) + " is " + value +
                          "); the state and the sensitivity were left as they were before the step");
}

// rtrl_step up to its commit: the loss, the gradient into `gradient` and Delta_N into
// step.next_sensitivity, each checked; `state` and `sensitivity` are not changed.
inline Scalar compute(const Params& params, const State& state, const Sensitivity& sensitivity, const Input& input,
                      const Target* target, Gradient& gradient, Step& step) {
  const Kernel kernel;
  check_finite(input.flat.data(), n_inputs, "the input");
  if (target != nullptr) check_finite(target->flat.data(), n_targets, "the target");
  kernel.forward(params.flat.data(), state.flat.data(), input.flat.data(), step);
  check_finite(step.values.data(), n_step_values, "a value of the step (an activation, or a parameter)");
  for (auto& g : gradient.flat) g = 0;
  Scalar loss = 0;
  State prev_adjoint;
  if (target != nullptr) {
    loss = kernel.loss(step, target->flat.data());
    if (!std::isfinite(loss))
      throw std::domain_error(std::string("loopgrad rtrl_step (network ") + network_name + "): the loss is " +
                              (std::isnan(loss) ? "NaN" : "infinite") +
                              "; the state and the sensitivity were left as they were before the step");
    kernel.reverse(params.flat.data(), step, target->flat.data(), nullptr, gradient.flat.data(), prev_adjoint.flat.data());
  }
  // Delta_N, and with a target the gradient's recurrent term in the same passes over Delta_(N-1).
  step.next_sensitivity.resize(n_sensitivity);
  kernel.sensitivity_update(params.flat.data(), step, sensitivity.flat.data(), step.next_sensitivity.data(),
                            target != nullptr ? prev_adjoint.flat.data() : nullptr,
                            target != nullptr ? gradient.flat.data() : nullptr);
  if (target != nullptr) check_finite(gradient.flat.data(), n_params, "the gradient");
  check_finite(step.next_sensitivity.data(), n_sensitivity, "the new sensitivity Delta_N");
  return loss;
}

// Makes the step that compute() left in `step` current: Delta_N and R_N.
inline void commit(State& state, Sensitivity& sensitivity, Step& step) {
  const Kernel kernel;
  sensitivity.flat.swap(step.next_sensitivity);
  kernel.next_state(step, state.flat.data());
}

}  // namespace step_detail

// One exact RTRL step: forward, the loss C_N against `target` (nullptr: no target, C_N = 0), the
// gradient dC_N/dP into `gradient` (Eqn. 5, with Delta_(N-1)), then Delta_N (Eqn. 4) and R_N.
// The parameters may change between steps. Throws std::domain_error, naming what, if the input,
// the target, a value of the step, the loss, the gradient or Delta_N is not finite (NaN or
// infinite): then `state` and `sensitivity` are as they were, and `gradient` is not meaningful.
inline Scalar rtrl_step(const Params& params, State& state, Sensitivity& sensitivity, const Input& input,
                        const Target* target, Gradient& gradient, Step& step) {
  const Scalar loss = step_detail::compute(params, state, sensitivity, input, target, gradient, step);
  step_detail::commit(state, sensitivity, step);
  return loss;
}
)cpp";

}  // namespace

std::string emit_kernel(const ir::Network& net, const analysis::Analysis& a, const KernelOptions& options) {
  const detail::KernelPlan plan(net, a, options);
  // The sensitivity section is written first: the layout states how many multiplications it does,
  // and the includes whether it calls CBLAS.
  // The sections that count their multiplications are written before the layout that states them.
  detail::EmittedMacs emitted;
  std::string sensitivity, reverse;
  emitted.update = detail::emit_sensitivity(plan, sensitivity);
  emitted.reverse = detail::emit_reverse(plan, reverse);
  std::tie(emitted.column, emitted.column_call) = detail::emit_reverse_columns(plan, reverse);
  const bool blas = sensitivity.find("cblas_") != std::string::npos;
  const auto& ns = plan.options.namespace_name;
  std::string out;
  out += fmt::format("// Generated by loopgrad from network '{}': scalar {}, namespace {}.\n", net.name, plan.scalar, ns);
  if (!options.regenerate_command.empty()) out += fmt::format("// Regenerate with: {}\n", options.regenerate_command);
  out += blas
             ? "// Do not edit: change the network's spec and rebuild. Needs the C++20 standard library and CBLAS.\n"
             : "// Do not edit: change the network's spec and rebuild. Needs only the C++20 standard library.\n";
  out += fmt::format(
      "//\n// The {}forward sensitivity recurrence (real-time recurrent learning) for this network alone:\n"
      "// {} loops, {} of {} cross terms nonzero, {} sensitivity values stored ({} if nothing were pruned),\n"
      "// {} multiply-adds per step in the sensitivity update ({} if nothing were pruned).\n",
      a.exact() ? "exact " : "approximate (see below) ", a.loops.size(), [&] {
        std::size_t n = 0;
        for (const auto& t : a.cross_terms) n += t.nonzero ? 1 : 0;
        return n;
      }(),
      a.cross_terms.size(), a.sensitivity_values, a.dense_sensitivity_values, a.macs_per_step, a.dense_macs_per_step);
  out += fmt::format("// {}.\n", exact_choice(a));
  if (!a.exact()) out += "//\n// " + approximation_note(net, a, "\n// ") + "\n";
  out += "#pragma once\n\n#include <array>\n#include <atomic>\n#include <cmath>\n#include <condition_variable>\n#include <cstddef>\n#include <cstring>\n#include <exception>\n#include <functional>\n#include <mutex>\n"
         "#include <span>\n#include <stdexcept>\n#include <string>\n#include <thread>\n#include <vector>\n\n";
  if (blas) out += "#include <cblas.h>  // dense products of at least " + std::to_string(options.blas_min_flops) + " flops\n\n";
  if (options.blas_min_flops > 0) out += "#include <cstdio>\n#include <cstdlib>\n#include <string_view>\n\n";
  out += fmt::format("namespace {} {{\n\n", ns);
  if (options.blas_min_flops > 0) out += blas_check();
  detail::emit_layout(plan, emitted, out);

  detail::CodeWriter head(0);
  head.line("// The kernel interface (docs/design.md, section 2) on flat arrays in the layouts above; the same as");
  head.line("// loopgrad::runtime::Interpreter's, so loopgrad's training algorithms run on it unchanged.");
  head.line("class Kernel {{");
  head.line(" public:");
  head.line("  using Scalar = {}::Scalar;", ns);
  // Where each group's values lie in Step::values (inputs: their copy).
  std::vector<std::size_t> group_offset;
  for (std::size_t g = 0; g < net.groups.size(); ++g) {
    const auto& group = net.groups[g];
    group_offset.push_back(group.kind == ir::GroupKind::input
                               ? plan.input_copy_offset + plan.input_offset[g]
                               : static_cast<std::size_t>(plan.value_offset[static_cast<std::size_t>(group.value_op())]));
  }
  head.line("  // Values of one step, kept for the reverse pass and the sensitivity update; each group's");
  head.line("  // values (inputs included) by name, e.g. the outputs after forward or rtrl_step.");
  head.line("  struct Step {{");
  head.line("    std::vector<Scalar> values = std::vector<Scalar>(n_step_values);");
  head.line("    std::vector<Scalar> tangent;  // workspace of sensitivity_update, sized on first use");
  head.line("    std::vector<Scalar> next_sensitivity;  // rtrl_step's Delta_N before the swap, sized on first use");
  for (std::size_t g = 0; g < net.groups.size(); ++g) {
    const auto& group = net.groups[g];
    const char* what = group.kind == ir::GroupKind::input ? "input"
                       : group.is_output()                 ? "output"
                       : a.state_index[g] >= 0             ? "recurrent state"
                                                           : "group";
    head.line("    // {}: {} values, {}", group.name, group.size, what);
    head.line("    std::span<const Scalar, {0}> {1}() const {{ return std::span<const Scalar, {0}>(values.data() + {2}, {0}); }}",
              group.size, group.name, group_offset[g]);
  }
  head.line("  }};");
  head.blank();
  head.line("  static constexpr std::size_t param_count() {{ return n_params; }}");
  head.line("  static constexpr std::size_t input_size() {{ return n_inputs; }}");
  head.line("  static constexpr std::size_t target_size() {{ return n_targets; }}");
  head.line("  static constexpr std::size_t state_size() {{ return n_state; }}");
  head.line("  static constexpr std::size_t sensitivity_size() {{ return n_sensitivity; }}");
  head.line("  static constexpr std::size_t sensitivity_block_size() {{ return n_sensitivity_blocks; }}");
  head.line("  // The exact algorithm the analysis's cost model picks for this network (runtime::ExactOnline");
  head.line("  // follows it): 0 for RTRL, otherwise the block length of the blocked algorithm.");
  const bool blocked = a.exact_cost.choice == analysis::ExactAlgorithm::blocked;
  head.line("  static constexpr int recommended_block_length() {{ return {}; }}", blocked ? a.exact_cost.block_length : 0);
  head.line("  // The same with the block end on a second thread (BlockSchedule::background): the least block");
  head.line("  // length at which the block end takes no longer than the next block's steps.");
  head.line("  static constexpr int recommended_background_block_length() {{ return {}; }}",
            blocked ? a.exact_cost.background_block_length : 0);
  if (a.exact()) {
    head.line("  // true: RTRL on this kernel gives the exact gradient.");
  } else {
    head.line("  // false: the analysis dropped blocks of Delta (the layer_local approximation, see the header's");
    head.line("  // first lines); RTRL gives the approximation's gradient and BlockedRtrl refuses the kernel.");
  }
  head.line("  static constexpr bool exact_gradient() {{ return {}; }}", a.exact() ? "true" : "false");
  std::string offsets;
  for (auto o : plan.param_offset) offsets += (offsets.empty() ? "" : ", ") + std::to_string(o);
  std::string groups;
  for (auto offset : group_offset) groups += (groups.empty() ? "" : ", ") + std::to_string(offset);
  head.line("  // Offset of group g's values (groups in declaration order, inputs included) in Step::values.");
  head.line("  static constexpr std::size_t value_offset(int g) {{");
  head.line("    constexpr std::array<std::size_t, {}> offsets{{{{{}}}}};", net.groups.size(), groups);
  head.line("    return offsets[static_cast<std::size_t>(g)];");
  head.line("  }}");
  head.line("  // Offset of parameter group p (in declaration order) in the parameter layout.");
  head.line("  static constexpr std::size_t param_offset(int p) {{");
  head.line("    constexpr std::array<std::size_t, {}> offsets{{{{{}}}}};", plan.param_offset.size(), offsets);
  head.line("    return offsets[static_cast<std::size_t>(p)];");
  head.line("  }}");
  head.line("  // The network's name and the tables parameter_groups, torch_tensors and torch_tensor_groups, for");
  head.line("  // loopgrad/runtime/kernel_io.hpp (parameters, gradients and checkpoints in safetensors files).");
  head.line("  static constexpr const char* network() {{ return network_name; }}");
  head.line("  static constexpr std::span<const ParameterGroup> parameter_table() {{ return parameter_groups; }}");
  head.line("  static constexpr std::span<const TorchTensor> torch_table() {{ return torch_tensors; }}");
  head.line("  static constexpr std::span<const std::size_t> torch_table_groups() {{ return torch_tensor_groups; }}");
  head.blank();
  out += head.str();
  detail::emit_forward(plan, out);
  out += reverse;
  out += sensitivity;
  detail::CodeWriter tail(0);
  tail.line(" private:");
  tail.line("  static Scalar log_sum_exp([[maybe_unused]] const Scalar* y, [[maybe_unused]] std::size_t n) {{");
  tail.line("    Scalar top = y[0];");
  tail.line("    for (std::size_t i = 1; i < n; ++i) top = y[i] > top ? y[i] : top;");
  tail.line("    Scalar sum = 0;");
  tail.line("    for (std::size_t i = 0; i < n; ++i) sum += std::exp(y[i] - top);");
  tail.line("    return top + std::log(sum);");
  tail.line("  }}");
  tail.line("}};");
  tail.blank();
  tail.line("using Step = Kernel::Step;");
  tail.blank();
  tail.line("// A plain forward step: every group's value in `step`, and `state` advanced to R_N.");
  tail.open("inline void forward_step(const Params& params, State& state, const Input& input, Step& step)");
  tail.line("const Kernel kernel;");
  tail.line("kernel.forward(params.flat.data(), state.flat.data(), input.flat.data(), step);");
  tail.line("kernel.next_state(step, state.flat.data());");
  tail.close();
  tail.blank();
  out += tail.str();
  out += rtrl_step_section;
  detail::emit_batch(out);
  out += fmt::format("\n}}  // namespace {}\n", ns);
  return out;
}

}  // namespace loopgrad::emit
