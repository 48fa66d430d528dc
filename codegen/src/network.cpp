#include "loopgrad/ir/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace loopgrad::ir {

namespace {
template <class Items>
int find_by_name(const Items& items, std::string_view name) {
  for (std::size_t i = 0; i < items.size(); ++i)
    if (items[i].name == name) return static_cast<int>(i);
  return -1;
}

[[noreturn]] void fail(const Network& net, const std::string& what) {
  throw std::invalid_argument("network '" + net.name + "': " + what);
}
}  // namespace

int Network::find_group(std::string_view group_name) const { return find_by_name(groups, group_name); }
int Network::find_param(std::string_view param_name) const { return find_by_name(params, param_name); }
int Network::find_connection(std::string_view connection_name) const {
  return find_by_name(connections, connection_name);
}
int Network::param_count() const {
  int n = 0;
  for (const auto& p : params) n += p.size();
  return n;
}

const char* to_string(ConnectionKind kind) {
  switch (kind) {
    case ConnectionKind::dense: return "dense";
    case ConnectionKind::diagonal: return "diagonal";
    case ConnectionKind::identity: return "identity";
    case ConnectionKind::sparse: return "sparse";
  }
  return "?";
}

std::vector<std::vector<int>> param_users(const Network& net) {
  std::vector<std::vector<int>> users(net.params.size());
  for (const auto& op : net.ops) {
    int p = -1;
    if (op.code == OpCode::connect && op.connection >= 0) p = net.connections[static_cast<std::size_t>(op.connection)].param;
    if (op.code == OpCode::bias) p = op.param;
    if (p < 0 || static_cast<std::size_t>(p) >= users.size()) continue;
    auto& u = users[static_cast<std::size_t>(p)];
    if (std::find(u.begin(), u.end(), op.owner) == u.end()) u.push_back(op.owner);
  }
  return users;
}

const char* to_string(Loss loss) { return loss_rule(loss).name.data(); }

namespace {

// Op `i` of `net` as text; `strong`: it stands where + and - must be parenthesised.
std::string op_text(const Network& net, int i, bool strong) {
  const auto& op = net.ops[static_cast<std::size_t>(i)];
  auto group = [&](int g) { return net.groups[static_cast<std::size_t>(g)].name; };
  switch (op.code) {
    case OpCode::read: return group(op.group);
    case OpCode::read_delayed: return "delay(" + group(op.group) + ")";
    case OpCode::connect: {
      const auto& c = net.connections[static_cast<std::size_t>(op.connection)];
      const std::string source = op_text(net, op.a, true);
      if (c.kind == ConnectionKind::identity) return source;
      if (c.kind == ConnectionKind::diagonal) return c.name + " * " + source;
      return c.name + "\u00b7" + source;  // a matrix (dense or sparse) times the source
    }
    case OpCode::bias: return net.params[static_cast<std::size_t>(op.param)].name;
    case OpCode::constant: {
      char text[32];
      std::snprintf(text, sizeof text, "%g", op.constant);
      return text;
    }
    case OpCode::add:
    case OpCode::sub: {
      std::string t = op_text(net, op.a, false) + (op.code == OpCode::add ? " + " : " - ") + op_text(net, op.b, op.code == OpCode::sub);
      return strong ? "(" + t + ")" : t;
    }
    case OpCode::mul:
    case OpCode::div:
      return op_text(net, op.a, true) + (op.code == OpCode::mul ? " * " : " / ") + op_text(net, op.b, true);
    case OpCode::activate:
      if (op.activation == Activation::identity) return op_text(net, op.a, strong);
      return std::string(rule(op.activation).name) + "(" + op_text(net, op.a, false) + ")";
  }
  return "?";
}

}  // namespace

std::string expression(const Network& net, int group) {
  const auto& g = net.groups[static_cast<std::size_t>(group)];
  if (g.kind == GroupKind::input || g.op_end <= g.op_begin) return "";
  return op_text(net, g.value_op(), false);
}

void validate(const Network& net) {
  // Sizes first: the IR counts values in int, so a parameter group and their total must fit.
  std::int64_t total = 0;
  for (const auto& p : net.params) {
    const std::int64_t values = static_cast<std::int64_t>(p.rows) * static_cast<std::int64_t>(p.cols);
    if (p.rows <= 0 || p.cols <= 0)
      fail(net, "parameter '" + p.name + "' has shape " + std::to_string(p.rows) + " x " + std::to_string(p.cols));
    if (values > max_values)
      fail(net, "parameter '" + p.name + "' has " + std::to_string(p.rows) + " x " + std::to_string(p.cols) + " = " +
                    std::to_string(values) + " values, more than loopgrad's limit of " + std::to_string(max_values) +
                    " per parameter group; use smaller groups or sparse connections");
    total += values;
    if (total > max_values)
      fail(net, "the parameters have more than " + std::to_string(max_values) +
                    " values in all, loopgrad's limit; use smaller groups or sparse connections");
  }
  const int n_groups = static_cast<int>(net.groups.size());
  const int n_ops = static_cast<int>(net.ops.size());
  auto group_ok = [&](int g) { return g >= 0 && g < n_groups; };
  for (std::size_t i = 0; i < net.groups.size(); ++i) {
    const auto& g = net.groups[i];
    if (g.size <= 0) fail(net, "group '" + g.name + "' has size " + std::to_string(g.size));
    if (!(g.loss_weight >= 0) || !std::isfinite(g.loss_weight))
      fail(net, "output '" + g.name + "' has loss weight " + std::to_string(g.loss_weight) +
                    "; a weight is a finite number >= 0");
    if (find_by_name(net.groups, g.name) != static_cast<int>(i))
      fail(net, "name '" + g.name + "' is used by two groups");
    if (g.kind == GroupKind::neuron) {
      if (g.op_begin < 0 || g.op_end <= g.op_begin || g.op_end > n_ops)
        fail(net, "neuron group '" + g.name + "' has no defining expression");
      if (net.ops[static_cast<std::size_t>(g.value_op())].size != g.size)
        fail(net, "the expression of group '" + g.name + "' has a different size than the group");
    } else if (g.is_output()) {
      fail(net, "input '" + g.name + "' cannot be an output");
    }
  }
  for (const auto& c : net.connections) {
    if (!group_ok(c.from) || !group_ok(c.to))
      fail(net, "connection '" + c.name + "' joins groups that do not exist");
    const auto& from = net.groups[static_cast<std::size_t>(c.from)];
    const auto& to = net.groups[static_cast<std::size_t>(c.to)];
    if (c.delayed && from.kind == GroupKind::input)
      fail(net, "connection '" + c.name + "' delays input '" + from.name + "'; inputs keep no previous value");
    if ((c.kind == ConnectionKind::diagonal || c.kind == ConnectionKind::identity) && from.size != to.size)
      fail(net, std::string(to_string(c.kind)) + " connection '" + c.name + "' joins '" + from.name +
                    "' (size " + std::to_string(from.size) + ") and '" + to.name + "' (size " +
                    std::to_string(to.size) + "); use a dense connection between groups of different sizes");
    for (const auto& m : c.mask)
      if (m.to < 0 || m.to >= to.size || m.from < 0 || m.from >= from.size)
        fail(net, "sparse connection '" + c.name + "' has a mask entry {" + std::to_string(m.to) + ", " +
                      std::to_string(m.from) + "} outside " + std::to_string(to.size) + " x " +
                      std::to_string(from.size));
    if ((c.kind == ConnectionKind::identity) != (c.param < 0))
      fail(net, "connection '" + c.name + "' has a parameter group that does not fit its kind");
    if (c.param >= 0 && static_cast<std::size_t>(c.param) < net.params.size()) {
      // The weights' shape follows from the connection (shared weights: from each of its uses).
      const auto& p = net.params[static_cast<std::size_t>(c.param)];
      const int rows = c.kind == ConnectionKind::sparse ? static_cast<int>(c.mask.size()) : to.size;
      const int cols = c.kind == ConnectionKind::dense ? from.size : 1;
      if (p.rows != rows || p.cols != cols)
        fail(net, "connection '" + c.name + "' uses parameter '" + p.name + "' of shape " + std::to_string(p.rows) + " x " +
                      std::to_string(p.cols) + ", and needs " + std::to_string(rows) + " x " + std::to_string(cols));
    }
  }
  for (std::size_t i = 0; i < net.params.size(); ++i)
    if (find_by_name(net.params, net.params[i].name) != static_cast<int>(i))
      fail(net, "parameter name '" + net.params[i].name + "' is used twice");
  for (int i = 0; i < n_ops; ++i) {
    const auto& op = net.ops[static_cast<std::size_t>(i)];
    auto arg_ok = [&](int a) { return a >= 0 && a < i && net.ops[static_cast<std::size_t>(a)].owner == op.owner; };
    switch (op.code) {
      case OpCode::read:
      case OpCode::read_delayed:
        if (!group_ok(op.group)) fail(net, "op " + std::to_string(i) + " reads a group that does not exist");
        break;
      case OpCode::connect:
        if (!arg_ok(op.a) || op.connection < 0) fail(net, "op " + std::to_string(i) + " has no source");
        break;
      case OpCode::add:
      case OpCode::sub:
      case OpCode::mul:
      case OpCode::div:
        if (!arg_ok(op.a) || !arg_ok(op.b)) fail(net, "op " + std::to_string(i) + " has a bad operand");
        if (net.ops[static_cast<std::size_t>(op.a)].size != op.size ||
            net.ops[static_cast<std::size_t>(op.b)].size != op.size)
          fail(net, "op " + std::to_string(i) + " combines operands of different sizes");
        break;
      case OpCode::activate:
        if (!arg_ok(op.a)) fail(net, "op " + std::to_string(i) + " has a bad operand");
        break;
      case OpCode::bias:
      case OpCode::constant:
        break;
    }
  }
  // The spec's PyTorch layout: every tensor names existing groups that stack, each name once, and a
  // group appears in two tensors only when they are summed into it.
  std::vector<int> mapped(net.params.size(), 0), summed(net.params.size(), 0);
  for (std::size_t t = 0; t < net.tensors.size(); ++t) {
    const auto& m = net.tensors[t];
    try {
      tensor_shape(net, m);
    } catch (const std::invalid_argument& e) {
      fail(net, e.what());
    }
    for (std::size_t u = 0; u < t; ++u)
      if (net.tensors[u].tensor == m.tensor) fail(net, "tensor '" + m.tensor + "' is mapped twice");
    for (const auto& name : m.params) {
      const auto p = static_cast<std::size_t>(net.find_param(name));
      ++mapped[p];
      summed[p] += m.summed ? 1 : 0;
      if (mapped[p] > 1 && summed[p] != mapped[p])
        fail(net, "parameter '" + name + "' is mapped to several tensors that are not all marked summed (tensor '" + m.tensor + "')");
    }
  }

}

std::vector<long long> tensor_shape(const Network& net, const TensorMapping& mapping) {
  if (mapping.params.empty()) throw std::invalid_argument("tensor '" + mapping.tensor + "' maps no parameter group");
  long long rows = 0, cols = -1;
  int matrix = -1;
  for (const auto& name : mapping.params) {
    const int p = net.find_param(name);
    if (p < 0)
      throw std::invalid_argument("tensor '" + mapping.tensor + "': network '" + net.name + "' has no parameter group '" + name + "'");
    const auto& param = net.params[static_cast<std::size_t>(p)];
    const int is_matrix = param.connection >= 0 && net.connections[static_cast<std::size_t>(param.connection)].kind == ConnectionKind::dense;
    if ((cols >= 0 && cols != param.cols) || (matrix >= 0 && matrix != is_matrix))
      throw std::invalid_argument("tensor '" + mapping.tensor + "' stacks parameter groups of different column counts or ranks ('" +
                                  name + "' is " + std::to_string(param.rows) + " x " + std::to_string(param.cols) + ")");
    cols = param.cols;
    matrix = is_matrix;
    rows += param.rows;
  }
  if (matrix == 1) return {rows, cols};
  return {rows};
}

}  // namespace loopgrad::ir
