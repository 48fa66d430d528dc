#pragma once
// Outputs: a neuron group definition with a loss against a target of the same size.
#include "loopgrad/dsl/diagnostics.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::dsl {

template <ir::Loss L>
struct loss_t {
  static constexpr ir::Loss value = L;
};

// Mean squared error, C = (1/n) sum_i (y_i - t_i)^2.
inline constexpr loss_t<ir::Loss::mse> mse{};
// Softmax of the output's values (logits) with cross-entropy, C = -sum_i t_i log softmax(y)_i.
inline constexpr loss_t<ir::Loss::softmax_cross_entropy> softmax_cross_entropy{};

template <class Definition, class Loss>
struct output_t {
  Definition definition;
};

template <class T>
inline constexpr bool is_output = false;
template <class D, class L>
inline constexpr bool is_output<output_t<D, L>> = true;

namespace detail {
template <class D, class L>
constexpr L loss_of(const output_t<D, L>&) {
  return {};
}
}  // namespace detail

// output(y = expr, mse): y is an output trained against a target every step that has one.
template <class G, class E, ir::Loss L>
constexpr auto output(const definition<G, E>& def, loss_t<L>) {
  return output_t<definition<G, E>, loss_t<L>>{def};
}

// output(y = expr) without a loss stops here, at the user's line; the type in the error names y.
template <class G, class E>
constexpr auto output(const definition<G, E>& def) {
  static_assert(sizeof(error::an_output_has_no_loss_give_it_one_as_in_output_y_equals_expr_comma_mse<G::name>) == 0);  // loopgrad: see the type in this error; the losses are mse and softmax_cross_entropy
  return def;
}

}  // namespace loopgrad::dsl
