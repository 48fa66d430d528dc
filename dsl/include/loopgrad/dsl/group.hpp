#pragma once
// Neuron groups, inputs, delay() and definitions (h = expr).

#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/node.hpp"
#include "loopgrad/dsl/diagnostics.hpp"

namespace loopgrad::dsl {

/// Whether a group's values are given by the user (input) or computed by its definition (neuron).
enum class group_role { input, neuron };

template <class Group, class Expr>
struct definition;

/// A group of neurons or inputs, the type behind `neuron<"h", n>` and `input<"x", n>`.
template <fixed_string Name, std::size_t N, group_role Role>
struct group_t : expression {
  static_assert(N > 0, "loopgrad: a neuron group or input needs a size of at least 1");
  static constexpr node_kind kind = node_kind::group;  ///< the node's kind, for lowering to the IR
  static constexpr std::size_t size = N;  ///< the number of neurons or inputs
  static constexpr auto name = Name;  ///< the group's name
  static constexpr group_role role = Role;  ///< input or neuron

  /// `h = expr` defines neuron group h as expr. Sizes are checked here, at the user's line.
  template <Expression E>
  constexpr auto operator=(const E& e) const {
    static_assert(Role == group_role::neuron,
                  "loopgrad: an input cannot be assigned an expression: inputs are given every "
                  "step; declare a computed group with neuron<\"name\", size> instead");
    // A definition that breaks the size rule stops here; the type in the error names the mistake,
    // the group, the read or connection at fault and their sizes (diagnostics.hpp).
    using Problem = typename decltype(misfit<Name, N, E>())::type;
    if constexpr (!std::is_void_v<Problem>) static_assert(sizeof(Problem) == 0);  // loopgrad: see the type in this error; make the sizes equal, or connect groups of different sizes with dense<>
    return definition<group_t, E>{e};
  }
};

/// input<"x", 3>: three values given by the user at every step.
template <fixed_string Name, std::size_t N>
inline constexpr group_t<Name, N, group_role::input> input{};

/// neuron<"h", 16>: a group of 16 neurons, defined once in the network by `h = expr`.
template <fixed_string Name, std::size_t N>
inline constexpr group_t<Name, N, group_role::neuron> neuron{};

/// Whether G is a neuron group or an input.
template <class G>
inline constexpr bool is_group = false;
/// Groups and inputs are groups.
template <fixed_string Name, std::size_t N, group_role Role>
inline constexpr bool is_group<group_t<Name, N, Role>> = true;

/// `delay(h)`: the previous step's value of group G, or with K > 1 (`delay<K>(h)`) its value K steps
/// back (the type delay() returns).
template <class G, std::size_t K = 1>
struct delayed_t : expression {
  static constexpr node_kind kind = node_kind::delayed;  ///< the node's kind, for lowering to the IR
  static constexpr std::size_t size = G::size;  ///< the group's size
  static constexpr std::size_t steps = K;       ///< how many steps back
  using group = G;  ///< the delayed group's type
};

/// delay(h): the value h had at the previous step (zero before the first step). Every recurrence
/// goes through a delay; it is what makes h a recurrent state. delay<K>(h): the value h had K
/// steps back (zero before step K + 1); lowered to a chain of K - 1 copies, the neuron groups
/// h_delay1 ... h_delay(K-1) (h_delay1 = delay(h), h_delay2 = delay(h_delay1), ...), which the
/// analysis sees as element-wise recurrent states: no dense cost.
template <std::size_t K = 1, Expression G>
constexpr auto delay(const G&) {
  static_assert(K >= 1, "loopgrad: delay<K>(h) looks K >= 1 steps back; delay<0>(h) would be h itself, write h");
  if constexpr (!is_group<G>) {
    static_assert(always_false<G>,
                  "loopgrad: delay() takes a neuron group (delay(h)); to delay an expression, "
                  "define it as a neuron group first");
    return delayed_t<group_t<"?", 1, group_role::neuron>>{};
  } else {
    // delay(x) of an input x stops here; the type in the error names x.
    if constexpr (G::role != group_role::neuron)
      static_assert(sizeof(error::delay_of_an_input_inputs_keep_no_previous_value<G::name>) == 0);  // loopgrad: see the type in this error; feed the input into a neuron group and delay that group
    return delayed_t<G, K>{};
  }
}

/// `h = expr`: neuron group h defined by expression expr (what a group's operator= returns).
template <class Group, class Expr>
struct definition {
  using group = Group;  ///< the defined group's type
  using expr_type = Expr;  ///< the defining expression's node type
  Expr expr;  ///< the defining expression
};

/// Whether T is a definition (`h = expr`).
template <class T>
inline constexpr bool is_definition = false;
/// Definitions are definitions.
template <class G, class E>
inline constexpr bool is_definition<definition<G, E>> = true;

}  // namespace loopgrad::dsl
