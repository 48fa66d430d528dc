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
  // C++ source of the value as a function of `z`, and of the derivative as a function of the
  // value `y` and the argument `z` (every rule here is cheapest written in y).
  std::string_view value_source;
  std::string_view derivative_source;
};

constexpr ActivationRule rule(Activation a) {
  switch (a) {
    case Activation::identity: return {"identity", "z", "1"};
    case Activation::tanh: return {"tanh", "std::tanh(z)", "1 - y * y"};
    case Activation::sigmoid: return {"sigmoid", "1 / (1 + std::exp(-z))", "y * (1 - y)"};
    case Activation::relu: return {"relu", "(z > 0 ? z : 0)", "(z > 0 ? 1 : 0)"};
  }
  return {"?", "z", "1"};
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
