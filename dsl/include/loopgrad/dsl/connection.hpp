#pragma once
// Connections (dense, diagonal, identity, sparse) and biases. A connection reads a neuron group,
// an input, delay(group) or an element-wise expression of them (`dense<"W">(g * s)`, lowered to an
// implicit neuron group named after the connection, W_in); its output has the size of the group
// whose expression holds it.
#include <cstddef>

#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/dsl/node.hpp"

namespace loopgrad::dsl {

/// Whether S is read by a connection directly (a group, an input or delay(group)); any other
/// source is an expression that lowering defines as an implicit group first.
template <class S>
inline constexpr bool is_direct_source = is_group<S>;
/// delay(group) is read directly.
template <class G, std::size_t K>
inline constexpr bool is_direct_source<delayed_t<G, K>> = true;

/// Stops compilation with a sentence unless S may be a connection's source: an expression with a
/// size of its own (one that reads a group, an input or delay(group)).
template <class S>
constexpr void check_connection_source() {
  static_assert(S::size > 0,
                "loopgrad: a connection reads an expression that has a size of its own (one that reads a "
                "neuron group, an input or delay(group)); this one holds only numbers and biases, so its "
                "size is unknown: use param<\"name\", n> for a vector of n values");
}

/// The name of the implicit group that holds a connection's source expression: Name_in.
template <fixed_string Name>
inline constexpr auto source_group_name = join<Name, "_in">();

/// One entry of a sparse mask: the connection carries source neuron `from` into target neuron
/// `to`, with its own weight.
struct link {
  std::size_t to;  ///< the target neuron's index in the group whose expression holds the connection
  std::size_t from;  ///< the source neuron's index in the group the connection reads
};

/// The entries of a sparse connection: `mask{link{0, 1}, link{1, 0}}` (K entries, each its own weight).
template <std::size_t K>
struct mask {
  link links[K];  ///< the entries, in the order of their weights in the parameter vector
};
/// `mask{link{...}, ...}` deduces the number of entries.
template <class... L>
mask(L...) -> mask<sizeof...(L)>;

/// A dense, diagonal or identity connection named Name reading Source, with Out outputs (what
/// dense<>, diag<> and identity<> return).
template <node_kind Kind, fixed_string Name, class Source, std::size_t Out>
struct connection_t : expression {
  static constexpr node_kind kind = Kind;  ///< dense, diagonal or identity
  static constexpr std::size_t size = Out;  ///< the number of outputs
  static constexpr auto name = Name;  ///< the connection's (and its weights') name
  using source = Source;  ///< the node type it reads: a group, delay(group) or an expression
  Source from{};  ///< the source itself (an expression source holds its numbers)
};

/// A sparse connection named Name reading Source, one weight per entry of Mask (what sparse<> returns).
template <fixed_string Name, class Source, auto Mask>
struct sparse_t : expression {
  static constexpr node_kind kind = node_kind::sparse;  ///< the node's kind, for lowering to the IR
  static constexpr std::size_t size = 0;  ///< 0: it takes the size of the group whose expression holds it
  static constexpr auto name = Name;  ///< the connection's (and its weights') name
  static constexpr auto links = Mask;  ///< the mask
  using source = Source;  ///< the node type it reads: a group, delay(group) or an expression
  Source from{};  ///< the source itself (an expression source holds its numbers)
  /// The largest target index in the mask.
  static constexpr std::size_t max_to() {
    std::size_t m = 0;
    for (const auto& l : Mask.links) m = l.to > m ? l.to : m;
    return m;
  }
};

/// A bias named Name of N values, added in an expression (`bias<"b">`).
template <fixed_string Name, std::size_t N>
struct bias_t : expression {
  static constexpr node_kind kind = node_kind::bias;  ///< the node's kind, for lowering to the IR
  static constexpr std::size_t size = N;  ///< the number of values
  static constexpr auto name = Name;  ///< the bias's name
};

/// The function object behind `dense<"W", n>`: called on a source, it returns the connection.
template <fixed_string Name, std::size_t Out>
struct dense_fn {
  /// The connection reading source S (a group, an input, delay(group) or an expression of them).
  template <Expression S>
  constexpr auto operator()(const S& source) const {
    check_connection_source<S>();
    return connection_t<node_kind::dense, Name, S, Out>{{}, source};
  }
};
/// The function object behind `diagonal<"w">`: called on a source, it returns the connection.
template <fixed_string Name>
struct diagonal_fn {
  /// The connection reading source S (a group, an input, delay(group) or an expression of them).
  template <Expression S>
  constexpr auto operator()(const S& source) const {
    check_connection_source<S>();
    return connection_t<node_kind::diagonal, Name, S, S::size>{{}, source};
  }
};
/// The function object behind `identity<>`: called on a source, it returns the connection.
template <fixed_string Name>
struct identity_fn {
  /// The connection reading source S (a group, an input, delay(group) or an expression of them).
  template <Expression S>
  constexpr auto operator()(const S& source) const {
    check_connection_source<S>();
    return connection_t<node_kind::identity, Name, S, S::size>{{}, source};
  }
};
/// The function object behind `sparse<"S", mask{...}>`: called on a source, it returns the connection.
template <fixed_string Name, auto Mask>
struct sparse_fn {
  /// The connection reading source S (a group, an input, delay(group) or an expression of them);
  /// checks every entry against S's size.
  template <Expression S>
  constexpr auto operator()(const S& source) const {
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
    return sparse_t<Name, S, Mask>{{}, source};
  }
};

/// dense<"W">(x): a full weight matrix W (target size x source size). dense<"W", 8>(x) fixes the
/// output size where the context does not. The source may be an expression (`dense<"W">(g * s)`):
/// it becomes an implicit neuron group W_in, which the report and Step name.
template <fixed_string Name, std::size_t Out = 0>
inline constexpr dense_fn<Name, Out> dense{};

/// diagonal<"w">(x): one weight per neuron, y_i = w_i x_i; source and target sizes are equal.
template <fixed_string Name>
inline constexpr diagonal_fn<Name> diagonal{};

/// identity<"skip">(x): y = x, no parameters; a named skip or copy connection.
template <fixed_string Name>
inline constexpr identity_fn<Name> identity{};

/// sparse<"S", mask{link{0, 1}, link{2, 0}}>(x): individual neuron-to-neuron connections,
/// y_to += w_e x_from for each link e, one weight per link.
template <fixed_string Name, auto Mask>
inline constexpr sparse_fn<Name, Mask> sparse{};

/// bias<"b">: a trainable vector with the size of the group it is added to.
template <fixed_string Name>
inline constexpr bias_t<Name, 0> bias{};

/// param<"nu", 16>: a trainable vector of 16 values, usable as a value anywhere in an element-wise
/// expression: a per-unit decay `h = param<"nu", 16> * delay(h) + ...`, a gate's scale inside an
/// activation. A bias with its size stated; the size is checked against the expression's.
template <fixed_string Name, std::size_t N>
inline constexpr bias_t<Name, N> param{};

}  // namespace loopgrad::dsl
