#pragma once
// Compile-time names: string literals as template arguments (neuron<"h", 16>).
#include <cstddef>
#include <string_view>

namespace loopgrad::dsl {

/// A string literal usable as a template argument: the names in `neuron<"h", 16>`, `dense<"W">`.
template <std::size_t N>
struct fixed_string {
  char chars[N]{};  ///< the characters, with the terminating zero
  constexpr fixed_string() = default;  ///< all zero (for join())
  /// From a string literal; implicit, so that `neuron<"h", 16>` reads as it does.
  constexpr fixed_string(const char (&s)[N]) {  // NOLINT: implicit on purpose
    for (std::size_t i = 0; i < N; ++i) chars[i] = s[i];
  }
  constexpr std::string_view view() const { return {chars, N - 1}; }  ///< the name, without the terminating zero
  static constexpr std::size_t length = N - 1;  ///< the name's length
};

/// A + B, for names a cell builds from its prefix ("l1" + "_h" -> "l1_h").
template <fixed_string A, fixed_string B>
constexpr auto join() {
  fixed_string<A.length + B.length + 1> out;
  for (std::size_t i = 0; i < A.length; ++i) out.chars[i] = A.chars[i];
  for (std::size_t i = 0; i < B.length; ++i) out.chars[A.length + i] = B.chars[i];
  return out;
}

/// A name as a type, so that diagnostics can name it: a failed check shows `name_t<"h">`.
template <fixed_string S>
struct name_t {
  static constexpr std::string_view value = S.view();  ///< the name
  static constexpr auto fixed = S;  ///< as a template argument of a diagnostic's type
};

}  // namespace loopgrad::dsl
