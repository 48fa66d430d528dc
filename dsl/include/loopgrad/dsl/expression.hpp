#pragma once
// Element-wise arithmetic (+, -, *), numbers and activations inside a group's expression.

#include "loopgrad/dsl/node.hpp"
#include "loopgrad/dsl/diagnostics.hpp"
#include "loopgrad/ir/activation.hpp"

namespace loopgrad::dsl {

/// A number in an expression (`2 * h`, `1 - z`); it takes the size of the other operand.
struct constant_t : expression {
  static constexpr node_kind kind = node_kind::constant;  ///< the node's kind, for lowering to the IR
  static constexpr std::size_t size = 0;  ///< 0: a number fits any size
  double value = 0;  ///< the number
};

/// The element-wise operations between two expressions.
enum class binary_op { add, sub, mul, div };

/// `a + b`, `a - b` or `a * b`, element by element; both operands have one size (or one is a number).
template <binary_op Op, class L, class R>
struct binary_t : expression {
  static constexpr node_kind kind = node_kind::binary;  ///< the node's kind, for lowering to the IR
  static constexpr binary_op op = Op;  ///< which of +, -, *
  static constexpr std::size_t size = combined_size<L::size, R::size>();  ///< the operands' size
  using left_type = L;  ///< the left operand's node type
  using right_type = R;  ///< the right operand's node type
  L left;  ///< the left operand
  R right;  ///< the right operand
};

/// An activation applied element-wise to an expression: tanh(e), sigmoid(e), relu(e).
template <ir::Activation A, class E>
struct activation_t : expression {
  static constexpr node_kind kind = node_kind::activation;  ///< the node's kind, for lowering to the IR
  static constexpr ir::Activation activation = A;  ///< which activation
  static constexpr std::size_t size = E::size;  ///< the argument's size
  using arg_type = E;  ///< the argument's node type
  E arg;  ///< the argument
};

namespace detail {
template <class E>
constexpr auto as_expression(const E& e) {
  if constexpr (Expression<E>) {
    return e;
  } else {
    static_assert(std::is_arithmetic_v<E>,
                  "loopgrad: an operand of +, - or * is neither a DSL expression nor a number");
    return constant_t{{}, static_cast<double>(e)};
  }
}
template <binary_op Op, class A, class B>
constexpr auto make_binary(const A& a, const B& b) {
  auto l = as_expression(a);
  auto r = as_expression(b);
  using L = decltype(l);
  using R = decltype(r);
  // Operands of different sizes stop here, at the user's line: the type in the error names an
  // object of each operand and the two sizes (diagnostics.hpp).
  if constexpr (sizes_differ<L::size, R::size>)
    static_assert(sizeof(error::size_mismatch_the_operands_of_an_element_wise_operation_differ_in_size<leaf_name<L>(), L::size, leaf_name<R>(), R::size>) == 0);  // loopgrad: see the type in this error; +, - and * need operands of one size
  return binary_t<Op, L, R>{{}, l, r};
}
template <class A, class B>
concept Operands = (Expression<A> && (Expression<B> || std::is_arithmetic_v<B>)) ||
                   (std::is_arithmetic_v<A> && Expression<B>);
}  // namespace detail

/// a + b, element by element (a number is added to every element).
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator+(const A& a, const B& b) {
  return detail::make_binary<binary_op::add>(a, b);
}
/// a - b, element by element.
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator-(const A& a, const B& b) {
  return detail::make_binary<binary_op::sub>(a, b);
}
/// a / b, element by element (`1.0 / (1.0 + a)`); b must stay away from zero.
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator/(const A& a, const B& b) {
  return detail::make_binary<binary_op::div>(a, b);
}
/// a * b, element by element (a gate: `z * delay(h)`; a number scales every element).
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator*(const A& a, const B& b) {
  return detail::make_binary<binary_op::mul>(a, b);
}
/// -e, element by element.
template <Expression E>
constexpr auto operator-(const E& e) {
  return detail::make_binary<binary_op::mul>(-1.0, e);
}

/// tanh(e), element by element.
template <Expression E>
constexpr auto tanh(const E& e) {
  return activation_t<ir::Activation::tanh, E>{{}, e};
}
/// sigmoid(e) = 1 / (1 + exp(-e)), element by element.
template <Expression E>
constexpr auto sigmoid(const E& e) {
  return activation_t<ir::Activation::sigmoid, E>{{}, e};
}
/// relu(e) = max(e, 0), element by element.
template <Expression E>
constexpr auto relu(const E& e) {
  return activation_t<ir::Activation::relu, E>{{}, e};
}
/// linear(e): the identity activation, for an explicit "no nonlinearity here".
template <Expression E>
constexpr auto linear(const E& e) {
  return activation_t<ir::Activation::identity, E>{{}, e};
}
/// exp(e), element by element.
template <Expression E>
constexpr auto exp(const E& e) {
  return activation_t<ir::Activation::exp, E>{{}, e};
}
/// log(e), element by element; e must stay positive (log of a softplus, of 1 + square(e), ...).
template <Expression E>
constexpr auto log(const E& e) {
  return activation_t<ir::Activation::log, E>{{}, e};
}
/// softplus(e) = log(1 + exp(e)), element by element (e itself where e > 20, as in PyTorch).
template <Expression E>
constexpr auto softplus(const E& e) {
  return activation_t<ir::Activation::softplus, E>{{}, e};
}
/// sqrt(e), element by element; e must stay positive.
template <Expression E>
constexpr auto sqrt(const E& e) {
  return activation_t<ir::Activation::sqrt, E>{{}, e};
}
/// silu(e) = e * sigmoid(e) (swish), element by element.
template <Expression E>
constexpr auto silu(const E& e) {
  return activation_t<ir::Activation::silu, E>{{}, e};
}
/// square(e) = e * e, element by element.
template <Expression E>
constexpr auto square(const E& e) {
  return activation_t<ir::Activation::square, E>{{}, e};
}
/// cos(e), element by element (the LRU's rotation in real form).
template <Expression E>
constexpr auto cos(const E& e) {
  return activation_t<ir::Activation::cos, E>{{}, e};
}
/// sin(e), element by element.
template <Expression E>
constexpr auto sin(const E& e) {
  return activation_t<ir::Activation::sin, E>{{}, e};
}

}  // namespace loopgrad::dsl
