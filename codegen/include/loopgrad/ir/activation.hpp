#pragma once
// Activations (element-wise functions of one argument): each one is a single rule holding its
// printed name, its value, its derivative and the C++ the kernel emitter prints for both, side by
// side (Adept-2's BinaryOperation.h keeps them together too). To add one: an enumerator, its rule,
// its value and its derivative below, and its DSL function in loopgrad/dsl/expression.hpp; the
// analysis, the interpreter and every emitter take it from here.
#include <cmath>
#include <string_view>

namespace loopgrad::ir {

/// The activations a group's expression may apply element-wise.
enum class Activation {
  identity,  ///< y = z
  tanh,      ///< y = tanh(z)
  sigmoid,   ///< y = 1 / (1 + exp(-z))
  relu,      ///< y = max(z, 0)
  exp,       ///< y = exp(z)
  log,       ///< y = log(z), for z > 0
  softplus,  ///< y = log(1 + exp(z)) (z itself above 20, as PyTorch's threshold)
  sqrt,      ///< y = sqrt(z), for z > 0
  silu,      ///< y = z * sigmoid(z) (also called swish)
  square,    ///< y = z * z
  cos,       ///< y = cos(z)
  sin,       ///< y = sin(z)
};

/// An activation's value and derivative as C++ source, side by side: the one definition the kernel
/// emitter and the interpreter's tests use.
struct ActivationRule {
  std::string_view name;  ///< as in the JSON report and the DSL
  /// C++ the kernel emitter prints (fmt replacement fields): the value in terms of the argument
  /// {z}, and the derivative in terms of the value {y} and the argument {z}; `Scalar` is the
  /// kernel's scalar type. Empty derivative: the constant 1.
  std::string_view value_source;
  std::string_view derivative_source;  ///< see value_source

  /// Multiplications in the derivative's source: what evaluating f'(z) costs the sensitivity
  /// update per element (the analysis counts it, and the emitter counts the same in what it prints).
  constexpr int derivative_multiplies() const {
    int n = 0;
    for (char c : derivative_source) n += c == '*';
    return n;
  }
};

/// The rule of activation `a`.
constexpr ActivationRule rule(Activation a) {
  switch (a) {
    case Activation::identity: return {"identity", "{z}", ""};
    case Activation::tanh: return {"tanh", "std::tanh({z})", "(Scalar(1) - {y} * {y})"};
    case Activation::sigmoid: return {"sigmoid", "Scalar(1) / (Scalar(1) + std::exp(-{z}))", "{y} * (Scalar(1) - {y})"};
    case Activation::relu: return {"relu", "({z} > Scalar(0) ? {z} : Scalar(0))", "({z} > Scalar(0) ? Scalar(1) : Scalar(0))"};
    case Activation::exp: return {"exp", "std::exp({z})", "{y}"};
    case Activation::log: return {"log", "std::log({z})", "(Scalar(1) / {z})"};
    case Activation::softplus:
      return {"softplus", "({z} > Scalar(20) ? {z} : std::log1p(std::exp({z})))",
              "({z} > Scalar(20) ? Scalar(1) : Scalar(1) / (Scalar(1) + std::exp(-{z})))"};
    case Activation::sqrt: return {"sqrt", "std::sqrt({z})", "(Scalar(0.5) / {y})"};
    // silu'(z) = s (1 + z (1 - s)) with s = sigmoid(z), which is s (1 + z - y).
    case Activation::silu:
      return {"silu", "{z} / (Scalar(1) + std::exp(-{z}))", "(Scalar(1) + {z} - {y}) / (Scalar(1) + std::exp(-{z}))"};
    case Activation::square: return {"square", "{z} * {z}", "(Scalar(2) * {z})"};
    case Activation::cos: return {"cos", "std::cos({z})", "(-std::sin({z}))"};
    case Activation::sin: return {"sin", "std::sin({z})", "std::cos({z})"};
  }
  return {"?", "{z}", ""};
}

/// f(z) for activation `a`, in T (the interpreter evaluates it with this).
template <class T>
T activation_value(Activation a, T z) {
  switch (a) {
    case Activation::identity: return z;
    case Activation::tanh: return std::tanh(z);
    case Activation::sigmoid: return T(1) / (T(1) + std::exp(-z));
    case Activation::relu: return z > T(0) ? z : T(0);
    case Activation::exp: return std::exp(z);
    case Activation::log: return std::log(z);
    case Activation::softplus: return z > T(20) ? z : std::log1p(std::exp(z));
    case Activation::sqrt: return std::sqrt(z);
    case Activation::silu: return z / (T(1) + std::exp(-z));
    case Activation::square: return z * z;
    case Activation::cos: return std::cos(z);
    case Activation::sin: return std::sin(z);
  }
  return z;
}

/// Derivative dy/dz given the value y = f(z) and the argument z.
template <class T>
T activation_derivative(Activation a, T y, T z) {
  switch (a) {
    case Activation::identity: return T(1);
    case Activation::tanh: return T(1) - y * y;
    case Activation::sigmoid: return y * (T(1) - y);
    case Activation::relu: return z > T(0) ? T(1) : T(0);
    case Activation::exp: return y;
    case Activation::log: return T(1) / z;
    case Activation::softplus: return z > T(20) ? T(1) : T(1) / (T(1) + std::exp(-z));
    case Activation::sqrt: return T(0.5) / y;
    case Activation::silu: return (T(1) + z - y) / (T(1) + std::exp(-z));
    case Activation::square: return T(2) * z;
    case Activation::cos: return -std::sin(z);
    case Activation::sin: return std::cos(z);
  }
  return T(1);
}

}  // namespace loopgrad::ir
