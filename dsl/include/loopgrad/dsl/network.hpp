#pragma once
// network<"name">(components...): gathers definitions, outputs, declared inputs and cells into one
// compile-time network and checks it as a whole: names unique (a connection or bias named twice
// shares one parameter group, of one shape), every group read defined, and defined once (output() checks its loss, `h = expr` its sizes; diagnostics.hpp).
#include <array>
#include <boost/hana/any_of.hpp>
#include <boost/hana/append.hpp>
#include <boost/hana/at.hpp>
#include <boost/hana/concat.hpp>
#include <boost/hana/contains.hpp>
#include <boost/hana/core/is_a.hpp>
#include <boost/hana/filter.hpp>
#include <boost/hana/flatten.hpp>
#include <boost/hana/fold_left.hpp>
#include <boost/hana/front.hpp>
#include <boost/hana/is_empty.hpp>
#include <boost/hana/length.hpp>
#include <boost/hana/remove_if.hpp>
#include <boost/hana/transform.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>
#include <boost/hana/unpack.hpp>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "loopgrad/dsl/connection.hpp"
#include "loopgrad/dsl/expression.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/dsl/output.hpp"

namespace loopgrad::dsl {

namespace hana = boost::hana;

template <class C>
concept Cell = requires(const C& c) { c.definitions(); };

/// A whole network (what network<"name">(...) returns): its name and its components, flattened.
template <fixed_string Name, class Components>
struct network_t {
  static constexpr auto name = Name;  ///< the network's name: the generated namespace and file names derive from it
  Components components;  ///< hana::tuple of definitions, outputs and inputs, in declaration order
};

namespace detail {

/// The groups an expression reads, as a hana tuple of hana::type.
template <class E>
constexpr auto reads_of() {
  if constexpr (E::kind == node_kind::group) {
    return hana::make_tuple(hana::type_c<E>);
  } else if constexpr (E::kind == node_kind::delayed) {
    return hana::make_tuple(hana::type_c<typename E::group>);
  } else if constexpr (E::kind == node_kind::dense || E::kind == node_kind::diagonal ||
                       E::kind == node_kind::identity || E::kind == node_kind::sparse) {
    return reads_of<typename E::source>();
  } else if constexpr (E::kind == node_kind::binary) {
    return hana::concat(reads_of<typename E::left_type>(), reads_of<typename E::right_type>());
  } else if constexpr (E::kind == node_kind::activation) {
    return reads_of<typename E::arg_type>();
  } else {
    return hana::make_tuple();
  }
}

/// One use of a name, for the checks of names and of shared parameters: what carries it (a group,
/// or a connection or bias of this kind), its shape (rows x cols; a sparse connection's mask as
/// a number) and whether it reads an expression.
template <fixed_string Name, node_kind Kind, std::size_t Rows, std::size_t Cols, std::size_t Mask = 0,
          bool ExpressionSource = false>
struct use_t {
  static constexpr auto fixed = Name;  ///< the name, for a diagnostic's type
};

/// What the checks compare of a use.
struct use_info {
  std::string_view name;
  node_kind kind;
  std::size_t rows, cols, mask;
  bool expression_source;
};

template <fixed_string Name, node_kind Kind, std::size_t Rows, std::size_t Cols, std::size_t Mask, bool Expr>
constexpr use_info info_of(hana::basic_type<use_t<Name, Kind, Rows, Cols, Mask, Expr>>) {
  return {Name.view(), Kind, Rows, Cols, Mask, Expr};
}

/// A sparse mask as one number (FNV-1a over its links), to tell masks apart.
template <auto Mask>
constexpr std::size_t mask_number() {
  std::size_t h = 14695981039346656037ull;
  for (const auto& l : Mask.links)
    for (std::size_t v : {l.to, l.from}) h = (h ^ v) * 1099511628211ull;
  return h;
}

/// The names an expression brings, each with its shape, inside the definition of a group of N
/// values: connections, biases, and the implicit groups of expression sources (Name_in).
template <class E, std::size_t N>
constexpr auto uses_of() {
  if constexpr (E::kind == node_kind::dense || E::kind == node_kind::diagonal || E::kind == node_kind::identity ||
                E::kind == node_kind::sparse) {
    using S = typename E::source;
    constexpr std::size_t rows = E::size != 0 ? E::size : N;
    constexpr bool sparse = E::kind == node_kind::sparse;
    constexpr std::size_t cols = [] {
      if constexpr (sparse) return sizeof(E::links.links) / sizeof(link);
      else if constexpr (E::kind == node_kind::dense) return S::size;
      else return std::size_t(1);
    }();
    constexpr std::size_t mask = [] {
      if constexpr (sparse) return mask_number<E::links>();
      else return std::size_t(0);
    }();
    constexpr auto own = hana::make_tuple(hana::type_c<use_t<E::name, E::kind, rows, cols, mask, !is_direct_source<S>>>);
    if constexpr (is_direct_source<S>)
      return own;
    else
      return hana::concat(hana::append(own, hana::type_c<use_t<source_group_name<E::name>, node_kind::group, S::size, 0>>),
                          uses_of<S, S::size>());
  } else if constexpr (E::kind == node_kind::bias) {
    return hana::make_tuple(hana::type_c<use_t<E::name, node_kind::bias, E::size != 0 ? E::size : N, 1>>);
  } else if constexpr (E::kind == node_kind::binary) {
    return hana::concat(uses_of<typename E::left_type, N>(), uses_of<typename E::right_type, N>());
  } else if constexpr (E::kind == node_kind::activation) {
    return uses_of<typename E::arg_type, N>();
  } else {
    return hana::make_tuple();
  }
}

/// How two uses of one name conflict.
enum class name_conflict {
  none,            ///< no two uses conflict
  twice,           ///< two objects that cannot share a name (groups, identity connections, kinds that differ)
  shape,           ///< a shared parameter used with another shape (or another sparse mask)
  shared_source,   ///< a shared connection that reads an expression
};

/// The first use i that conflicts with an earlier use j of its name, and how. Connections of one
/// kind and biases share their parameters when the shapes agree.
struct first_conflict_t {
  std::size_t i = 0, j = 0;
  name_conflict kind = name_conflict::none;
};
template <std::size_t K>
constexpr first_conflict_t first_conflict(const std::array<use_info, K>& uses) {
  for (std::size_t i = 0; i < K; ++i)
    for (std::size_t j = 0; j < i; ++j) {
      const auto& a = uses[j];
      const auto& b = uses[i];
      if (a.name != b.name) continue;
      const bool shareable = a.kind == b.kind && (a.kind == node_kind::dense || a.kind == node_kind::diagonal ||
                                                  a.kind == node_kind::sparse || a.kind == node_kind::bias);
      if (!shareable) return {i, j, name_conflict::twice};
      if (a.rows != b.rows || a.cols != b.cols || a.mask != b.mask) return {i, j, name_conflict::shape};
      if (a.expression_source || b.expression_source) return {i, j, name_conflict::shared_source};
    }
  return {K, K, name_conflict::none};
}

template <class Xs>
constexpr auto unique_types(Xs xs) {
  return hana::fold_left(xs, hana::make_tuple(), [](auto acc, auto t) {
    if constexpr (decltype(hana::contains(acc, t))::value) {
      return acc;
    } else {
      return hana::append(acc, t);
    }
  });
}

template <class C>
constexpr auto flatten_component(const C& c) {
  if constexpr (Cell<C>) {
    return hana::flatten(hana::transform(c.definitions(), [](const auto& x) {
      return flatten_component(x);
    }));
  } else if constexpr (hana::is_a<hana::tuple_tag, C>) {
    return hana::flatten(hana::transform(c, [](const auto& x) { return flatten_component(x); }));
  } else {
    static_assert(is_definition<C> || is_output<C> || is_group<C>,
                  "loopgrad: network<>() takes definitions (h = expr), outputs (output(y = expr, "
                  "loss)), inputs and cells; one argument is none of these");
    return hana::make_tuple(c);
  }
}

template <class C>
struct component_traits;
template <class G, class E>
struct component_traits<definition<G, E>> {
  using defined = G;
  using expr = E;
};
template <class G, class E, class L>
struct component_traits<output_t<definition<G, E>, L>> {
  using defined = G;
  using expr = E;
};

/// The index of the first entry equal to an earlier one, or N.
template <class T, std::size_t N>
constexpr std::size_t first_repeat(const std::array<T, N>& xs) {
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (xs[i] == xs[j]) return i;
  return N;
}

template <class Names>
constexpr std::size_t first_duplicate() {
  return first_repeat(hana::unpack(Names{}, [](auto... t) {
    return std::array<std::string_view, sizeof...(t)>{decltype(t)::type::value...};
  }));
}

/// What is wrong with a network's components: hana::type_c of the error type naming it, or of void.
template <class Components>
constexpr auto diagnose() {
  constexpr Components cs{};
  // The groups defined, in order (inputs listed to fix their order define nothing).
  constexpr auto defined =
      hana::transform(hana::remove_if(cs, [](auto c) { return hana::bool_c<is_group<decltype(c)>>; }),
                      [](auto c) { return hana::type_c<typename component_traits<decltype(c)>::defined>; });
  // The first group defined twice (the same name and size; one name on two sizes is a name used
  // twice, below).
  constexpr std::size_t twice = first_repeat(hana::unpack(decltype(defined){}, [](auto... t) {
    return std::array<std::pair<std::string_view, std::size_t>, sizeof...(t)>{
        std::pair{decltype(t)::type::name.view(), decltype(t)::type::size}...};
  }));
  // Every group read is either an input or defined.
  constexpr auto reads = unique_types(hana::flatten(hana::transform(cs, [](auto c) {
    using C = decltype(c);
    if constexpr (is_group<C>) {
      return hana::make_tuple(hana::type_c<C>);
    } else {
      return reads_of<typename component_traits<C>::expr>();
    }
  })));
  constexpr auto undefined = hana::filter(reads, [](auto t) {
    using G = typename decltype(t)::type;
    return hana::bool_c<G::role == group_role::neuron && !decltype(hana::contains(defined, t))::value>;
  });
  // Names are unique over groups (each group once) and connections and biases, except that
  // connections of one kind and biases with one name share one parameter group, which needs one
  // shape. The first mistake found, in this order, is the one reported.
  constexpr auto groups = unique_types(hana::concat(defined, reads));
  constexpr auto group_uses = hana::transform(groups, [](auto t) {
    using G = typename decltype(t)::type;
    return hana::type_c<use_t<G::name, node_kind::group, G::size, 0>>;
  });
  constexpr auto expression_uses = hana::flatten(hana::transform(cs, [](auto c) {
    using C = decltype(c);
    if constexpr (is_group<C>) {
      return hana::make_tuple();
    } else {
      return uses_of<typename component_traits<C>::expr, component_traits<C>::defined::size>();
    }
  }));
  using Uses = std::remove_cv_t<decltype(hana::concat(group_uses, expression_uses))>;
  constexpr auto conflict = first_conflict(hana::unpack(Uses{}, [](auto... u) {
    return std::array<use_info, sizeof...(u)>{info_of(u)...};
  }));
  if constexpr (twice < decltype(hana::length(defined))::value) {
    using G = typename std::remove_cvref_t<decltype(hana::at_c<twice>(defined))>::type;
    return hana::type_c<error::a_neuron_group_is_defined_twice<G::name>>;
  } else if constexpr (!hana::is_empty(undefined)) {
    using G = typename std::remove_cvref_t<decltype(hana::front(undefined))>::type;
    return hana::type_c<error::a_neuron_group_is_read_but_never_defined<G::name>>;
  } else if constexpr (conflict.kind != name_conflict::none) {
    using A = typename std::remove_cvref_t<decltype(hana::at_c<conflict.j>(Uses{}))>::type;
    using B = typename std::remove_cvref_t<decltype(hana::at_c<conflict.i>(Uses{}))>::type;
    constexpr auto a = info_of(hana::type_c<A>);
    constexpr auto b = info_of(hana::type_c<B>);
    if constexpr (conflict.kind == name_conflict::twice)
      return hana::type_c<error::this_name_is_used_twice<B::fixed>>;
    else if constexpr (conflict.kind == name_conflict::shape)
      return hana::type_c<error::a_shared_parameter_is_used_with_another_shape<B::fixed, a.rows, a.cols, b.rows, b.cols>>;
    else
      return hana::type_c<error::a_connection_that_shares_its_weights_reads_a_group_not_an_expression<B::fixed>>;
  } else {
    return hana::type_c<void>;
  }
}

}  // namespace detail

/// The function object behind `network<"name">`: called on the components, it checks them and returns the network.
template <fixed_string Name>
struct network_fn {
  /// The network of components cs (definitions, outputs, inputs, cells); a missing or repeated
  /// definition or name stops compilation here.
  template <class... Cs>
  constexpr auto operator()(const Cs&... cs) const {
    auto flat = hana::flatten(hana::make_tuple(detail::flatten_component(cs)...));
    using Flat = decltype(flat);
    using Problem = typename decltype(detail::diagnose<Flat>())::type;
    // A wrong network stops here: the type in the error names the mistake and the group or name
    // (diagnostics.hpp).
    if constexpr (!std::is_void_v<Problem>) static_assert(sizeof(Problem) == 0);  // loopgrad: see the type in this error; define every group read (h = expr) once, and give every object its own name
    // A network without an output would train nothing: every gradient would be zero.
    constexpr bool has_output = decltype(hana::any_of(Flat{}, [](auto c) { return hana::bool_c<is_output<decltype(c)>>; }))::value;
    if constexpr (std::is_void_v<Problem> && !has_output)
      static_assert(sizeof(error::a_network_needs_an_output_with_a_loss_as_in_output_y_equals_expr_comma_mse<Name>) == 0);  // loopgrad: see the type in this error; add output(y = expr, mse) or another loss
    return network_t<Name, Flat>{flat};
  }
};

/// network<"name">(components...): the whole network. Components are definitions (h = expr),
/// outputs (output(y = expr, loss)), inputs (to fix their order) and cells from loopgrad/cells.
template <fixed_string Name>
inline constexpr network_fn<Name> network{};

}  // namespace loopgrad::dsl
