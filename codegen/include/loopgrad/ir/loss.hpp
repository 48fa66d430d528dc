#pragma once
// Losses of an output group y against its target t (n values each). Each element-wise loss is one
// rule: its printed name, its value and its gradient dC/dy_i side by side, as C++ the kernel
// emitter prints and as functions the interpreter evaluates (the activations' pattern). The
// softmax cross-entropy couples the elements (through the log-sum-exp) and is written out where it
// is used. To add an element-wise loss: an enumerator, its rule, its value and its gradient here,
// and its DSL constant in loopgrad/dsl/output.hpp.
#include <cmath>
#include <cstddef>
#include <string_view>

namespace loopgrad::ir {

/// An output group's loss against its target.
enum class Loss {
  none,                   ///< not an output
  mse,                    ///< C = (1/n) sum_i (y_i - t_i)^2 (PyTorch's MSELoss)
  softmax_cross_entropy,  ///< C = -sum_i t_i log softmax(y)_i, y are logits
  sum_of_squares,         ///< C = sum_i (y_i - t_i)^2 (MSELoss(reduction="sum"))
  half_sum_of_squares,    ///< C = 1/2 sum_i (y_i - t_i)^2
  bce_with_logits,        ///< C = (1/n) sum_i [log(1 + exp(y_i)) - t_i y_i], y are logits (BCEWithLogitsLoss)
};

/// An element-wise loss as C++ source: C = sum_i value(y_i, t_i) and dC/dy_i = gradient(y_i, t_i),
/// with fmt fields {y}, {t} (an element of the output and of the target) and {n} (the output's
/// size); `Scalar` is the kernel's scalar type.
struct LossRule {
  std::string_view name;             ///< as in the JSON report and the DSL
  std::string_view value_source;     ///< one element's term of C
  std::string_view gradient_source;  ///< dC/dy_i
};

/// The rule of an element-wise loss (the softmax cross-entropy and none have empty sources).
constexpr LossRule loss_rule(Loss loss) {
  switch (loss) {
    case Loss::none: return {"none", "", ""};
    case Loss::mse: return {"mse", "({y} - {t}) * ({y} - {t}) / Scalar({n})", "Scalar(2) * ({y} - {t}) / Scalar({n})"};
    case Loss::softmax_cross_entropy: return {"softmax_cross_entropy", "", ""};
    case Loss::sum_of_squares: return {"sum_of_squares", "({y} - {t}) * ({y} - {t})", "Scalar(2) * ({y} - {t})"};
    case Loss::half_sum_of_squares: return {"half_sum_of_squares", "Scalar(0.5) * ({y} - {t}) * ({y} - {t})", "({y} - {t})"};
    // log(1 + exp(y)) - t y written to stay finite for large |y|: max(y, 0) - t y + log1p(exp(-|y|)).
    case Loss::bce_with_logits:
      return {"bce_with_logits",
              "(({y} > Scalar(0) ? {y} : Scalar(0)) - {t} * {y} + std::log1p(std::exp(-std::abs({y})))) / Scalar({n})",
              "(Scalar(1) / (Scalar(1) + std::exp(-{y})) - {t}) / Scalar({n})"};
  }
  return {"?", "", ""};
}

/// Whether `loss` is element-wise (has a LossRule with sources).
constexpr bool is_elementwise(Loss loss) { return !loss_rule(loss).value_source.empty(); }

/// One element's term of an element-wise loss, in T (the interpreter evaluates it with this).
template <class T>
T loss_value(Loss loss, T y, T t, std::size_t n) {
  switch (loss) {
    case Loss::mse: return (y - t) * (y - t) / static_cast<T>(n);
    case Loss::sum_of_squares: return (y - t) * (y - t);
    case Loss::half_sum_of_squares: return T(0.5) * (y - t) * (y - t);
    case Loss::bce_with_logits: return ((y > T(0) ? y : T(0)) - t * y + std::log1p(std::exp(-std::abs(y)))) / static_cast<T>(n);
    case Loss::none:
    case Loss::softmax_cross_entropy: break;
  }
  return T(0);
}

/// dC/dy_i of an element-wise loss, in T.
template <class T>
T loss_gradient(Loss loss, T y, T t, std::size_t n) {
  switch (loss) {
    case Loss::mse: return T(2) * (y - t) / static_cast<T>(n);
    case Loss::sum_of_squares: return T(2) * (y - t);
    case Loss::half_sum_of_squares: return y - t;
    case Loss::bce_with_logits: return (T(1) / (T(1) + std::exp(-y)) - t) / static_cast<T>(n);
    case Loss::none:
    case Loss::softmax_cross_entropy: break;
  }
  return T(0);
}

}  // namespace loopgrad::ir
