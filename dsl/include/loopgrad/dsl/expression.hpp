#pragma once
// Element-wise arithmetic (+, -, *), numbers and activations inside a group's expression.
#include <boost/hana/concat.hpp>
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl/node.hpp"
#include "loopgrad/dsl/diagnostics.hpp"
#include "loopgrad/ir/activation.hpp"

namespace loopgrad::dsl {

struct constant_t : expression {
  static constexpr node_kind kind = node_kind::constant;
  static constexpr std::size_t size = 0;
  double value = 0;
  static constexpr auto names() { return boost::hana::make_tuple(); }
};

enum class binary_op { add, sub, mul };

template <binary_op Op, class L, class R>
struct binary_t : expression {
  static constexpr node_kind kind = node_kind::binary;
  static constexpr binary_op op = Op;
  static constexpr std::size_t size = combined_size<L::size, R::size>();
  using left_type = L;
  using right_type = R;
  L left;
  R right;
  static constexpr auto names() { return boost::hana::concat(L::names(), R::names()); }
};

template <ir::Activation A, class E>
struct activation_t : expression {
  static constexpr node_kind kind = node_kind::activation;
  static constexpr ir::Activation activation = A;
  static constexpr std::size_t size = E::size;
  using arg_type = E;
  E arg;
  static constexpr auto names() { return E::names(); }
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

template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator+(const A& a, const B& b) {
  return detail::make_binary<binary_op::add>(a, b);
}
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator-(const A& a, const B& b) {
  return detail::make_binary<binary_op::sub>(a, b);
}
template <class A, class B>
  requires detail::Operands<A, B>
constexpr auto operator*(const A& a, const B& b) {
  return detail::make_binary<binary_op::mul>(a, b);
}
template <Expression E>
constexpr auto operator-(const E& e) {
  return detail::make_binary<binary_op::mul>(-1.0, e);
}

template <Expression E>
constexpr auto tanh(const E& e) {
  return activation_t<ir::Activation::tanh, E>{{}, e};
}
template <Expression E>
constexpr auto sigmoid(const E& e) {
  return activation_t<ir::Activation::sigmoid, E>{{}, e};
}
template <Expression E>
constexpr auto relu(const E& e) {
  return activation_t<ir::Activation::relu, E>{{}, e};
}
// linear(e): the identity activation, for an explicit "no nonlinearity here".
template <Expression E>
constexpr auto linear(const E& e) {
  return activation_t<ir::Activation::identity, E>{{}, e};
}

}  // namespace loopgrad::dsl
