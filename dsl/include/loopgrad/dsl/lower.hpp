#pragma once
// The one bridge from the compile-time network to the IR: lower(net) walks the Hana tuple of
// components once and returns plain data. Everything after this point works on ir::Network.
#include <boost/hana/for_each.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loopgrad/dsl/network.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::dsl {

namespace detail {

class lowering {
 public:
  explicit lowering(std::string_view name) { net_.name = name; }

  template <class G>
  void add_group(ir::Loss loss = ir::Loss::none, double loss_weight = 1) {
    if (net_.find_group(G::name.view()) >= 0) return;
    ir::Group g;
    g.name = G::name.view();
    g.size = static_cast<int>(G::size);
    g.kind = G::role == group_role::input ? ir::GroupKind::input : ir::GroupKind::neuron;
    g.loss = loss;
    g.loss_weight = loss_weight;
    net_.groups.push_back(g);
  }

  template <class E>
  void add_inputs_read_by() {
    if constexpr (E::kind == node_kind::group) {
      if constexpr (E::role == group_role::input) add_group<E>();
    } else if constexpr (E::kind == node_kind::dense || E::kind == node_kind::diagonal ||
                         E::kind == node_kind::identity || E::kind == node_kind::sparse) {
      add_inputs_read_by<typename E::source>();
    } else if constexpr (E::kind == node_kind::binary) {
      add_inputs_read_by<typename E::left_type>();
      add_inputs_read_by<typename E::right_type>();
    } else if constexpr (E::kind == node_kind::activation) {
      add_inputs_read_by<typename E::arg_type>();
    }
  }

  template <class G, class E>
  void define(const E& expr) {
    const int owner = net_.find_group(G::name.view());
    auto& group = net_.groups[static_cast<std::size_t>(owner)];
    group.op_begin = static_cast<int>(net_.ops.size());
    lower_expr(expr, owner, static_cast<int>(G::size));
    net_.groups[static_cast<std::size_t>(owner)].op_end = static_cast<int>(net_.ops.size());
  }

  /// Defines the implicit groups of expression sources (W_in = the expression `dense<"W">(...)`
  /// reads), then the copies delay<K>() asked for (h_delayk = delay(h_delay(k-1)), h_delay0 being
  /// h), after every user definition so that each group's ops stay together; then returns the IR.
  ir::Network take() {
    // A source expression may hold another connection with an expression source: run until none
    // is left (each definition is moved out before it runs, since it may append).
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      auto define_source = std::move(sources_[i]);
      define_source();
    }
    for (const auto& [copy, source] : copies_) {
      auto& group = net_.groups[static_cast<std::size_t>(copy)];
      group.op_begin = static_cast<int>(net_.ops.size());
      read(copy, source, true, group.size, true);
      net_.groups[static_cast<std::size_t>(copy)].op_end = static_cast<int>(net_.ops.size());
    }
    return std::move(net_);
  }

 private:
  int push(ir::Op op) {
    net_.ops.push_back(op);
    return static_cast<int>(net_.ops.size()) - 1;
  }

  /// A read or delayed read; `implicit` makes it an identity connection of its own.
  template <class S>
  int lower_read(int owner, bool implicit) {
    if constexpr (S::kind == node_kind::delayed) {
      int group = net_.find_group(S::group::name.view());
      // delay<K>(h), K > 1: the delayed read of the chain's last copy, h_delay(K-1).
      if constexpr (S::steps > 1) group = delay_copy(group, static_cast<int>(S::steps) - 1);
      return read(owner, group, true, static_cast<int>(S::size), implicit);
    } else {
      return read(owner, net_.find_group(S::name.view()), false, static_cast<int>(S::size), implicit);
    }
  }

  /// The op that reads group `group` (its previous step's value when `delayed`) in the expression
  /// of group `owner`; `implicit` makes it an identity connection of its own, named after the two
  /// groups (delay(h)->g, with #2, #3, ... for a second and third such read).
  int read(int owner, int group, bool delayed, int size, bool implicit) {
    ir::Op op;
    op.owner = owner;
    op.code = delayed ? ir::OpCode::read_delayed : ir::OpCode::read;
    op.group = group;
    op.size = size;
    const int index = push(op);
    if (implicit) {
      ir::Connection c;
      c.kind = ir::ConnectionKind::identity;
      c.from = group;
      c.to = owner;
      c.delayed = delayed;
      c.op = index;
      c.implicit = true;
      const auto& from = net_.groups[static_cast<std::size_t>(c.from)].name;
      const auto& to = net_.groups[static_cast<std::size_t>(owner)].name;
      std::string base = (c.delayed ? "delay(" + from + ")" : from) + "->" + to;
      c.name = base;
      for (int k = 2; net_.find_connection(c.name) >= 0; ++k) c.name = base + "#" + std::to_string(k);
      net_.ops[static_cast<std::size_t>(index)].connection = add_connection(std::move(c));
    }
    return index;
  }

  /// The group h_delayk, the k-th copy in group g's delay chain (k >= 1), added on first use.
  int delay_copy(int g, int k) {
    const int source = k == 1 ? g : delay_copy(g, k - 1);
    const std::string name = net_.groups[static_cast<std::size_t>(g)].name + "_delay" + std::to_string(k);
    const int found = net_.find_group(name);
    for (const auto& [copy, from] : copies_)
      if (copy == found) return found;
    if (found >= 0)
      throw std::invalid_argument("network '" + net_.name + "': delay<" + std::to_string(k + 1) + ">(" +
                                  net_.groups[static_cast<std::size_t>(g)].name + ") needs a group named '" + name +
                                  "' for its chain of copies, and the network has one already: rename that group");
    ir::Group copy;
    copy.name = name;
    copy.size = net_.groups[static_cast<std::size_t>(g)].size;
    copy.kind = ir::GroupKind::neuron;
    net_.groups.push_back(copy);
    const int index = static_cast<int>(net_.groups.size()) - 1;
    copies_.emplace_back(index, source);
    return index;
  }

  int add_connection(ir::Connection c) {
    net_.connections.push_back(std::move(c));
    return static_cast<int>(net_.connections.size()) - 1;
  }

  /// The parameter group so named: a new one, or the one an earlier connection or bias of that
  /// name added (shared weights; the DSL has checked that the shapes agree, this checks again).
  int add_param(std::string_view name, ir::ParamRole role, int rows, int cols, int owner,
                int connection) {
    if (const int shared = net_.find_param(name); shared >= 0) {
      const auto& p = net_.params[static_cast<std::size_t>(shared)];
      if (p.role != role || p.rows != rows || p.cols != cols)
        throw std::invalid_argument("network '" + net_.name + "': parameter '" + std::string(name) + "' is shared by " +
                                    "two uses of different shapes (" + std::to_string(p.rows) + " x " +
                                    std::to_string(p.cols) + " and " + std::to_string(rows) + " x " +
                                    std::to_string(cols) + "); give each its own name");
      return shared;
    }
    ir::Param p;
    p.name = name;
    p.role = role;
    p.rows = rows;
    p.cols = cols;
    p.group = owner;
    p.connection = connection;
    net_.params.push_back(p);
    return static_cast<int>(net_.params.size()) - 1;
  }

  /// The implicit group Name_in that holds the expression a connection named Name reads (added
  /// now, defined in take()); refused with a message if the network has a group of that name.
  template <class E>
  int source_group(const E& connection) {
    using S = typename E::source;
    const std::string name(source_group_name<E::name>.view());
    if (net_.find_group(name) >= 0)
      throw std::invalid_argument("network '" + net_.name + "': connection '" + std::string(E::name.view()) +
                                  "' reads an expression, which becomes a group named '" + name +
                                  "', and the network has one already: rename that group");
    ir::Group g;
    g.name = name;
    g.size = static_cast<int>(S::size);
    g.kind = ir::GroupKind::neuron;
    net_.groups.push_back(g);
    const int index = static_cast<int>(net_.groups.size()) - 1;
    sources_.push_back([this, index, source = connection.from] {
      net_.groups[static_cast<std::size_t>(index)].op_begin = static_cast<int>(net_.ops.size());
      lower_expr(source, index, static_cast<int>(S::size));
      net_.groups[static_cast<std::size_t>(index)].op_end = static_cast<int>(net_.ops.size());
    });
    return index;
  }

  template <class E>
  int lower_expr(const E& e, int owner, int n) {
    ir::Op op;
    op.owner = owner;
    op.size = n;
    if constexpr (E::kind == node_kind::group || E::kind == node_kind::delayed) {
      return lower_read<E>(owner, true);
    } else if constexpr (E::kind == node_kind::dense || E::kind == node_kind::diagonal ||
                         E::kind == node_kind::identity || E::kind == node_kind::sparse) {
      using S = typename E::source;
      int source = -1;
      if constexpr (is_direct_source<S>)
        source = lower_read<S>(owner, false);
      else  // an expression: the connection reads the implicit group that holds it
        source = read(owner, source_group(e), false, static_cast<int>(S::size), false);
      ir::Connection c;
      // A second connection of one name shares the first one's weights: it is named W#2 (W#3, ...).
      c.name = E::name.view();
      for (int k = 2; net_.find_connection(c.name) >= 0; ++k) c.name = std::string(E::name.view()) + "#" + std::to_string(k);
      c.from = net_.ops[static_cast<std::size_t>(source)].group;
      c.to = owner;
      c.delayed = S::kind == node_kind::delayed;
      const int conn = static_cast<int>(net_.connections.size());
      const int m = static_cast<int>(S::size);
      if constexpr (E::kind == node_kind::dense) {
        c.kind = ir::ConnectionKind::dense;
        c.param = add_param(E::name.view(), ir::ParamRole::weight, n, m, owner, conn);
      } else if constexpr (E::kind == node_kind::diagonal) {
        c.kind = ir::ConnectionKind::diagonal;
        c.param = add_param(E::name.view(), ir::ParamRole::weight, n, 1, owner, conn);
      } else if constexpr (E::kind == node_kind::sparse) {
        c.kind = ir::ConnectionKind::sparse;
        for (const auto& l : E::links.links)
          c.mask.push_back({static_cast<int>(l.to), static_cast<int>(l.from)});
        c.param = add_param(E::name.view(), ir::ParamRole::weight,
                            static_cast<int>(c.mask.size()), 1, owner, conn);
        // Shared sparse weights need one mask (the DSL compares the masks by a hash; this exactly).
        const int first = net_.params[static_cast<std::size_t>(c.param)].connection;
        if (first != conn && net_.connections[static_cast<std::size_t>(first)].mask != c.mask)
          throw std::invalid_argument("network '" + net_.name + "': sparse connections named '" +
                                      std::string(E::name.view()) + "' share their weights but not their mask; give each its own name");
      } else {
        c.kind = ir::ConnectionKind::identity;
      }
      op.code = ir::OpCode::connect;
      op.a = source;
      op.connection = conn;
      const int index = push(op);
      c.op = index;
      add_connection(std::move(c));
      return index;
    } else if constexpr (E::kind == node_kind::bias) {
      op.code = ir::OpCode::bias;
      op.param = add_param(E::name.view(), ir::ParamRole::bias, n, 1, owner, -1);
      return push(op);
    } else if constexpr (E::kind == node_kind::constant) {
      op.code = ir::OpCode::constant;
      op.constant = e.value;
      return push(op);
    } else if constexpr (E::kind == node_kind::binary) {
      op.a = lower_expr(e.left, owner, n);
      op.b = lower_expr(e.right, owner, n);
      op.code = E::op == binary_op::add   ? ir::OpCode::add
                : E::op == binary_op::sub ? ir::OpCode::sub
                : E::op == binary_op::mul ? ir::OpCode::mul
                                          : ir::OpCode::div;
      return push(op);
    } else {
      static_assert(E::kind == node_kind::activation);
      op.a = lower_expr(e.arg, owner, n);
      op.code = ir::OpCode::activate;
      op.activation = E::activation;
      return push(op);
    }
  }

  ir::Network net_;
  std::vector<std::function<void()>> sources_;  // definitions of the implicit source groups, in order of creation
  std::vector<std::pair<int, int>> copies_;     // (copy, the group it delays), in order of creation
};

}  // namespace detail

/// lower(net): the network as IR. Groups are numbered inputs first (in the order they are
/// declared or first read), then neuron groups in definition order; connections, parameters and
/// ops follow definition order, so the result depends on the spec alone.
template <fixed_string Name, class Components>
ir::Network lower(const network_t<Name, Components>& net) {
  detail::lowering l(Name.view());
  hana::for_each(net.components, [&](const auto& c) {
    using C = std::remove_cvref_t<decltype(c)>;
    if constexpr (is_group<C>) {
      l.template add_group<C>();
    } else {
      l.template add_inputs_read_by<typename detail::component_traits<C>::expr>();
    }
  });
  hana::for_each(net.components, [&](const auto& c) {
    using C = std::remove_cvref_t<decltype(c)>;
    if constexpr (is_definition<C>) {
      l.template add_group<typename C::group>();
    } else if constexpr (is_output<C>) {
      using D = decltype(c.definition);
      l.template add_group<typename D::group>(decltype(detail::loss_of(c))::value, c.weight);
    }
  });
  hana::for_each(net.components, [&](const auto& c) {
    using C = std::remove_cvref_t<decltype(c)>;
    if constexpr (is_definition<C>) {
      l.template define<typename C::group>(c.expr);
    } else if constexpr (is_output<C>) {
      using D = decltype(c.definition);
      l.template define<typename D::group>(c.definition.expr);
    }
  });
  return l.take();
}

}  // namespace loopgrad::dsl
