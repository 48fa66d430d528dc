#pragma once
// network<"name">(components...): gathers definitions, outputs, declared inputs and cells into one
// compile-time network and checks it as a whole: names unique, every read group defined, every
// output with a loss.
#include <array>
#include <boost/hana/append.hpp>
#include <boost/hana/at.hpp>
#include <boost/hana/concat.hpp>
#include <boost/hana/contains.hpp>
#include <boost/hana/core/is_a.hpp>
#include <boost/hana/flatten.hpp>
#include <boost/hana/fold_left.hpp>
#include <boost/hana/for_each.hpp>
#include <boost/hana/length.hpp>
#include <boost/hana/transform.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>
#include <boost/hana/unpack.hpp>
#include <cstddef>
#include <string_view>
#include <type_traits>

#include "loopgrad/dsl/connection.hpp"
#include "loopgrad/dsl/expression.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/dsl/output.hpp"

namespace loopgrad::dsl {

namespace hana = boost::hana;

template <class C>
concept Cell = requires(const C& c) { c.definitions(); };

template <fixed_string Name, class Components>
struct network_t {
  static constexpr auto name = Name;
  Components components;  // hana::tuple of definitions, outputs and inputs, in declaration order
};

// Diagnostics: each names the offending object in its template argument, which the compiler
// prints on the line above the sentence.
template <class Name>
constexpr void name_used_twice() {
  static_assert(always_false<Name>,
                "loopgrad: name used twice: every neuron group, input, output, connection and "
                "bias of a network needs its own name (the name is in name_used_twice<...> above)");
}
template <class Group>
constexpr void neuron_read_but_never_defined() {
  static_assert(always_false<Group>,
                "loopgrad: a neuron group is read but never defined: add `group = expression` "
                "to the network (the group is in neuron_read_but_never_defined<...> above)");
}
template <class Group>
constexpr void neuron_defined_twice() {
  static_assert(always_false<Group>,
                "loopgrad: a neuron group is defined twice: give each definition its own group "
                "(the group is in neuron_defined_twice<...> above)");
}
template <class Group>
constexpr void output_without_loss() {
  static_assert(always_false<Group>,
                "loopgrad: an output has no loss: write output(y = expr, mse) or "
                "output(y = expr, softmax_cross_entropy) (the output is in "
                "output_without_loss<...> above)");
}

namespace detail {

// The groups an expression reads, as a hana tuple of hana::type.
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
  static constexpr bool has_loss = true;
};
template <class G, class E, class L>
struct component_traits<output_t<definition<G, E>, L>> {
  using defined = G;
  using expr = E;
  static constexpr bool has_loss = !std::is_same_v<L, no_loss>;
};

template <class Names>
constexpr std::size_t first_duplicate() {
  constexpr auto views = hana::unpack(Names{}, [](auto... t) {
    return std::array<std::string_view, sizeof...(t)>{decltype(t)::type::value...};
  });
  for (std::size_t i = 0; i < views.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (views[i] == views[j]) return i;
  return views.size();
}

template <class Components>
constexpr bool check_network() {
  constexpr Components cs{};
  // Outputs need a loss; no group is defined twice.
  constexpr auto defined = hana::fold_left(cs, hana::make_tuple(), [](auto acc, auto c) {
    using C = decltype(c);
    if constexpr (is_group<C>) {
      return acc;
    } else {
      using T = component_traits<C>;
      if constexpr (!T::has_loss) output_without_loss<typename T::defined>();
      if constexpr (decltype(hana::contains(acc, hana::type_c<typename T::defined>))::value)
        neuron_defined_twice<typename T::defined>();
      return hana::append(acc, hana::type_c<typename T::defined>);
    }
  });
  // Every group read is either an input or defined.
  constexpr auto reads = unique_types(hana::flatten(hana::transform(cs, [](auto c) {
    using C = decltype(c);
    if constexpr (is_group<C>) {
      return hana::make_tuple(hana::type_c<C>);
    } else {
      return reads_of<typename component_traits<C>::expr>();
    }
  })));
  hana::for_each(reads, [&](auto t) {
    using G = typename decltype(t)::type;
    if constexpr (G::role == group_role::neuron &&
                  !decltype(hana::contains(defined, t))::value)
      neuron_read_but_never_defined<G>();
  });
  // Names are unique over groups (each group once) and parameterised or named connections.
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
  if constexpr (dup < decltype(hana::length(Names{}))::value)
    name_used_twice<typename std::remove_cvref_t<decltype(hana::at_c<dup>(Names{}))>::type>();
  return true;
}

}  // namespace detail

template <fixed_string Name>
struct network_fn {
  template <class... Cs>
  constexpr auto operator()(const Cs&... cs) const {
    auto flat = hana::flatten(hana::make_tuple(detail::flatten_component(cs)...));
    using Flat = decltype(flat);
    static_assert(detail::check_network<Flat>());
    return network_t<Name, Flat>{flat};
  }
};

// network<"name">(components...): the whole network. Components are definitions (h = expr),
// outputs (output(y = expr, loss)), inputs (to fix their order) and cells from loopgrad/cells.
template <fixed_string Name>
inline constexpr network_fn<Name> network{};

}  // namespace loopgrad::dsl
