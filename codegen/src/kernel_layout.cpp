// Kernel section: sizes and the storage types with their documented layouts.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "code_writer.hpp"
#include "kernel_plan.hpp"

namespace loopgrad::emit::detail {

namespace {

// Named views over a flat array: for each entry, `name()` returning a std::span of static extent.
struct View {
  std::string name;
  std::size_t offset;
  std::size_t size;
  std::string comment;
};

void emit_views(CodeWriter& w, const std::vector<View>& views) {
  for (const auto& v : views) {
    w.line("// {}", v.comment);
    w.line("std::span<Scalar, {}> {}() {{ return std::span<Scalar, {}>(flat.data() + {}, {}); }}", v.size, v.name,
           v.size, v.offset, v.size);
    w.line("std::span<const Scalar, {}> {}() const {{ return std::span<const Scalar, {}>(flat.data() + {}, {}); }}",
           v.size, v.name, v.size, v.offset, v.size);
  }
}

// How a stored block's entries are laid out, for its comment.
std::string describe_pattern(const analysis::Pattern& p) {
  if (p.full()) return "row-major";
  // One run per row, of one length, starting at a column affine in the row: say where.
  bool affine = !p.rows.empty();
  for (const auto& row : p.rows) affine = affine && row.size() == 1;
  const std::int64_t length = affine ? p.rows[0][0].end - p.rows[0][0].begin : 0;
  const std::int64_t step = affine && p.rows.size() > 1 ? p.rows[1][0].begin - p.rows[0][0].begin : 0;
  for (std::size_t r = 0; affine && r < p.rows.size(); ++r)
    affine = p.rows[r][0].end - p.rows[r][0].begin == length &&
             p.rows[r][0].begin == p.rows[0][0].begin + static_cast<std::int64_t>(r) * step;
  if (affine) {
    const std::string first = step == 0 ? std::to_string(p.rows[0][0].begin)
                              : p.rows[0][0].begin == 0 ? fmt::format("{} r", step)
                                                         : fmt::format("{} + {} r", p.rows[0][0].begin, step);
    return length == 1 ? fmt::format("row-sparse: row r stores column {} only", first)
                       : fmt::format("row-sparse: row r stores columns {} to {} + {}", first, first, length - 1);
  }
  std::size_t runs = 0;
  for (const auto& row : p.rows) runs += row.size();
  return fmt::format("row-sparse: {} of {} entries, in {} runs of columns row after row (see the JSON report)",
                     p.nonzeros, p.cols * static_cast<std::int64_t>(p.rows.size()), runs);
}

/// The parameter groups as a constexpr table, and the spec's map of PyTorch's tensors onto them
/// (ir::Network::tensors): what loopgrad/runtime/kernel_io.hpp reads and writes files with.
void emit_tensor_tables(CodeWriter& w, const ir::Network& net, const KernelPlan& plan) {
  auto is_matrix = [&](const ir::Param& p) {
    return p.connection >= 0 && net.connections[static_cast<std::size_t>(p.connection)].kind == ir::ConnectionKind::dense;
  };
  w.line("// The parameter groups of Params::flat (and Gradient::flat), in order: loopgrad's name, the first");
  w.line("// value, the shape (a dense weight is rows x cols = to x from; every other group is a vector, cols");
  w.line("// 1), and whether files hold it as a 2-D tensor. loopgrad/runtime/kernel_io.hpp reads and writes");
  w.line("// safetensors files with these tables and nothing else.");
  w.open("struct ParameterGroup");
  w.line("const char* name;");
  w.line("std::size_t offset, rows, cols;");
  w.line("bool matrix;");
  w.close("};");
  w.open("inline constexpr std::array<ParameterGroup, {}> parameter_groups", net.params.size());
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const auto& param = net.params[p];
    w.line("ParameterGroup{{\"{}\", {}, {}, {}, {}}},", param.name, plan.param_offset[p], param.rows, param.cols,
           is_matrix(param) ? "true" : "false");
  }
  w.close("};");
  w.line("// PyTorch's tensors as the spec mapped them (LOOPGRAD_GENERATOR's second argument; none if it gave");
  w.line("// none): each stacks the parameter groups torch_tensor_groups[first, first + count) row-wise. A");
  w.line("// summed tensor is one of several that PyTorch adds into one group (the RNN's bias_ih and bias_hh).");
  w.open("struct TorchTensor");
  w.line("const char* name;");
  w.line("std::size_t first, count;");
  w.line("bool summed;");
  w.close("};");
  std::vector<std::size_t> parts;
  w.open("inline constexpr std::array<TorchTensor, {}> torch_tensors", net.tensors.size());
  for (const auto& m : net.tensors) {
    const auto shape = ir::tensor_shape(net, m);
    std::string dims;
    for (auto d : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
    w.line("TorchTensor{{\"{}\", {}, {}, {}}},  // [{}]", m.tensor, parts.size(), m.params.size(), m.summed ? "true" : "false", dims);
    for (const auto& name : m.params) parts.push_back(static_cast<std::size_t>(net.find_param(name)));
  }
  w.close("};");
  w.line("inline constexpr std::array<std::size_t, {}> torch_tensor_groups{{{{{}}}}};", parts.size(), fmt::join(parts, ", "));
  w.blank();
}

}  // namespace

void emit_layout(const KernelPlan& plan, const EmittedMacs& emitted, std::string& out) {
  const auto& net = plan.net;
  CodeWriter w(0);
  w.line("using Scalar = {};", plan.scalar);
  w.blank();
  w.line("// Columns of the register tiles of the dense products: two vector registers per row of a tile.");
  w.raw_line("#if defined(__AVX512F__)");
  w.line("inline constexpr std::size_t tile_columns = 128 / sizeof(Scalar);");
  w.raw_line("#elif defined(__AVX__)");
  w.line("inline constexpr std::size_t tile_columns = 64 / sizeof(Scalar);");
  w.raw_line("#else");
  w.line("inline constexpr std::size_t tile_columns = 32 / sizeof(Scalar);");
  w.raw_line("#endif");
  w.line("// Register tiles of the sensitivity update's dense products (Kernel::product_tile): rows x");
  w.line("// columns of accumulators: 8 rows of three vector registers with AVX-512 (24 of its 32), 6 rows");
  w.line("// of two with AVX2 and FMA under g++ or clang (12 of its 16), 4 rows of three with AVX.");
  w.raw_line("#if defined(__AVX512F__)");
  w.line("inline constexpr std::size_t product_rows = 8, product_columns = 192 / sizeof(Scalar);");
  w.raw_line("#elif defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)");
  w.line("inline constexpr std::size_t product_rows = 6, product_columns = 64 / sizeof(Scalar);");
  w.raw_line("#elif defined(__AVX__)");
  w.line("inline constexpr std::size_t product_rows = 4, product_columns = 96 / sizeof(Scalar);");
  w.raw_line("#else");
  w.line("inline constexpr std::size_t product_rows = 4, product_columns = 32 / sizeof(Scalar);");
  w.raw_line("#endif");
  w.line("// With AVX2 the register tiles (product_tile, multiply_tile, column_span) hold their accumulators");
  w.line("// in the compiler's vector type, loaded and stored with std::memcpy: g++ 12 keeps a plain array");
  w.line("// of 12 such accumulators on the stack there, at under half the speed. With AVX-512 the");
  w.line("// sensitivity update's tiles (product_tile, product_part<k>, panel_gradient) do too: as a plain");
  w.line("// array its 24 accumulators pass through the stack before and after every tile.");
  w.raw_line("#if defined(__AVX512F__) && defined(__GNUC__)");
  w.line("typedef Scalar Vector __attribute__((vector_size(64)));");
  w.line("inline constexpr std::size_t vector_lanes = sizeof(Vector) / sizeof(Scalar);");
  w.raw_line("#elif defined(__AVX2__) && defined(__FMA__) && defined(__GNUC__)");
  w.line("typedef Scalar Vector __attribute__((vector_size(32)));");
  w.line("inline constexpr std::size_t vector_lanes = sizeof(Vector) / sizeof(Scalar);");
  w.raw_line("#endif");
  w.blank();
  w.line("inline constexpr const char* network_name = \"{}\";", net.name);
  w.line("inline constexpr std::size_t n_params = {};      // trainable values", plan.param_count);
  w.line("inline constexpr std::size_t n_inputs = {};      // input values per step", plan.input_size);
  w.line("inline constexpr std::size_t n_targets = {};     // target values per step", plan.target_size);
  w.line("inline constexpr std::size_t n_state = {};       // recurrent state values", plan.state_size);
  w.line("inline constexpr std::size_t n_sensitivity = {}; // stored values of Delta = dR/dP", plan.sensitivity_size);
  w.line("inline constexpr std::size_t n_sensitivity_blocks = {}; // the stored blocks written out whole",
         plan.sensitivity_block_size);
  w.line("inline constexpr std::size_t n_step_values = {}; // values one step keeps", plan.values_size);
  w.line("inline constexpr std::size_t n_tangent = {};     // workspace of the sensitivity update", plan.tangent_size);
  w.line("// Multiplications per step of the sensitivity update: as the analysis counts them, and as this");
  w.line("// header performs them (the emitter counts every loop it writes; the two agree).");
  w.line("inline constexpr long long macs_per_step = {};", plan.a.macs_per_step);
  w.line("inline constexpr long long emitted_macs_per_step = {};", emitted.update);
  w.line("// The same for the reverse passes (the analysis's figures are in the report's exact_cost): one");
  w.line("// step of `reverse`, and one step of `reverse_columns` with `dense_gradients` per column, plus");
  w.line("// its coefficients once per call.");
  w.line("inline constexpr long long emitted_reverse_macs_per_step = {};", emitted.reverse);
  w.line("inline constexpr long long emitted_column_macs_per_column = {};", emitted.column);
  w.line("inline constexpr long long emitted_column_macs_per_call = {};", emitted.column_call);
  w.blank();

  std::vector<View> params;
  const auto users = ir::param_users(net);
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const auto& param = net.params[p];
    std::string role;
    if (param.connection >= 0) {
      const auto& c = net.connections[static_cast<std::size_t>(param.connection)];
      role = fmt::format("{} connection {}{} -> {} ({})", ir::to_string(c.kind), c.delayed ? "delay " : "",
                         plan.group(c.from).name, plan.group(c.to).name,
                         analysis::to_string(plan.a.connection_class[static_cast<std::size_t>(param.connection)]));
      if (c.kind == ir::ConnectionKind::sparse) {
        role += ", links (to, from):";
        for (const auto& m : c.mask) role += fmt::format(" ({}, {})", m.to, m.from);
      }
    } else {
      role = "bias of " + plan.group(param.group).name;
    }
    // Shared weights: every connection of the name uses this one parameter group; a shared bias
    // is used by several groups.
    std::vector<std::string> sharing;
    for (const auto& c : net.connections)
      if (c.param == static_cast<int>(p)) sharing.push_back(c.name);
    if (sharing.size() > 1) role += fmt::format(", shared by the connections {}", fmt::join(sharing, ", "));
    if (param.connection < 0 && users[p].size() > 1) {
      std::vector<std::string> groups;
      for (int g : users[p]) groups.push_back(plan.group(g).name);
      role += fmt::format(", shared by the groups {}", fmt::join(groups, ", "));
    }
    params.push_back({param.name, plan.param_offset[p], static_cast<std::size_t>(param.size()),
                      fmt::format("{}: {} x {}, {}{}", param.name, param.rows, param.cols, role,
                                  plan.a.param_reaches_loss[p] ? "" : "; reaches no loss")});
  }
  w.line("// Parameters: every group row-major, one after another. Dense weights are (to x from), so a");
  w.line("// connection computes y[r] = sum_s W[r * from + s] x[s]; diagonal weights and biases are vectors,");
  w.line("// sparse weights hold one value per link in the order listed. Gradient has the same layout.");
  w.line("template <class Tag>");
  w.open("struct ParameterArray");
  w.line("std::vector<Scalar> flat = std::vector<Scalar>(n_params);");
  emit_views(w, params);
  w.close("};");
  w.line("using Params = ParameterArray<struct ParamsTag>;");
  w.line("using Gradient = ParameterArray<struct GradientTag>;");
  w.blank();
  emit_tensor_tables(w, net, plan);

  auto group_views = [&](auto keep, auto offset, const char* what) {
    std::vector<View> views;
    for (std::size_t g = 0; g < net.groups.size(); ++g)
      if (keep(g))
        views.push_back({net.groups[g].name, offset(g), static_cast<std::size_t>(net.groups[g].size),
                         fmt::format("{}: {} values{}", net.groups[g].name, net.groups[g].size, what)});
    return views;
  };
  w.line("// Inputs of one step, the input groups one after another.");
  w.open("struct Input");
  w.line("std::array<Scalar, n_inputs> flat{{}};");
  emit_views(w, group_views([&](std::size_t g) { return net.groups[g].kind == ir::GroupKind::input; },
                            [&](std::size_t g) { return plan.input_offset[g]; }, ""));
  w.close("};");
  w.blank();
  w.line("// Targets of one step, the output groups one after another.");
  w.open("struct Target");
  w.line("std::array<Scalar, n_targets> flat{{}};");
  emit_views(w, group_views([&](std::size_t g) { return net.groups[g].is_output(); },
                            [&](std::size_t g) { return plan.target_offset[g]; }, ""));
  w.close("};");
  w.blank();
  w.line("// The recurrent state R: every group read through delay(), one after another; zero at the start.");
  w.open("struct State");
  w.line("std::array<Scalar, n_state> flat{{}};");
  emit_views(w, group_views([&](std::size_t g) { return plan.a.state_index[g] >= 0; },
                            [&](std::size_t g) { return plan.state_offset[static_cast<std::size_t>(plan.a.state_index[g])]; },
                            ", a recurrent state"));
  w.close("};");
  w.blank();
  std::vector<View> blocks;
  for (std::size_t k = 0; k < plan.a.states.size(); ++k) {
    const auto& g = plan.group(plan.a.states[k]);
    for (int p : plan.a.state_params[k]) {
      const auto& param = plan.param(p);
      blocks.push_back({"d_" + g.name + "_d_" + param.name, plan.sensitivity_block(static_cast<int>(k), p),
                        static_cast<std::size_t>(plan.pattern(plan.a.states[k], p).nonzeros),
                        fmt::format("d {} / d {}: {} x {}, {}", g.name, param.name, g.size, param.size(),
                                    describe_pattern(plan.pattern(plan.a.states[k], p)))});
    }
  }
  w.line("// The sensitivity Delta = dR/dP: only the blocks that are structurally nonzero, state by state,");
  w.line("// and of each only the entries that can be nonzero (its neuron-level pattern), row after row.");
  {
    std::string pruned;
    for (const auto& b : plan.a.sensitivity_blocks)
      if (!b.nonzero)
        pruned += fmt::format("{}d {}/d {}", pruned.empty() ? "" : ", ", plan.group(b.state).name, plan.param(b.param).name);
    if (!pruned.empty()) w.line("// Not stored (structurally zero or unused): {}.", pruned);
  }
  w.open("struct Sensitivity");
  w.line("std::vector<Scalar> flat = std::vector<Scalar>(n_sensitivity);");
  emit_views(w, blocks);
  w.close("};");
  w.blank();
  out += w.str();
}

}  // namespace loopgrad::emit::detail
