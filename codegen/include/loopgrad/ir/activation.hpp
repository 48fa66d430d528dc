#pragma once
// Activations: each one is a single rule holding its printed name, its value, its derivative and
// the C++ the kernel emitter prints for both (Adept-2's BinaryOperation.h keeps them together too).
#include <cmath>
#include <string_view>

namespace loopgrad::ir {

enum class Activation {
  identity,  // y = z
  tanh,      // y = tanh(z)
  sigmoid,   // y = 1 / (1 + exp(-z))
  relu,      // y = max(z, 0)
};

struct ActivationRule {
  std::string_view name;
  // C++ the kernel emitter prints (fmt replacement fields): the value in terms of the argument
  // {z}, and the derivative in terms of the value {y} and the argument {z}; `Scalar` is the
  // kernel's scalar type. Empty derivative: the constant 1.
  std::string_view value_source;
  std::string_view derivative_source;
};

constexpr ActivationRule rule(Activation a) {
  switch (a) {
    case Activation::identity: return {"identity", "{z}", ""};
    case Activation::tanh: return {"tanh", "std::tanh({z})", "(Scalar(1) - {y} * {y})"};
    case Activation::sigmoid: return {"sigmoid", "Scalar(1) / (Scalar(1) + std::exp(-{z}))", "{y} * (Scalar(1) - {y})"};
    case Activation::relu: return {"relu", "({z} > Scalar(0) ? {z} : Scalar(0))", "({z} > Scalar(0) ? Scalar(1) : Scalar(0))"};
  }
  return {"?", "{z}", ""};
}

template <class T>
T activation_value(Activation a, T z) {
  switch (a) {
    case Activation::identity: return z;
    case Activation::tanh: return std::tanh(z);
    case Activation::sigmoid: return T(1) / (T(1) + std::exp(-z));
    case Activation::relu: return z > T(0) ? z : T(0);
  }
  return z;
}

// Derivative dy/dz given the value y = f(z) and the argument z.
template <class T>
T activation_derivative(Activation a, T y, T z) {
  switch (a) {
    case Activation::identity: return T(1);
    case Activation::tanh: return T(1) - y * y;
    case Activation::sigmoid: return y * (T(1) - y);
    case Activation::relu: return z > T(0) ? T(1) : T(0);
  }
  return T(1);
}

}  // namespace loopgrad::ir
