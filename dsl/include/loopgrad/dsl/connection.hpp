#pragma once
// Connections (dense, diagonal, identity, sparse) and biases. A connection reads a neuron group,
// an input or delay(group); its output has the size of the group whose expression holds it.
#include <boost/hana/tuple.hpp>
#include <cstddef>

#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/dsl/node.hpp"

namespace loopgrad::dsl {

template <class S>
inline constexpr bool is_connection_source = is_group<S>;
template <class G>
inline constexpr bool is_connection_source<delayed_t<G>> = true;

template <class S>
constexpr void check_connection_source() {
  static_assert(is_connection_source<S>,
                "loopgrad: a connection reads a neuron group, an input or delay(group); to "
                "connect from an expression, define it as a neuron group first");
}

// One entry of a sparse mask: the connection carries source neuron `from` into target neuron
// `to`, with its own weight.
struct link {
  std::size_t to;
  std::size_t from;
};

template <std::size_t K>
struct mask {
  link links[K];
};
template <class... L>
mask(L...) -> mask<sizeof...(L)>;

template <node_kind Kind, fixed_string Name, class Source, std::size_t Out>
struct connection_t : expression {
  static constexpr node_kind kind = Kind;
  static constexpr std::size_t size = Out;
  static constexpr auto name = Name;
  using source = Source;
  static constexpr auto names() { return boost::hana::make_tuple(boost::hana::type_c<name_t<Name>>); }
};

template <fixed_string Name, class Source, auto Mask>
struct sparse_t : expression {
  static constexpr node_kind kind = node_kind::sparse;
  static constexpr std::size_t size = 0;
  static constexpr auto name = Name;
  static constexpr auto links = Mask;
  using source = Source;
  static constexpr auto names() { return boost::hana::make_tuple(boost::hana::type_c<name_t<Name>>); }
  static constexpr std::size_t max_to() {
    std::size_t m = 0;
    for (const auto& l : Mask.links) m = l.to > m ? l.to : m;
    return m;
  }
};

template <fixed_string Name, std::size_t N>
struct bias_t : expression {
  static constexpr node_kind kind = node_kind::bias;
  static constexpr std::size_t size = N;
  static constexpr auto name = Name;
  static constexpr auto names() { return boost::hana::make_tuple(boost::hana::type_c<name_t<Name>>); }
};

template <fixed_string Name, std::size_t Out>
struct dense_fn {
  template <Expression S>
  constexpr auto operator()(const S&) const {
    check_connection_source<S>();
    return connection_t<node_kind::dense, Name, S, Out>{};
  }
};
template <fixed_string Name>
struct diagonal_fn {
  template <Expression S>
  constexpr auto operator()(const S&) const {
    check_connection_source<S>();
    return connection_t<node_kind::diagonal, Name, S, S::size>{};
  }
};
template <fixed_string Name>
struct identity_fn {
  template <Expression S>
  constexpr auto operator()(const S&) const {
    check_connection_source<S>();
    return connection_t<node_kind::identity, Name, S, S::size>{};
  }
};
template <fixed_string Name, auto Mask>
struct sparse_fn {
  template <Expression S>
  constexpr auto operator()(const S&) const {
    check_connection_source<S>();
    static_assert(sizeof(Mask.links) > 0, "loopgrad: a sparse mask needs at least one link");
    constexpr std::size_t largest_from = [] {
      std::size_t m = 0;
      for (const auto& l : Mask.links) m = l.from > m ? l.from : m;
      return m;
    }();
    // An entry {to, from} with `from` not below the source's size stops here; the type in the
    // error names the connection, the largest `from` and the source's size.
    if constexpr (largest_from >= S::size)
      static_assert(sizeof(error::a_sparse_mask_entry_is_out_of_range_its_from_must_be_below_the_source_size<Name, largest_from, S::size>) == 0);  // loopgrad: see the type in this error
    constexpr bool unique = [] {
      constexpr std::size_t k = sizeof(Mask.links) / sizeof(link);
      for (std::size_t i = 0; i < k; ++i)
        for (std::size_t j = i + 1; j < k; ++j)
          if (Mask.links[i].to == Mask.links[j].to && Mask.links[i].from == Mask.links[j].from)
            return false;
      return true;
    }();
    static_assert(unique, "loopgrad: a sparse mask lists the same {to, from} link twice");
    return sparse_t<Name, S, Mask>{};
  }
};

// dense<"W">(x): a full weight matrix W (target size x source size). dense<"W", 8>(x) fixes the
// output size where the context does not.
template <fixed_string Name, std::size_t Out = 0>
inline constexpr dense_fn<Name, Out> dense{};

// diagonal<"w">(x): one weight per neuron, y_i = w_i x_i; source and target sizes are equal.
template <fixed_string Name>
inline constexpr diagonal_fn<Name> diagonal{};

// identity<"skip">(x): y = x, no parameters; a named skip or copy connection.
template <fixed_string Name>
inline constexpr identity_fn<Name> identity{};

// sparse<"S", mask{link{0, 1}, link{2, 0}}>(x): individual neuron-to-neuron connections,
// y_to += w_e x_from for each link e, one weight per link.
template <fixed_string Name, auto Mask>
inline constexpr sparse_fn<Name, Mask> sparse{};

// bias<"b">: a trainable vector with the size of the group it is added to.
template <fixed_string Name>
inline constexpr bias_t<Name, 0> bias{};

}  // namespace loopgrad::dsl
