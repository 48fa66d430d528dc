#pragma once
// A generated kernel's namespace as one type, for a template argument: its array types, its
// parameter count and its rtrl_step. LOOPGRAD_KERNEL_TYPES(elman64) is an unnamed struct type.
#include <cstddef>

#define LOOPGRAD_KERNEL_TYPES(ns)                                                                         \
  struct {                                                                                                \
    using Params = ns::Params;                                                                            \
    using State = ns::State;                                                                              \
    using Sensitivity = ns::Sensitivity;                                                                  \
    using Input = ns::Input;                                                                              \
    using Target = ns::Target;                                                                            \
    using Gradient = ns::Gradient;                                                                        \
    using Step = ns::Step;                                                                                \
    static constexpr std::size_t n_params() { return ns::n_params; }                                      \
    static double rtrl_step(const Params& p, State& s, Sensitivity& d, const Input& x, const Target* y, Gradient& g, \
                            Step& st) {                                                                   \
      return ns::rtrl_step(p, s, d, x, y, g, st);                                                         \
    }                                                                                                     \
  }
