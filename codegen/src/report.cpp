#include "loopgrad/emit/report.hpp"

#include "loopgrad/emit/inspector.hpp"
#include "loopgrad/emit/write_file.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace loopgrad::emit {

namespace {

const std::string& group_name(const ir::Network& net, int g) { return net.groups[static_cast<std::size_t>(g)].name; }

std::string pruned_cross_terms(const ir::Network& net, const analysis::Analysis& a, const char* sep) {
  std::string out;
  for (const auto& t : a.cross_terms)
    if (!t.nonzero) out += fmt::format("{}D[{},{}]", out.empty() ? "" : sep, group_name(net, t.to), group_name(net, t.from));
  return out;
}

}  // namespace

std::string to_dot(const ir::Network& net, const analysis::Analysis& a, bool legend) {
  std::string out = fmt::format("// loopgrad graph of network '{}'\ndigraph \"{}\" {{\n", net.name, net.name);
  out += "  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n";
  auto node = [&](int g) {
    const auto& group = net.groups[static_cast<std::size_t>(g)];
    std::string shape = group.kind == ir::GroupKind::input ? ", shape=ellipse"
                        : group.is_output()                ? ", peripheries=2"
                                                           : "";
    std::string fill = a.state_index[static_cast<std::size_t>(g)] >= 0 ? ", style=\"rounded,filled\", fillcolor=\"#e8f0ff\"" : "";
    // The expression, so that activations and element-wise products show (cut where it gets long).
    std::string expression = ir::expression(net, g);
    if (expression.size() > 60) expression = expression.substr(0, 57) + "...";
    return fmt::format("  \"{}\" [label=\"{}\\n{}{}{}\"{}{}];\n", group.name, group.name, group.size,
                       expression.empty() ? "" : "\\n= " + expression,
                       group.is_output() ? fmt::format("\\nloss: {}", ir::to_string(group.loss)) : "", shape, fill);
  };
  std::vector<bool> drawn(net.groups.size(), false);
  for (const auto& loop : a.loops) {
    out += fmt::format("  subgraph \"cluster_loop_{}\" {{\n    label=\"loop {}\"; style=dashed; color=\"#4060c0\";\n",
                       loop.order, loop.order);
    for (int g : loop.states) {
      out += "  " + node(g);
      drawn[static_cast<std::size_t>(g)] = true;
    }
    out += "  }\n";
  }
  for (std::size_t g = 0; g < net.groups.size(); ++g)
    if (!drawn[g]) out += node(static_cast<int>(g));
  for (std::size_t i = 0; i < net.connections.size(); ++i) {
    const auto& c = net.connections[i];
    const auto cls = a.connection_class[i];
    const char* style = cls == analysis::EdgeClass::feed_back     ? "style=dashed, color=\"#2050d0\""
                        : cls == analysis::EdgeClass::terminating ? "style=dotted, color=\"#909090\""
                                                                  : "style=solid";
    out += fmt::format("  \"{}\" -> \"{}\" [label=\"{}\\n{}, {}\", {}];\n", group_name(net, c.from),
                       group_name(net, c.to), c.implicit ? "" : c.name, ir::to_string(c.kind),
                       analysis::to_string(cls), style);
  }
  if (legend)
    out += fmt::format(
      "  legend [shape=note, label=\"solid: feed-forward\\ndashed: feed-back\\ndotted: terminating\\n"
      "pruned cross terms: {}\\nMACs per step: {} pruned, {} dense\\n{}{}\"];\n",
      a.cross_terms.empty() || pruned_cross_terms(net, a, ", ").empty() ? "none" : pruned_cross_terms(net, a, ", "),
      a.macs_per_step, a.dense_macs_per_step, exact_choice(a),
      a.exact() ? "" : "\\n" + approximation_note(net, a, "\\n"));
  out += "}\n";
  return out;
}

nlohmann::json to_json(const ir::Network& net, const analysis::Analysis& a) {
  using nlohmann::json;
  json j;
  j["network"] = net.name;
  j["neurons"] = json::array();
  for (std::size_t g = 0; g < net.groups.size(); ++g) {
    const auto& group = net.groups[g];
    j["neurons"].push_back({{"name", group.name},
                            {"size", group.size},
                            {"state", a.state_index[g] >= 0},
                            {"input", group.kind == ir::GroupKind::input},
                            {"loss", group.is_output() ? json(ir::to_string(group.loss)) : json(nullptr)},
                            {"loss_weight", group.is_output() ? json(group.loss_weight) : json(nullptr)},
                            {"influences_loss", static_cast<bool>(a.influences_loss[g])}});
  }
  j["connections"] = json::array();
  for (std::size_t i = 0; i < net.connections.size(); ++i) {
    const auto& c = net.connections[i];
    j["connections"].push_back({{"name", c.name},
                                {"from", group_name(net, c.from)},
                                {"to", group_name(net, c.to)},
                                {"kind", ir::to_string(c.kind)},
                                {"class", analysis::to_string(a.connection_class[i])},
                                {"delayed", c.delayed},
                                {"implicit", c.implicit},
                                {"params", c.param >= 0 ? net.params[static_cast<std::size_t>(c.param)].size() : 0}});
  }
  j["parameters"] = json::array();
  const auto users = ir::param_users(net);
  for (std::size_t p = 0; p < net.params.size(); ++p) {
    const auto& param = net.params[p];
    json used_by = json::array();
    for (int g : users[p]) used_by.push_back(group_name(net, g));
    j["parameters"].push_back({{"name", param.name},
                               {"shape", {param.rows, param.cols}},
                               {"size", param.size()},
                               {"group", group_name(net, param.group)},
                               {"used_by", used_by},
                               {"reaches_loss", static_cast<bool>(a.param_reaches_loss[p])}});
  }
  // The spec's map of PyTorch's tensors (empty when it gave none).
  j["torch_tensors"] = json::array();
  for (const auto& m : net.tensors)
    j["torch_tensors"].push_back({{"name", m.tensor}, {"shape", ir::tensor_shape(net, m)}, {"parameters", m.params}, {"summed", m.summed}});
  j["evaluation_order"] = json::array();
  for (int g : a.group_order) j["evaluation_order"].push_back(group_name(net, g));
  j["loops"] = json::array();
  for (const auto& loop : a.loops) {
    json states = json::array();
    for (int g : loop.states) states.push_back(group_name(net, g));
    j["loops"].push_back({{"states", states}, {"order", loop.order}, {"self_recurrent", loop.self_recurrent}});
  }
  j["cross_terms"] = json::array();
  for (const auto& t : a.cross_terms)
    j["cross_terms"].push_back({{"to", group_name(net, t.to)}, {"from", group_name(net, t.from)}, {"nonzero", t.nonzero}});
  j["recurrency_abstraction_violations"] = json::array();
  for (const auto& [k, l] : a.recurrency_abstraction_violations)
    j["recurrency_abstraction_violations"].push_back({group_name(net, k), group_name(net, l)});
  j["sensitivity_blocks"] = json::array();
  for (const auto& b : a.sensitivity_blocks) {
    json block = {{"state", group_name(net, b.state)},
                  {"param", net.params[static_cast<std::size_t>(b.param)].name},
                  {"nonzero", b.nonzero},
                  {"neuron_nonzeros", b.nonzeros},
                  {"macs", a.block_macs[static_cast<std::size_t>(b.state)][static_cast<std::size_t>(b.param)]}};
    // A row-sparse block: its entries as [row, first column, end column) runs, as stored.
    if (b.nonzero && !a.pattern(b.state, b.param).full()) {
      json runs = json::array();
      const auto& rows = a.pattern(b.state, b.param).rows;
      for (std::size_t r = 0; r < rows.size(); ++r)
        for (const auto& run : rows[r]) runs.push_back({r, run.begin, run.end});
      block["runs"] = std::move(runs);
    }
    j["sensitivity_blocks"].push_back(std::move(block));
  }
  // The intermediate groups' tangent blocks (formed within a step) and the coefficients: with the
  // blocks' "macs" they add up to macs_per_step.
  j["workspace_blocks"] = json::array();
  for (int g : a.group_order)
    if (a.state_index[static_cast<std::size_t>(g)] < 0)
      for (std::size_t p = 0; p < net.params.size(); ++p)
        if (const auto macs = a.block_macs[static_cast<std::size_t>(g)][p]; macs > 0)
          j["workspace_blocks"].push_back({{"group", group_name(net, g)}, {"param", net.params[p].name}, {"macs", macs}});
  j["coefficient_macs"] = a.coefficient_macs;
  j["unreachable_params"] = json::array();
  for (int p : a.unreachable_params) j["unreachable_params"].push_back(net.params[static_cast<std::size_t>(p)].name);
  j["param_count"] = net.param_count();
  j["macs_per_step"] = a.macs_per_step;
  j["dense_macs_per_step"] = a.dense_macs_per_step;
  j["sensitivity_values"] = a.sensitivity_values;
  j["dense_sensitivity_values"] = a.dense_sensitivity_values;
  j["sensitivity_block_values"] = a.sensitivity_block_values;
  j["gradient_macs_per_step"] = a.gradient_macs_per_step;
  const auto& c = a.exact_cost;
  j["exact_cost"] = {{"reverse_macs", c.reverse_macs},       {"column_reverse_macs", c.column_reverse_macs},
                     {"column_call_macs", c.column_call_macs}, {"sensitivity_rows", c.sensitivity_rows},
                     {"rtrl_macs_per_step", c.rtrl_macs},    {"blocked_macs_per_step", c.blocked_macs},
                     {"rtrl_cost_per_step", c.rtrl_cost},    {"blocked_cost_per_step", c.blocked_cost},
                     {"block_length", c.block_length},       {"background_block_length", c.background_block_length},
                     {"choice", analysis::to_string(c.choice)}};
  // null: the gradient is exact.
  j["approximation"] = nullptr;
  if (!a.layer_local_states.empty()) {
    json states = json::array(), dropped = json::array();
    for (int g : a.layer_local_states) states.push_back(group_name(net, g));
    for (const auto& [g, p] : a.dropped_blocks)
      dropped.push_back({{"state", group_name(net, g)}, {"param", net.params[static_cast<std::size_t>(p)].name}});
    j["approximation"] = {{"kind", "layer_local"}, {"states", states}, {"dropped_blocks", dropped}, {"exact", a.exact()}};
  }
  return j;
}

std::string exact_choice(const analysis::Analysis& a) {
  const auto& c = a.exact_cost;
  return fmt::format(
      "exact algorithm: {} (per step with a gradient every step: RTRL {} MACs, cost {:.3g}; blocked at block length {} {} "
      "MACs, cost {:.3g}; with the block end on a second thread, block length {})",
      c.choice == analysis::ExactAlgorithm::blocked ? "blocked" : "RTRL", c.rtrl_macs, c.rtrl_cost, c.block_length,
      c.blocked_macs, c.blocked_cost, c.background_block_length);
}

std::string approximation_note(const ir::Network& net, const analysis::Analysis& a, std::string_view separator) {
  if (a.exact()) return {};
  std::string states;
  for (int g : a.layer_local_states) states += (states.empty() ? "" : ", ") + group_name(net, g);
  std::string out = fmt::format("APPROXIMATE GRADIENT: layer_local on {} drops {} block{} of Delta:", states,
                                a.dropped_blocks.size(), a.dropped_blocks.size() == 1 ? "" : "s");
  for (std::size_t i = 0; i < a.dropped_blocks.size(); ++i) {
    const auto& [g, p] = a.dropped_blocks[i];
    out += fmt::format("{}{}Delta({}, {})", i % 6 == 0 ? std::string(separator) : std::string(), i % 6 == 0 ? "  " : ", ",
                       group_name(net, g), net.params[static_cast<std::size_t>(p)].name);
  }
  out += fmt::format(
      ".{}The gradient keeps every path within a step, not the history those blocks carry; without layer_local it is "
      "exact.",
      separator);
  return out;
}

std::string summary(const ir::Network& net, const analysis::Analysis& a) {
  std::string out = fmt::format("network '{}': {} groups, {} connections, {} parameters in {} groups\n",
                                net.name, net.groups.size(), net.connections.size(), net.param_count(),
                                net.params.size());
  out += "connections:\n";
  for (std::size_t i = 0; i < net.connections.size(); ++i) {
    const auto& c = net.connections[i];
    out += fmt::format("  {:<14} {}{} -> {}  [{}, {}]\n", c.name, c.delayed ? "delay " : "",
                       group_name(net, c.from), group_name(net, c.to), ir::to_string(c.kind),
                       analysis::to_string(a.connection_class[i]));
  }
  out += "loops (evaluation order):\n";
  for (const auto& loop : a.loops) {
    std::string states;
    for (int g : loop.states) states += (states.empty() ? "" : ", ") + group_name(net, g);
    out += fmt::format("  {}: {{{}}}{}\n", loop.order, states, loop.self_recurrent ? "" : " (not self-recurrent)");
  }
  std::size_t nonzero = 0;
  for (const auto& t : a.cross_terms) nonzero += t.nonzero ? 1 : 0;
  out += fmt::format("cross terms: {} nonzero, {} pruned{}{}\n", nonzero, a.cross_terms.size() - nonzero,
                     nonzero == a.cross_terms.size() ? "" : ": ", pruned_cross_terms(net, a, ", "));
  for (const auto& [k, l] : a.recurrency_abstraction_violations)
    out += fmt::format("Recurrency-Abstraction does not hold for ({}, {}): both cross terms kept\n",
                       group_name(net, k), group_name(net, l));
  for (int p : a.unreachable_params)
    out += fmt::format("parameter '{}' reaches no loss\n", net.params[static_cast<std::size_t>(p)].name);
  out += fmt::format("sensitivity update: {} MACs per step pruned vs {} dense ({:.2f}x); {} vs {} values stored "
                     "({} in the stored blocks, {} of them structurally zero at neuron level)\n",
                     a.macs_per_step, a.dense_macs_per_step,
                     a.macs_per_step > 0 ? static_cast<double>(a.dense_macs_per_step) / static_cast<double>(a.macs_per_step) : 0.0,
                     a.sensitivity_values, a.dense_sensitivity_values, a.sensitivity_block_values,
                     a.sensitivity_block_values - a.sensitivity_values);
  out += exact_choice(a) + "\n";
  if (!a.exact()) out += approximation_note(net, a, "\n") + "\n";
  return out;
}

ReportPaths write_reports(const ir::Network& net, const analysis::Analysis& a, const std::filesystem::path& dir) {
  ReportPaths paths{dir / (net.name + ".dot"), dir / (net.name + ".json"), dir / (net.name + ".html")};
  const std::string dot = to_dot(net, a);
  write_files_atomically({{paths.dot, dot},
                          {paths.json, to_json(net, a).dump(2) + "\n"},
                          {paths.html, to_html(net, a, render_svg(to_dot(net, a, false)).value_or(""))}});
  return paths;
}

}  // namespace loopgrad::emit
