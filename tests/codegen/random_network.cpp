#include "random_network.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>
#include <string>

namespace loopgrad::testing {

namespace {

// Appends ops, connections and parameters the way dsl::lower does.
class Builder {
 public:
  explicit Builder(std::string name) { net_.name = std::move(name); }
  // (names are built with fmt: g++ 12 raises a false -Wrestrict on chained std::string +)

  int input(int size) { return add_group(fmt::format("x{}", net_.groups.size()), size, ir::GroupKind::input); }
  int neuron(int size, ir::Loss loss) {
    const int g = add_group(fmt::format("g{}", net_.groups.size()), size, ir::GroupKind::neuron);
    net_.groups.back().loss = loss;
    return g;
  }
  void begin(int g) {
    owner_ = g;
    net_.groups[static_cast<std::size_t>(g)].op_begin = static_cast<int>(net_.ops.size());
  }
  void end() { net_.groups[static_cast<std::size_t>(owner_)].op_end = static_cast<int>(net_.ops.size()); }
  int size(int g) const { return net_.groups[static_cast<std::size_t>(g)].size; }
  void set_loss(int g, ir::Loss loss, double weight) {
    net_.groups[static_cast<std::size_t>(g)].loss = loss;
    net_.groups[static_cast<std::size_t>(g)].loss_weight = weight;
  }
  int owner_size() const { return size(owner_); }

  // A group read inside the expression: an implicit identity connection (sizes must match).
  int read(int g, bool delayed) {
    const int op = read_op(g, delayed);
    ir::Connection c;
    c.name = delayed ? fmt::format("delay({})->{}#{}", name(g), name(owner_), net_.connections.size())
                     : fmt::format("{}->{}#{}", name(g), name(owner_), net_.connections.size());
    c.kind = ir::ConnectionKind::identity;
    c.from = g;
    c.to = owner_;
    c.delayed = delayed;
    c.op = op;
    c.implicit = true;
    net_.ops[static_cast<std::size_t>(op)].connection = static_cast<int>(net_.connections.size());
    net_.connections.push_back(c);
    return op;
  }
  int connect(ir::ConnectionKind kind, int g, bool delayed, std::mt19937& rng) {
    const int n = owner_size(), m = size(g);
    const int source = read_op(g, delayed);
    ir::Connection c;
    c.name = fmt::format("c{}", net_.connections.size());
    c.kind = kind;
    c.from = g;
    c.to = owner_;
    c.delayed = delayed;
    if (kind == ir::ConnectionKind::sparse) {
      const int links = 1 + static_cast<int>(rng() % static_cast<unsigned>(std::min(n * m, 6)));
      while (static_cast<int>(c.mask.size()) < links) {
        ir::MaskEntry e{static_cast<int>(rng() % static_cast<unsigned>(n)), static_cast<int>(rng() % static_cast<unsigned>(m))};
        if (std::none_of(c.mask.begin(), c.mask.end(), [&](auto x) { return x.to == e.to && x.from == e.from; }))
          c.mask.push_back(e);
      }
    }
    const int conn = static_cast<int>(net_.connections.size());
    if (kind == ir::ConnectionKind::dense) c.param = param(ir::ParamRole::weight, n, m, conn);
    if (kind == ir::ConnectionKind::diagonal) c.param = param(ir::ParamRole::weight, n, 1, conn);
    if (kind == ir::ConnectionKind::sparse) c.param = param(ir::ParamRole::weight, static_cast<int>(c.mask.size()), 1, conn);
    ir::Op op;
    op.code = ir::OpCode::connect;
    op.size = n;
    op.a = source;
    op.connection = conn;
    op.owner = owner_;
    c.op = push(op);
    net_.connections.push_back(c);
    return c.op;
  }
  // A dense connection that shares the weights of an earlier dense connection of the same shape
  // (n x m), or a new one when there is none. Not one on the same source in the same group: W x - W x
  // is zero, and its gradient rounding noise that no relative tolerance can judge.
  int shared_dense(int g, bool delayed, std::mt19937& rng) {
    const int n = owner_size(), m = size(g);
    for (const auto& c : net_.connections) {
      if (c.kind != ir::ConnectionKind::dense || (c.to == owner_ && c.from == g && c.delayed == delayed)) continue;
      const auto& p = net_.params[static_cast<std::size_t>(c.param)];
      if (p.rows != n || p.cols != m) continue;
      const int source = read_op(g, delayed);
      ir::Connection shared;
      shared.name = fmt::format("c{}", net_.connections.size());
      shared.kind = ir::ConnectionKind::dense;
      shared.from = g;
      shared.to = owner_;
      shared.delayed = delayed;
      shared.param = c.param;
      ir::Op op;
      op.code = ir::OpCode::connect;
      op.size = n;
      op.a = source;
      op.connection = static_cast<int>(net_.connections.size());
      op.owner = owner_;
      shared.op = push(op);
      net_.connections.push_back(shared);
      return shared.op;
    }
    return connect(ir::ConnectionKind::dense, g, delayed, rng);
  }
  int bias() {
    ir::Op op;
    op.code = ir::OpCode::bias;
    op.size = owner_size();
    op.param = param(ir::ParamRole::bias, owner_size(), 1, -1);
    op.owner = owner_;
    return push(op);
  }
  int constant(double value) {
    ir::Op op;
    op.code = ir::OpCode::constant;
    op.size = owner_size();
    op.constant = value;
    op.owner = owner_;
    return push(op);
  }
  int binary(ir::OpCode code, int a, int b) {
    ir::Op op;
    op.code = code;
    op.size = owner_size();
    op.a = a;
    op.b = b;
    op.owner = owner_;
    return push(op);
  }
  int activate(ir::Activation act, int a) {
    ir::Op op;
    op.code = ir::OpCode::activate;
    op.size = owner_size();
    op.a = a;
    op.activation = act;
    op.owner = owner_;
    return push(op);
  }
  const ir::Group& group(int g) const { return net_.groups[static_cast<std::size_t>(g)]; }
  ir::Network take() { return std::move(net_); }

 private:
  const std::string& name(int g) const { return net_.groups[static_cast<std::size_t>(g)].name; }
  int add_group(std::string name, int size, ir::GroupKind kind) {
    ir::Group g;
    g.name = std::move(name);
    g.size = size;
    g.kind = kind;
    net_.groups.push_back(g);
    return static_cast<int>(net_.groups.size()) - 1;
  }
  int read_op(int g, bool delayed) {
    ir::Op op;
    op.code = delayed ? ir::OpCode::read_delayed : ir::OpCode::read;
    op.size = size(g);
    op.group = g;
    op.owner = owner_;
    return push(op);
  }
  int param(ir::ParamRole role, int rows, int cols, int connection) {
    ir::Param p;
    p.name = fmt::format("p{}", net_.params.size());
    p.role = role;
    p.rows = rows;
    p.cols = cols;
    p.group = owner_;
    p.connection = connection;
    net_.params.push_back(p);
    return static_cast<int>(net_.params.size()) - 1;
  }
  int push(const ir::Op& op) {
    net_.ops.push_back(op);
    return static_cast<int>(net_.ops.size()) - 1;
  }

  ir::Network net_;
  int owner_ = -1;
};

}  // namespace

ir::Network random_network(unsigned seed) {
  std::mt19937 rng(seed * 7919u + 17u);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto chance = [&](int percent) { return pick(100) < percent; };
  // The second corpus's draws come from a generator of their own, so that the first corpus's
  // networks stay what they were.
  const bool extended = seed > random_first_corpus;
  std::mt19937 ext_rng(seed * 104729u + 3u);
  auto ext_pick = [&](int n) { return static_cast<int>(ext_rng() % static_cast<unsigned>(n)); };
  auto ext_chance = [&](int percent) { return extended && ext_pick(100) < percent; };
  Builder b(fmt::format("random_{}", seed));

  std::vector<int> inputs;
  const int n_inputs = 1 + pick(2);
  for (int i = 0; i < n_inputs; ++i) inputs.push_back(b.input(1 + pick(12)));

  // Neuron groups in evaluation order; the last is an output, sometimes one more, and sometimes a
  // terminating group after it that nothing reads.
  const int n_neurons = 2 + pick(5);
  const bool terminating = chance(40);
  std::vector<int> neurons;
  for (int i = 0; i < n_neurons + (terminating ? 1 : 0); ++i) {
    ir::Loss loss = ir::Loss::none;
    if (i == n_neurons - 1 || (i == 0 && n_neurons > 2 && chance(25)))
      loss = chance(50) ? ir::Loss::mse : ir::Loss::softmax_cross_entropy;
    neurons.push_back(b.neuron(1 + pick(12), loss));
  }
  // 1..5 states, each read through delay() by a chosen group.
  std::vector<int> states = neurons;
  std::shuffle(states.begin(), states.end(), rng);
  states.resize(static_cast<std::size_t>(1 + pick(std::min<int>(5, static_cast<int>(neurons.size())))));
  std::vector<std::vector<int>> delayed_reads(neurons.size());
  for (int s : states) delayed_reads[static_cast<std::size_t>(pick(static_cast<int>(neurons.size())))].push_back(s);
  // delay<2>(s) (second corpus): a copy c = delay(s), defined after the others, read through
  // delay(c) by a chosen group.
  std::vector<std::pair<int, int>> copies;  // (copy, state)
  if (ext_chance(40)) {
    const int s = states[static_cast<std::size_t>(ext_pick(static_cast<int>(states.size())))];
    const int copy = b.neuron(b.size(s), ir::Loss::none);
    copies.emplace_back(copy, s);
    delayed_reads[static_cast<std::size_t>(ext_pick(static_cast<int>(neurons.size())))].push_back(copy);
  }
  // The second corpus's outputs: every loss, some weighted.
  if (extended)
    for (int g : neurons) {
      const auto& group = b.group(g);
      if (!group.is_output()) continue;
      const ir::Loss losses[] = {ir::Loss::mse, ir::Loss::softmax_cross_entropy, ir::Loss::sum_of_squares,
                                 ir::Loss::half_sum_of_squares, ir::Loss::bce_with_logits};
      const double weights[] = {1.0, 0.5, 2.0};
      b.set_loss(g, losses[ext_pick(5)], weights[ext_pick(3)]);
    }

  const ir::Activation activations[] = {ir::Activation::tanh, ir::Activation::sigmoid, ir::Activation::relu,
                                        ir::Activation::identity};
  for (std::size_t i = 0; i < neurons.size(); ++i) {
    const int g = neurons[i];
    b.begin(g);
    const int n = b.size(g);
    // A term that reads `source` (delayed or not) through a random connection kind, or as a plain
    // read when sizes match.
    auto term_from = [&](int source, bool delayed) {
      const bool same = b.size(source) == n;
      const int r = pick(100);
      if (same && r < 15) return b.read(source, delayed);
      if (same && r < 35) return b.connect(ir::ConnectionKind::diagonal, source, delayed, rng);
      if (same && r < 45) return b.connect(ir::ConnectionKind::identity, source, delayed, rng);
      if (r < 65) return b.connect(ir::ConnectionKind::sparse, source, delayed, rng);
      if (ext_chance(50)) return b.shared_dense(source, delayed, rng);  // weight sharing
      return b.connect(ir::ConnectionKind::dense, source, delayed, rng);
    };
    std::vector<int> terms;
    // Feed-forward sources: an input, or any earlier group (a skip connection when not the last).
    const int ff = 1 + pick(2);
    for (int t = 0; t < ff; ++t) {
      const bool from_input = i == 0 || chance(40);
      const int source = from_input ? inputs[static_cast<std::size_t>(pick(n_inputs))]
                                    : neurons[static_cast<std::size_t>(pick(static_cast<int>(i)))];
      terms.push_back(term_from(source, false));
    }
    for (int s : delayed_reads[i]) terms.push_back(term_from(s, true));
    if (chance(60)) terms.push_back(b.bias());
    // Combine: sums and differences, and sometimes a product of two terms (a gate).
    int expr = terms[0];
    for (std::size_t t = 1; t < terms.size(); ++t) {
      const int r = pick(100);
      if (r < 20) {
        expr = b.binary(ir::OpCode::mul, b.activate(ir::Activation::sigmoid, expr), terms[t]);
      } else if (r < 35) {
        expr = b.binary(ir::OpCode::sub, expr, terms[t]);
      } else {
        expr = b.binary(ir::OpCode::add, expr, terms[t]);
      }
    }
    if (chance(15)) expr = b.binary(ir::OpCode::mul, b.constant(0.5 + pick(3)), expr);
    if (chance(15)) expr = b.binary(ir::OpCode::sub, b.constant(1.0), expr);
    // Second corpus: a parameter vector as a factor, a division, and every element-wise function,
    // each where its argument stays in its domain and the states stay bounded.
    if (ext_chance(30)) expr = b.binary(ir::OpCode::mul, b.bias(), expr);
    if (ext_chance(30))
      expr = b.binary(ir::OpCode::div, expr,
                      b.binary(ir::OpCode::add, b.constant(1.5), b.activate(ir::Activation::square, b.bias())));
    const bool plain = chance(85);
    if (extended && plain) {
      switch (ext_pick(10)) {
        case 0: expr = b.activate(ir::Activation::exp, b.activate(ir::Activation::tanh, expr)); break;
        case 1:
          expr = b.activate(ir::Activation::log,
                            b.binary(ir::OpCode::add, b.constant(1.5), b.activate(ir::Activation::square, expr)));
          break;
        case 2:
          expr = b.activate(ir::Activation::sqrt,
                            b.binary(ir::OpCode::add, b.constant(0.5), b.activate(ir::Activation::softplus, expr)));
          break;
        case 3: expr = b.activate(ir::Activation::silu, b.activate(ir::Activation::tanh, expr)); break;
        case 4: expr = b.activate(ir::Activation::square, b.activate(ir::Activation::tanh, expr)); break;
        case 5: expr = b.activate(ir::Activation::softplus, b.activate(ir::Activation::tanh, expr)); break;
        case 6: expr = b.activate(ir::Activation::cos, expr); break;
        case 7: expr = b.activate(ir::Activation::sin, expr); break;
        default: expr = b.activate(activations[pick(4)], expr); break;
      }
    } else if (plain) {
      expr = b.activate(activations[pick(4)], expr);
    }
    b.end();
  }
  for (const auto& [copy, state] : copies) {
    b.begin(copy);
    b.read(state, true);
    b.end();
  }
  return b.take();
}

}  // namespace loopgrad::testing
