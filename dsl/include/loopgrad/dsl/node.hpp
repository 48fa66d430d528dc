#pragma once
// What every DSL expression node has in common. An expression is a plain (usually empty) struct
// deriving from `expression`, with a compile-time `kind` and `size` (0: not yet known, fixed by the
// group the expression is assigned to).
#include <concepts>
#include <cstddef>
#include <type_traits>

namespace loopgrad::dsl {

/// The kind of an expression node, which lowering to the IR dispatches on.
enum class node_kind {
  group,         ///< a neuron group or input read at the current step
  delayed,       ///< delay(g): the previous step's value of neuron group g
  dense,         ///< dense<"W">(src)
  diagonal,      ///< diagonal<"w">(src)
  identity,      ///< identity<"skip">(src)
  sparse,        ///< sparse<"S", mask{...}>(src)
  bias,          ///< bias<"b">
  constant,      ///< a number in an expression
  binary,        ///< a + b, a - b, a * b, a / b
  activation,    ///< tanh, sigmoid, relu, linear, exp, log, softplus, sqrt, silu, square, cos, sin of e
};

/// The base of every expression node type (a group, delay(), a connection, a bias, a number,
/// an operation, an activation): what the Expression concept recognises.
struct expression {};

/// E is a DSL expression (derives from `expression`).
template <class E>
concept Expression = std::derived_from<std::remove_cvref_t<E>, expression>;

/// false, but dependent on its arguments: a static_assert in a discarded branch fires only when
/// that branch is instantiated.
template <class...>
inline constexpr bool always_false = false;

}  // namespace loopgrad::dsl
