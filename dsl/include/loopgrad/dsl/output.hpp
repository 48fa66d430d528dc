#pragma once
// Outputs: a neuron group definition with a loss against a target of the same size.
#include "loopgrad/dsl/diagnostics.hpp"
#include "loopgrad/dsl/group.hpp"
#include "loopgrad/ir/network.hpp"

namespace loopgrad::dsl {

/// A loss function as a value (`mse`, `softmax_cross_entropy`), the second argument of output().
template <ir::Loss L>
struct loss_t {
  static constexpr ir::Loss value = L;  ///< which loss
};

/// Mean squared error, C = (1/n) sum_i (y_i - t_i)^2.
inline constexpr loss_t<ir::Loss::mse> mse{};
/// Softmax of the output's values (logits) with cross-entropy, C = -sum_i t_i log softmax(y)_i.
inline constexpr loss_t<ir::Loss::softmax_cross_entropy> softmax_cross_entropy{};
/// Sum of squared errors, C = sum_i (y_i - t_i)^2 (PyTorch's MSELoss(reduction="sum")).
inline constexpr loss_t<ir::Loss::sum_of_squares> sum_of_squares{};
/// Half the sum of squared errors, C = 1/2 sum_i (y_i - t_i)^2: dC/dy = y - t.
inline constexpr loss_t<ir::Loss::half_sum_of_squares> half_sum_of_squares{};
/// Binary cross-entropy on logits, C = (1/n) sum_i [log(1 + exp(y_i)) - t_i y_i] (PyTorch's
/// BCEWithLogitsLoss; targets in [0, 1]).
inline constexpr loss_t<ir::Loss::bce_with_logits> bce_with_logits{};

/// An output: a definition (`y = expr`) trained against a target with loss Loss (what output() returns).
template <class Definition, class Loss>
struct output_t {
  Definition definition;  ///< the output group's definition
  double weight = 1;      ///< the loss is multiplied by it (output(y = expr, loss, weight))
};

/// Whether T is an output (what output() returns).
template <class T>
inline constexpr bool is_output = false;
/// Outputs are outputs.
template <class D, class L>
inline constexpr bool is_output<output_t<D, L>> = true;

namespace detail {
template <class D, class L>
constexpr L loss_of(const output_t<D, L>&) {
  return {};
}
}  // namespace detail

/// output(y = expr, mse): y is an output trained against a target every step that has one.
template <class G, class E, ir::Loss L>
constexpr auto output(const definition<G, E>& def, loss_t<L>) {
  return output_t<definition<G, E>, loss_t<L>>{def};
}

/// output(y = expr, mse, 0.5): the same, the loss weighted (C = 0.5 * the loss); a weight per
/// output balances several outputs' losses.
template <class G, class E, ir::Loss L>
constexpr auto output(const definition<G, E>& def, loss_t<L>, double weight) {
  return output_t<definition<G, E>, loss_t<L>>{def, weight};
}

/// output(y = expr) without a loss stops here, at the user's line; the type in the error names y.
template <class G, class E>
constexpr auto output(const definition<G, E>& def) {
  static_assert(sizeof(error::an_output_has_no_loss_give_it_one_as_in_output_y_equals_expr_comma_mse<G::name>) == 0);  // loopgrad: see the type in this error; the losses are mse, sum_of_squares, half_sum_of_squares, bce_with_logits and softmax_cross_entropy
  return output_t<definition<G, E>, loss_t<ir::Loss::mse>>{def};  // an output all the same: no second error
}

}  // namespace loopgrad::dsl
