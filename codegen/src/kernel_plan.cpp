#include "kernel_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string_view>
#include <stdexcept>

namespace loopgrad::emit::detail {

namespace {

// C++20's keywords and alternative tokens: none may name a group, a parameter or the namespace.
constexpr std::string_view cpp_keywords[] = {
    "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool", "break", "case", "catch", "char",
    "char8_t", "char16_t", "char32_t", "class", "compl", "concept", "const", "consteval", "constexpr", "constinit",
    "const_cast", "continue", "co_await", "co_return", "co_yield", "decltype", "default", "delete", "do", "double",
    "dynamic_cast", "else", "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto", "if",
    "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq", "nullptr", "operator", "or",
    "or_eq", "private", "protected", "public", "register", "reinterpret_cast", "requires", "return", "short", "signed",
    "sizeof", "static", "static_assert", "static_cast", "struct", "switch", "template", "this", "thread_local", "throw",
    "true", "try", "typedef", "typeid", "typename", "union", "unsigned", "using", "virtual", "void", "volatile",
    "wchar_t", "while", "xor", "xor_eq"};

// Names the generated header declares at namespace scope or inside the structs whose accessors are
// named after groups and parameters: an accessor of the same name would hide them.
constexpr std::string_view header_names[] = {
    "std", "flat", "Scalar", "tile_columns", "product_rows", "product_columns", "Vector", "vector_lanes", "network_name", "n_params",
    "n_inputs", "n_targets", "n_state", "n_sensitivity", "n_sensitivity_blocks", "n_step_values", "n_tangent",
    "macs_per_step", "emitted_macs_per_step",
    "emitted_reverse_macs_per_step", "emitted_column_macs_per_column", "emitted_column_macs_per_call",
    "ParameterArray", "Params", "Gradient", "Input", "Target", "State", "Sensitivity", "Kernel", "Step",
    "SensitivityRun", "forward_step", "rtrl_step", "step_detail", "Stream", "batch_detail", "rtrl_step_batch", "BatchPool",
    "check_blas_kernels", "values", "tangent", "next_sensitivity", "ParameterGroup", "parameter_groups", "TorchTensor",
    "torch_tensors", "torch_tensor_groups"};

void check_identifier(const ir::Network& net, std::string_view what, const std::string& name) {
  bool ok = !name.empty() && name.find("__") == std::string::npos && !(name[0] == '_' && name.size() > 1 && name[1] >= 'A' && name[1] <= 'Z');
  for (std::size_t i = 0; ok && i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    ok = letter || (i > 0 && c >= '0' && c <= '9');
  }
  if (!ok)
    throw std::invalid_argument(fmt::format(
        "network '{}': {} name '{}' cannot name a C++ variable in the generated kernel; use letters, digits and "
        "single underscores, not starting with a digit or with an underscore and a capital",
        net.name, what, name));
  if (std::find(std::begin(cpp_keywords), std::end(cpp_keywords), name) != std::end(cpp_keywords))
    throw std::invalid_argument(fmt::format("network '{}': {} name '{}' is a C++ keyword and cannot name it in the "
                                            "generated kernel; rename the {}",
                                            net.name, what, name, what));
  if (std::find(std::begin(header_names), std::end(header_names), name) != std::end(header_names))
    throw std::invalid_argument(fmt::format("network '{}': {} name '{}' is a name the generated kernel declares itself; "
                                            "rename the {}",
                                            net.name, what, name, what));
}

bool is_alias(ir::OpCode code) {
  return code == ir::OpCode::read || code == ir::OpCode::read_delayed || code == ir::OpCode::bias ||
         code == ir::OpCode::constant;
}

}  // namespace

KernelPlan::KernelPlan(const ir::Network& network, const analysis::Analysis& analysis, const KernelOptions& opts)
    : net(network), a(analysis), options(opts), scalar(to_string(opts.scalar)), leaves(analysis.leaves) {
  if (options.namespace_name.empty()) options.namespace_name = net.name;
  check_identifier(net, "namespace", options.namespace_name);
  for (const auto& g : net.groups) check_identifier(net, "group", g.name);
  for (const auto& p : net.params) check_identifier(net, "parameter", p.name);
  // The Sensitivity struct names each stored block d_<state>_d_<parameter>: two must not meet.
  std::map<std::string, std::string> views;
  for (std::size_t k = 0; k < a.states.size(); ++k)
    for (int p : a.state_params[k]) {
      const auto& state = net.groups[static_cast<std::size_t>(a.states[k])].name;
      const auto& param = net.params[static_cast<std::size_t>(p)].name;
      const auto [it, fresh] = views.emplace("d_" + state + "_d_" + param, fmt::format("d {} / d {}", state, param));
      if (!fresh)
        throw std::invalid_argument(fmt::format(
            "network '{}': the sensitivity blocks {} and d {} / d {} would both be named '{}' in the generated kernel; "
            "rename a group or a parameter (a name with '_d_' in it makes this possible)",
            net.name, it->second, state, param, it->first));
    }

  for (const auto& p : net.params) {
    param_offset.push_back(param_count);
    param_count += static_cast<std::size_t>(p.size());
  }
  input_offset.assign(net.groups.size(), 0);
  target_offset.assign(net.groups.size(), 0);
  adjoint_offset.assign(net.groups.size(), 0);
  for (std::size_t g = 0; g < net.groups.size(); ++g) {
    const auto& group = net.groups[g];
    const auto n = static_cast<std::size_t>(group.size);
    if (group.kind == ir::GroupKind::input) {
      input_offset[g] = input_size;
      input_size += n;
      continue;
    }
    adjoint_offset[g] = adjoint_size;
    adjoint_size += n;
    if (group.is_output()) {
      target_offset[g] = target_size;
      target_size += n;
      outputs.push_back(static_cast<int>(g));
    }
  }
  for (std::size_t k = 0; k < a.states.size(); ++k) {
    state_offset.push_back(state_size);
    const auto n = static_cast<std::size_t>(net.groups[static_cast<std::size_t>(a.states[k])].size);
    state_size += n;
    sensitivity_offset.emplace_back();
    for (int p : a.state_params[k]) {
      sensitivity_offset.back().push_back(sensitivity_size);
      sensitivity_size += static_cast<std::size_t>(a.pattern(a.states[k], p).nonzeros);
      sensitivity_block_size += n * static_cast<std::size_t>(net.params[static_cast<std::size_t>(p)].size());
    }
  }
  value_offset.assign(net.ops.size(), -1);
  for (std::size_t i = 0; i < net.ops.size(); ++i) {
    const auto& o = net.ops[i];
    const bool root = net.groups[static_cast<std::size_t>(o.owner)].value_op() == static_cast<int>(i);
    if (root || !is_alias(o.code)) {
      value_offset[i] = static_cast<long>(values_size);
      values_size += static_cast<std::size_t>(o.size);
    }
  }
  input_copy_offset = values_size;
  state_copy_offset = values_size + input_size;
  values_size += input_size + state_size;
  // Tangent workspace: the largest block's tangents of groups that are not stored states.
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    std::size_t need = 0;
    for (int g : tangent_groups(static_cast<int>(p))) {
      const int k = state_of(g);
      if (k >= 0 && sensitivity_block(k, static_cast<int>(p)) != static_cast<std::size_t>(-1)) continue;
      need += static_cast<std::size_t>(pattern(g, static_cast<int>(p)).nonzeros);
    }
    tangent_size = std::max(tangent_size, need);
  }
  // Scaled weights: as large as the largest weighted connection.
  scaled_weights_offset = tangent_size;
  std::size_t largest_weights = 0;
  for (const auto& c : net.connections)
    if (c.param >= 0)
      largest_weights = std::max(largest_weights, static_cast<std::size_t>(net.params[static_cast<std::size_t>(c.param)].size()));
  tangent_size += largest_weights;
  pack_offset = tangent_size;
  std::size_t largest_pack = 0;
  for (const auto& c : net.connections)
    if (c.kind == ir::ConnectionKind::dense) {
      const auto m = static_cast<std::size_t>(group(c.from).size);
      const auto n = static_cast<std::size_t>(net.params[static_cast<std::size_t>(c.param)].size()) / m;
      largest_pack = std::max(largest_pack, packed_weights(n, m) + m * column_tile(m));
    }
  for (std::size_t p = 0; p < net.params.size(); ++p) largest_pack = std::max(largest_pack, panel_pack(static_cast<int>(p)));
  tangent_size += largest_pack;
  row_start.reserve(a.patterns.size());
  for (const auto& pat : a.patterns) {
    std::vector<std::size_t> starts{0};
    for (const auto& row : pat.rows) {
      std::size_t n = starts.back();
      for (const auto& run : row) n += static_cast<std::size_t>(run.end - run.begin);
      starts.push_back(n);
    }
    row_start.push_back(std::move(starts));
  }
  coefficient_offset.assign(net.ops.size(), -1);
  for (std::size_t p = 0; p < net.params.size(); ++p)
    for (int g : tangent_groups(static_cast<int>(p)))
      for (const auto& leaf : leaves[static_cast<std::size_t>(g)])
        if (!leaf.constant_coefficient && coefficient_offset[static_cast<std::size_t>(leaf.op)] < 0 &&
            contributes(leaf, static_cast<int>(p))) {
          coefficient_offset[static_cast<std::size_t>(leaf.op)] = static_cast<long>(tangent_size);
          tangent_size += static_cast<std::size_t>(op(leaf.op).size);
        }
}

std::size_t KernelPlan::column_tile(std::size_t m) const {
  const std::size_t bytes = options.scalar == ScalarType::float32 ? 4 : 8;
  return std::clamp<std::size_t>(std::size_t{786432} / (m * bytes) / 96 * 96, 96, 960);
}

bool KernelPlan::source_in_place(std::size_t m, std::size_t cols) const {
  constexpr std::size_t line = 64, sets = 64, ways = 8, lines_per_row = 4;
  if (m * lines_per_row > sets * ways / 2) return false;
  const std::size_t bytes = options.scalar == ScalarType::float32 ? 4 : 8;
  std::vector<std::size_t> held(sets, 0);
  for (std::size_t s = 0; s < m; ++s)
    for (std::size_t l = 0; l < lines_per_row; ++l)
      if (++held[(s * cols * bytes / line + l) % sets] > ways) return false;
  return true;
}

namespace {

// The leaves of group g that add to block p when the block is formed in column panels, or
// nullopt when it cannot be (KernelPlan::panel_columns): their dense products' sources, as
// (read op code, group), and whether one of them writes all of the block.
struct PanelLeaves {
  std::vector<std::pair<int, int>> product_sources;
  std::vector<std::pair<std::size_t, std::size_t>> product_shapes;  // (n, m)
  bool covered = false;
};

bool panel_leaves(const KernelPlan& plan, int g, int p, PanelLeaves& out) {
  const auto cols = static_cast<long long>(plan.param(p).size());
  for (const auto& leaf : plan.leaves[static_cast<std::size_t>(g)]) {
    if (!plan.contributes(leaf, p)) continue;
    const auto& o = plan.op(leaf.op);
    const bool carries = plan.carried(leaf.op, p) > 0;
    if (o.code == ir::OpCode::bias) continue;  // its immediate block alone
    if (plan.same_pattern_leaf(g, leaf, p)) {  // a pass over a block of T's pattern
      out.covered = true;
      continue;
    }
    if (o.code != ir::OpCode::connect) return false;
    const auto& c = plan.net.connections[static_cast<std::size_t>(o.connection)];
    if (!carries) {
      if (c.kind != ir::ConnectionKind::dense && c.kind != ir::ConnectionKind::diagonal) return false;
      continue;  // an immediate block alone
    }
    const auto& from = plan.op(o.a);
    if (c.kind != ir::ConnectionKind::dense || !plan.pattern(from.group, p).full()) return false;
    const auto n = static_cast<long long>(o.size), m = static_cast<long long>(from.size);
    if (!KernelPlan::tiled_product(static_cast<std::size_t>(n), static_cast<std::size_t>(cols)) ||
        (plan.options.blas_min_flops > 0 && 2 * n * m * cols >= plan.options.blas_min_flops))
      return false;
    out.product_sources.emplace_back(static_cast<int>(from.code), from.group);
    out.product_shapes.emplace_back(static_cast<std::size_t>(n), static_cast<std::size_t>(m));
    out.covered = true;
  }
  return true;
}

}  // namespace

std::size_t KernelPlan::panel_columns(int p) const {
  const auto groups = tangent_groups(p);
  const auto cols = static_cast<std::size_t>(param(p).size());
  // One group alone (Elman's h) has nothing to keep in cache between passes.
  if (groups.size() < 2 || cols < 4 * 96) return 0;
  std::size_t rows = 0;  // rows of the blocks one panel touches
  std::set<std::pair<int, int>> sources;
  for (int g : groups) {
    if (!pattern(g, p).full()) return 0;
    PanelLeaves leaves_of_g;
    if (!panel_leaves(*this, g, p, leaves_of_g) || !leaves_of_g.covered) return 0;
    rows += static_cast<std::size_t>(group(g).size);
    sources.insert(leaves_of_g.product_sources.begin(), leaves_of_g.product_sources.end());
  }
  if (sources.empty()) return 0;  // no product: the whole-block passes stream as well
  for (const auto& source : sources) rows += 2 * static_cast<std::size_t>(group(source.second).size);  // the block and its packing
  const std::size_t bytes = options.scalar == ScalarType::float32 ? 4 : 8;
  return std::clamp<std::size_t>(options.panel_bytes / (rows * bytes) / 96 * 96, 96, 960);
}

std::size_t KernelPlan::panel_pack(int p) const {
  const auto width = panel_columns(p);
  if (width == 0) return 0;
  std::size_t need = 0;
  std::set<std::pair<int, int>> sources;
  for (int g : tangent_groups(p)) {
    PanelLeaves leaves_of_g;
    panel_leaves(*this, g, p, leaves_of_g);
    for (const auto& [n, m] : leaves_of_g.product_shapes) need += packed_weights(n, m);
    for (const auto& source : leaves_of_g.product_sources)
      if (sources.insert(source).second) need += static_cast<std::size_t>(group(source.second).size) * width;
  }
  return need;
}

bool KernelPlan::same_pattern_leaf(int g, const Leaf& leaf, int p) const {
  const auto& o = op(leaf.op);
  if (carried(leaf.op, p) == 0) return false;
  const auto& rows = pattern(g, p).rows;
  if (o.code == ir::OpCode::read || o.code == ir::OpCode::read_delayed) return pattern(o.group, p).rows == rows;
  if (o.code != ir::OpCode::connect) return false;
  const auto& c = net.connections[static_cast<std::size_t>(o.connection)];
  if (pattern(op(o.a).group, p).rows != rows) return false;
  if (c.kind == ir::ConnectionKind::identity) return true;
  return c.kind == ir::ConnectionKind::diagonal && leaf.constant_coefficient && c.param != p;
}

bool KernelPlan::contributes(const Leaf& leaf, int p) const {
  const auto& o = op(leaf.op);
  switch (o.code) {
    case ir::OpCode::connect:
      return carried(leaf.op, p) > 0 || net.connections[static_cast<std::size_t>(o.connection)].param == p;
    case ir::OpCode::bias: return o.param == p;
    case ir::OpCode::read:
    case ir::OpCode::read_delayed: return carried(leaf.op, p) > 0;
    default: return false;
  }
}

std::size_t KernelPlan::sensitivity_block(int k, int p) const {
  const auto& ps = a.state_params[static_cast<std::size_t>(k)];
  auto it = std::find(ps.begin(), ps.end(), p);
  if (it == ps.end()) return static_cast<std::size_t>(-1);
  return sensitivity_offset[static_cast<std::size_t>(k)][static_cast<std::size_t>(it - ps.begin())];
}

std::size_t KernelPlan::position(int g, int p, std::size_t r, std::int64_t col) const {
  const auto index = static_cast<std::size_t>(a.pattern_index[static_cast<std::size_t>(g)][static_cast<std::size_t>(p)]);
  std::size_t at = row_start[index][r];
  for (const auto& run : a.patterns[index].rows[r]) {
    if (col < run.end) {
      if (col < run.begin) break;
      return at + static_cast<std::size_t>(col - run.begin);
    }
    at += static_cast<std::size_t>(run.end - run.begin);
  }
  throw std::logic_error(fmt::format("loopgrad internal error: column {} of row {} is not in the pattern of d {} / d {}", col,
                                     r, group(g).name, param(p).name));
}

bool KernelPlan::has_tangent(int op, int p) const {
  const auto& ps = a.op_tangent[static_cast<std::size_t>(op)];
  return std::binary_search(ps.begin(), ps.end(), p);
}

std::vector<int> KernelPlan::tangent_groups(int p) const {
  std::vector<int> out;
  for (int g : a.group_order)
    if (has_tangent(group(g).value_op(), p) && pattern(g, p).nonzeros > 0) out.push_back(g);
  return out;
}

std::string Scope::declare(const std::string& name, const std::string& declaration) {
  if (declared_.insert(name).second) declarations_.push_back(declaration);
  return name;
}

std::string Scope::param(int p) {
  const auto& param = plan_.param(p);
  return declare("p_" + param.name,
                 fmt::format("const Scalar* const p_{} = params + {};  // {} x {}", param.name,
                             plan_.param_offset[static_cast<std::size_t>(p)], param.rows, param.cols));
}
std::string Scope::gradient(int p) {
  const auto& param = plan_.param(p);
  return declare("g_" + param.name, fmt::format("Scalar* const g_{} = grad + {};", param.name,
                                                plan_.param_offset[static_cast<std::size_t>(p)]));
}
std::string Scope::input(int g) {
  const auto offset = plan_.input_offset[static_cast<std::size_t>(g)];
  if (values_ == Access::write)
    return declare("in_" + plan_.group(g).name,
                   fmt::format("const Scalar* const in_{} = input + {};", plan_.group(g).name, offset));
  return declare("in_" + plan_.group(g).name,
                 fmt::format("const Scalar* const in_{} = step.values.data() + {};  // input {} of the step",
                             plan_.group(g).name, plan_.input_copy_offset + offset, plan_.group(g).name));
}
std::string Scope::target(int g) {
  // No arithmetic on a null target (no target this step): that is undefined behaviour.
  const auto offset = plan_.target_offset[static_cast<std::size_t>(g)];
  if (offset == 0)
    return declare("t_" + plan_.group(g).name, fmt::format("const Scalar* const t_{} = target;", plan_.group(g).name));
  return declare("t_" + plan_.group(g).name,
                 fmt::format("const Scalar* const t_{} = target == nullptr ? nullptr : target + {};", plan_.group(g).name,
                             offset));
}
std::string Scope::prev_state(int g) {
  const auto offset = plan_.state_offset[static_cast<std::size_t>(plan_.state_of(g))];
  if (values_ == Access::write)
    return declare("r_" + plan_.group(g).name, fmt::format("const Scalar* const r_{} = state + {};  // {} at the previous step",
                                                           plan_.group(g).name, offset, plan_.group(g).name));
  return declare("r_" + plan_.group(g).name,
                 fmt::format("const Scalar* const r_{} = step.values.data() + {};  // {} at the previous step",
                             plan_.group(g).name, plan_.state_copy_offset + offset, plan_.group(g).name));
}
std::string Scope::value(int op) {
  const auto& o = plan_.op(op);
  const auto& owner = plan_.group(o.owner);
  const bool root = owner.value_op() == op;
  const std::string name = root ? "v_" + owner.name : fmt::format("tmp{}", op);
  const char* qualifier = values_ == Access::write ? "" : "const ";
  return declare(name, fmt::format("{}Scalar* const {} = step.values.data() + {};  // {}", qualifier, name,
                                   plan_.value_offset[static_cast<std::size_t>(op)],
                                   root ? "group " + owner.name : describe(plan_, op)));
}
std::string Scope::adjoint(int g) {
  const auto offset = plan_.adjoint_offset[static_cast<std::size_t>(g)];
  if (columns_)
    return declare("a_" + plan_.group(g).name,
                   fmt::format("Scalar* const a_{} = adjoint + {} * count;", plan_.group(g).name, offset));
  return declare("a_" + plan_.group(g).name, fmt::format("Scalar* const a_{} = adjoint.data() + {};", plan_.group(g).name, offset));
}
std::string Scope::prev_adjoint(int g) {
  const auto offset = plan_.state_offset[static_cast<std::size_t>(plan_.state_of(g))];
  if (columns_)
    return declare("ra_" + plan_.group(g).name,
                   fmt::format("Scalar* const ra_{} = prev_state_adjoint + {} * count;", plan_.group(g).name, offset));
  return declare("ra_" + plan_.group(g).name,
                 fmt::format("Scalar* const ra_{} = prev_state_adjoint + {};", plan_.group(g).name, offset));
}
std::string Scope::delta_prev(int k, int p) {
  const auto& g = plan_.group(plan_.a.states[static_cast<std::size_t>(k)]);
  const std::string name = "dp_" + g.name + "_" + plan_.param(p).name;
  return declare(name, fmt::format("const Scalar* const {} = delta_prev + {};  // d {} / d {} at the previous step",
                                   name, plan_.sensitivity_block(k, p), g.name, plan_.param(p).name));
}
std::string Scope::delta_next(int k, int p) {
  const auto& g = plan_.group(plan_.a.states[static_cast<std::size_t>(k)]);
  const std::string name = "dn_" + g.name + "_" + plan_.param(p).name;
  return declare(name, fmt::format("Scalar* const {} = delta_next + {};  // d {} / d {}", name,
                                   plan_.sensitivity_block(k, p), g.name, plan_.param(p).name));
}

std::string Scope::ref(int op, std::string_view row) {
  const auto& o = plan_.op(op);
  switch (o.code) {
    case ir::OpCode::read: {
      const auto& src = plan_.group(o.group);
      if (src.kind == ir::GroupKind::input) return fmt::format("{}[{}]", input(o.group), row);
      return ref(src.value_op(), row);
    }
    case ir::OpCode::read_delayed: return fmt::format("{}[{}]", prev_state(o.group), row);
    case ir::OpCode::bias: return fmt::format("{}[{}]", param(o.param), row);
    case ir::OpCode::constant: return literal(o.constant);
    default: return fmt::format("{}[{}]", value(op), row);
  }
}

std::string Scope::activation_source(std::string_view source, int op, std::string_view row) {
  // Only the replacement fields the rule uses are looked up, so only what is used gets declared.
  const auto& o = plan_.op(op);
  const bool uses_y = source.find("{y}") != std::string_view::npos;
  const bool uses_z = source.find("{z}") != std::string_view::npos;
  return fmt::format(fmt::runtime(source), fmt::arg("y", uses_y ? ref(op, row) : ""),
                     fmt::arg("z", uses_z ? ref(o.a, row) : ""));
}

std::string Scope::coefficient(const Leaf& leaf, std::string_view row) {
  std::vector<std::string> factors;
  int child = leaf.op;
  for (int parent : leaf.path) {
    const auto& o = plan_.op(parent);
    if (o.code == ir::OpCode::mul) {
      factors.push_back(ref(o.a == child ? o.b : o.a, row));
    } else if (o.code == ir::OpCode::div) {
      // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2 = -y/b with y = a/b, the op's value.
      factors.push_back(o.a == child ? fmt::format("(Scalar(1) / {})", ref(o.b, row))
                                     : fmt::format("(-{} / {})", ref(parent, row), ref(o.b, row)));
    } else if (o.code == ir::OpCode::activate) {
      const auto rule = ir::rule(o.activation);
      if (!rule.derivative_source.empty()) factors.push_back(activation_source(rule.derivative_source, parent, row));
    }
    child = parent;
  }
  std::string out;
  for (const auto& f : factors) out += (out.empty() ? "" : " * ") + f;
  return out;
}

void emit_function(CodeWriter& out, const std::string& signature, const Scope& scope, const CodeWriter& body,
                   const std::vector<std::string>& preamble) {
  out.open("{}", signature);
  for (const auto& line : preamble) out.raw_line(line);
  for (const auto& d : scope.declarations()) out.raw_line(d);
  out.append(body);
  out.close();
}

std::string source_adjoint(const KernelPlan& plan, Scope& s, int read_op) {
  const auto& op = plan.op(read_op);
  if (op.code == ir::OpCode::read_delayed) return s.prev_adjoint(op.group);
  if (plan.group(op.group).kind == ir::GroupKind::input) return "";
  return s.adjoint(op.group);
}

std::string literal(double value) { return fmt::format("Scalar({})", value); }

std::string LossWeight::apply(const std::string& term) const {
  return value == 1 ? term : fmt::format("{} * ({})", literal(value), term);
}

LossWeight loss_weight(const ir::Group& output) {
  return {output.loss_weight == 1 ? "" : fmt::format(", weight {}", output.loss_weight), output.loss_weight};
}

std::string elementwise_loss_term(const ir::Group& output, std::string_view source, const std::string& y,
                                  const std::string& t) {
  return loss_weight(output).apply(fmt::format(fmt::runtime(source), fmt::arg("y", y + "[i]"),
                                               fmt::arg("t", t + "[i]"), fmt::arg("n", output.size)));
}

std::string describe(const KernelPlan& plan, int op) {
  const auto& o = plan.op(op);
  auto arg = [&](int i) { return describe(plan, i); };
  switch (o.code) {
    case ir::OpCode::read: return plan.group(o.group).name;
    case ir::OpCode::read_delayed: return fmt::format("delay({})", plan.group(o.group).name);
    case ir::OpCode::connect: {
      const auto& c = plan.net.connections[static_cast<std::size_t>(o.connection)];
      if (c.kind == ir::ConnectionKind::identity) return fmt::format("{}({})", c.name, arg(o.a));
      return fmt::format("{} {} * {}", ir::to_string(c.kind), c.name, arg(o.a));
    }
    case ir::OpCode::bias: return plan.param(o.param).name;
    case ir::OpCode::constant: return fmt::format("{}", o.constant);
    case ir::OpCode::add: return fmt::format("({} + {})", arg(o.a), arg(o.b));
    case ir::OpCode::sub: return fmt::format("({} - {})", arg(o.a), arg(o.b));
    case ir::OpCode::mul: return fmt::format("{} * {}", arg(o.a), arg(o.b));
    case ir::OpCode::div: return fmt::format("{} / {}", arg(o.a), arg(o.b));
    case ir::OpCode::activate: return fmt::format("{}({})", ir::rule(o.activation).name, arg(o.a));
  }
  return "?";
}

}  // namespace loopgrad::emit::detail
