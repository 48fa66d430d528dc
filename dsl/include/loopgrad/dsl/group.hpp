#pragma once
// Neuron groups, inputs, delay() and definitions (h = expr).
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/node.hpp"
#include "loopgrad/dsl/diagnostics.hpp"

namespace loopgrad::dsl {

enum class group_role { input, neuron };

template <class Group, class Expr>
struct definition;

template <fixed_string Name, std::size_t N, group_role Role>
struct group_t : expression {
  static_assert(N > 0, "loopgrad: a neuron group or input needs a size of at least 1");
  static constexpr node_kind kind = node_kind::group;
  static constexpr std::size_t size = N;
  static constexpr auto name = Name;
  static constexpr group_role role = Role;
  static constexpr auto names() { return boost::hana::make_tuple(); }

  // `h = expr` defines neuron group h as expr. Sizes are checked here, at the user's line.
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

// input<"x", 3>: three values given by the user at every step.
template <fixed_string Name, std::size_t N>
inline constexpr group_t<Name, N, group_role::input> input{};

// neuron<"h", 16>: a group of 16 neurons, defined once in the network by `h = expr`.
template <fixed_string Name, std::size_t N>
inline constexpr group_t<Name, N, group_role::neuron> neuron{};

template <class G>
inline constexpr bool is_group = false;
template <fixed_string Name, std::size_t N, group_role Role>
inline constexpr bool is_group<group_t<Name, N, Role>> = true;

template <class G>
struct delayed_t : expression {
  static constexpr node_kind kind = node_kind::delayed;
  static constexpr std::size_t size = G::size;
  using group = G;
  static constexpr auto names() { return boost::hana::make_tuple(); }
};

// delay(h): the value h had at the previous step (zero before the first step). Every recurrence
// goes through a delay; it is what makes h a recurrent state.
template <Expression G>
constexpr auto delay(const G&) {
  if constexpr (!is_group<G>) {
    static_assert(always_false<G>,
                  "loopgrad: delay() takes a neuron group (delay(h)); to delay an expression, "
                  "define it as a neuron group first");
    return delayed_t<group_t<"?", 1, group_role::neuron>>{};
  } else {
    // delay(x) of an input x stops here; the type in the error names x.
    if constexpr (G::role != group_role::neuron)
      static_assert(sizeof(error::delay_of_an_input_inputs_keep_no_previous_value<G::name>) == 0);  // loopgrad: see the type in this error; feed the input into a neuron group and delay that group
    return delayed_t<G>{};
  }
}

template <class Group, class Expr>
struct definition {
  using group = Group;
  using expr_type = Expr;
  Expr expr;
};

template <class T>
inline constexpr bool is_definition = false;
template <class G, class E>
inline constexpr bool is_definition<definition<G, E>> = true;

}  // namespace loopgrad::dsl
