#pragma once
// The DSL's compile-time errors, and the size rule: every element-wise operation and every
// connection's output inside the definition of a group of size N has size N, checked where the
// user writes `h = expr` or combines two expressions.
//
// A mistake stops compilation with one error, at the user's line where the language allows (the
// network<>() call for mistakes of the whole network), whose first line names an incomplete type
// from loopgrad::dsl::error below: the type's name is the sentence and its arguments name the
// group, connection or name at fault and the sizes, e.g.
//   invalid application of 'sizeof' to incomplete type 'Problem' {aka
//   'loopgrad::dsl::error::size_mismatch_a_group_is_defined_from_a_read_or_connection_of_another_size<
//   fixed_string<2>{"h"}, 4, fixed_string<2>{"x"}, 3>'}
// The types are found by plain type computations (misfit<>, leaf_name<>), which cannot fail
// themselves, so no template backtrace and no second error follow.
#include <cstddef>
#include <type_traits>

#include "loopgrad/dsl/fixed_string.hpp"
#include "loopgrad/dsl/node.hpp"

namespace loopgrad::dsl {

namespace error {
/// h = expr, where expr reads a group (or delay of one) or has a connection whose size is not h's.
template <fixed_string Group, std::size_t GroupSize, fixed_string Read, std::size_t ReadSize>
struct size_mismatch_a_group_is_defined_from_a_read_or_connection_of_another_size;
/// diagonal<"w">(x) inside the definition of a group whose size is not x's.
template <fixed_string Group, std::size_t GroupSize, fixed_string Connection, std::size_t SourceSize>
struct size_mismatch_a_diagonal_connection_joins_groups_of_the_same_size;
/// sparse<"S", mask{...}>(x) inside the definition of group h with an entry {to, from}, to >= |h|.
template <fixed_string Group, std::size_t GroupSize, fixed_string Connection, std::size_t LargestTo>
struct a_sparse_mask_entry_is_out_of_range_its_to_must_be_below_the_group_size;
/// a + b, a - b or a * b with a and b of different sizes (named by a group or connection in each).
template <fixed_string Left, std::size_t LeftSize, fixed_string Right, std::size_t RightSize>
struct size_mismatch_the_operands_of_an_element_wise_operation_differ_in_size;
/// network<>(...) reads group h (h = expr elsewhere, delay(h)) but has no definition h = expr.
template <fixed_string Group>
struct a_neuron_group_is_read_but_never_defined;
/// network<>(h = a, ..., h = b): one group, two definitions.
template <fixed_string Group>
struct a_neuron_group_is_defined_twice;
/// Two groups, inputs, identity connections, or objects of different kinds (a group and a
/// connection, a dense and a diagonal connection) of one network share a name.
template <fixed_string Name>
struct this_name_is_used_twice;
/// Two connections (or biases) of one kind named Name share one parameter group, but its shape
/// would be FirstRows x FirstCols at the first and Rows x Cols at the second (a sparse
/// connection's columns are its links; two masks must be the same).
template <fixed_string Name, std::size_t FirstRows, std::size_t FirstCols, std::size_t Rows, std::size_t Cols>
struct a_shared_parameter_is_used_with_another_shape;
/// Two connections named Name share their weights and one of them reads an expression
/// (`dense<"W">(g * h)`): define the expression as a neuron group and connect from it.
template <fixed_string Name>
struct a_connection_that_shares_its_weights_reads_a_group_not_an_expression;
/// output(y = expr) with no loss.
template <fixed_string Output>
struct an_output_has_no_loss_give_it_one_as_in_output_y_equals_expr_comma_mse;
/// network<"name">(...) with no output(y = expr, loss): no parameter could ever get a gradient.
template <fixed_string Network>
struct a_network_needs_an_output_with_a_loss_as_in_output_y_equals_expr_comma_mse;
/// delay(x) of an input x: inputs keep no previous value.
template <fixed_string Input>
struct delay_of_an_input_inputs_keep_no_previous_value;
/// sparse<"S", mask{...}>(x) with an entry {to, from}, from >= |x|.
template <fixed_string Connection, std::size_t LargestFrom, std::size_t SourceSize>
struct a_sparse_mask_entry_is_out_of_range_its_from_must_be_below_the_source_size;
}  // namespace error

/// T carried as a value of a type computation (the result of misfit<> and diagnose<>).
template <class T>
struct type_is {
  using type = T;  ///< T
};

/// The name that identifies an expression in a diagnostic: its group, connection or bias, or for
/// a composite expression the first of its leaves.
template <class E>
constexpr auto leaf_name() {
  if constexpr (E::kind == node_kind::delayed) {
    return E::group::name;
  } else if constexpr (E::kind == node_kind::binary) {
    return leaf_name<typename E::left_type>();
  } else if constexpr (E::kind == node_kind::activation) {
    return leaf_name<typename E::arg_type>();
  } else if constexpr (E::kind == node_kind::constant) {
    return fixed_string("a number");
  } else {
    return E::name;
  }
}

/// Whether a + b of sizes A and B breaks the size rule (0: not yet known, fits anything).
template <std::size_t A, std::size_t B>
inline constexpr bool sizes_differ = A != 0 && B != 0 && A != B;

/// The size of a + b given the sizes of a and b (0: not yet known); a mismatch is reported where
/// the user combines them (detail::make_binary).
template <std::size_t A, std::size_t B>
constexpr std::size_t combined_size() {
  return A != 0 ? A : B;
}

/// The first node of E that breaks the size rule inside the definition of group `Group` of size
/// N, as type_is<the error type>, or type_is<void>. An element-wise operation whose operands
/// differ was reported when it was written, so it is not looked into again.
template <fixed_string Group, std::size_t N, class E>
constexpr auto misfit() {
  if constexpr (E::kind == node_kind::binary) {
    using L = typename E::left_type;
    using R = typename E::right_type;
    if constexpr (sizes_differ<L::size, R::size>) {
      return type_is<void>{};
    } else {
      using Left = typename decltype(misfit<Group, N, L>())::type;
      if constexpr (!std::is_void_v<Left>) {
        return type_is<Left>{};
      } else {
        return misfit<Group, N, R>();
      }
    }
  } else if constexpr (E::kind == node_kind::activation) {
    return misfit<Group, N, typename E::arg_type>();
  } else if constexpr (E::kind == node_kind::diagonal) {
    if constexpr (E::size != N) {
      return type_is<error::size_mismatch_a_diagonal_connection_joins_groups_of_the_same_size<Group, N, E::name, E::size>>{};
    } else {
      return type_is<void>{};
    }
  } else if constexpr (E::kind == node_kind::sparse) {
    if constexpr (E::max_to() >= N) {
      return type_is<error::a_sparse_mask_entry_is_out_of_range_its_to_must_be_below_the_group_size<Group, N, E::name, E::max_to()>>{};
    } else {
      return type_is<void>{};
    }
  } else if constexpr (E::size != 0 && E::size != N) {
    return type_is<error::size_mismatch_a_group_is_defined_from_a_read_or_connection_of_another_size<Group, N, leaf_name<E>(), E::size>>{};
  } else {
    return type_is<void>{};
  }
}

}  // namespace loopgrad::dsl
