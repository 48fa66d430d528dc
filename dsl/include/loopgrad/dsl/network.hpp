#pragma once
// network<"name">(components...): gathers definitions, outputs, declared inputs and cells into one
// compile-time network and checks it as a whole: names unique, every group read defined, and
// defined once (output() checks its loss, `h = expr` its sizes; diagnostics.hpp).
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
  // Names are unique over groups (each group once) and parameterised or named connections.
  // The first mistake found, in this order, is the one reported.
  constexpr auto groups = unique_types(hana::concat(defined, reads));
  constexpr auto group_names = hana::transform(groups, [](auto t) {
    return hana::type_c<name_t<decltype(t)::type::name>>;
  });
  constexpr auto connection_names = hana::flatten(hana::transform(cs, [](auto c) {
    using C = decltype(c);
    if constexpr (is_group<C>) {
      return hana::make_tuple();
    } else {
      return component_traits<C>::expr::names();
    }
  }));
  using Names = std::remove_cv_t<decltype(hana::concat(group_names, connection_names))>;
  constexpr std::size_t dup = first_duplicate<Names>();
  if constexpr (twice < decltype(hana::length(defined))::value) {
    using G = typename std::remove_cvref_t<decltype(hana::at_c<twice>(defined))>::type;
    return hana::type_c<error::a_neuron_group_is_defined_twice<G::name>>;
  } else if constexpr (!hana::is_empty(undefined)) {
    using G = typename std::remove_cvref_t<decltype(hana::front(undefined))>::type;
    return hana::type_c<error::a_neuron_group_is_read_but_never_defined<G::name>>;
  } else if constexpr (dup < decltype(hana::length(Names{}))::value) {
    using N = typename std::remove_cvref_t<decltype(hana::at_c<dup>(Names{}))>::type;
    return hana::type_c<error::this_name_is_used_twice<N::fixed>>;
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
