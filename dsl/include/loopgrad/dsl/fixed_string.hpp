#pragma once
// Compile-time names: string literals as template arguments (neuron<"h", 16>).
#include <cstddef>
#include <string_view>

namespace loopgrad::dsl {

template <std::size_t N>
struct fixed_string {
  char chars[N]{};
  constexpr fixed_string() = default;
  constexpr fixed_string(const char (&s)[N]) {  // NOLINT: implicit on purpose
    for (std::size_t i = 0; i < N; ++i) chars[i] = s[i];
  }
  constexpr std::string_view view() const { return {chars, N - 1}; }
  static constexpr std::size_t length = N - 1;
};

// A + B, for names a cell builds from its prefix ("l1" + "_h" -> "l1_h").
template <fixed_string A, fixed_string B>
constexpr auto join() {
  fixed_string<A.length + B.length + 1> out;
  for (std::size_t i = 0; i < A.length; ++i) out.chars[i] = A.chars[i];
  for (std::size_t i = 0; i < B.length; ++i) out.chars[A.length + i] = B.chars[i];
  return out;
}

// A name as a type, so that diagnostics can name it: a failed check shows `name_t<"h">`.
template <fixed_string S>
struct name_t {
  static constexpr std::string_view value = S.view();
  static constexpr auto fixed = S;  // as a template argument of a diagnostic's type
};

}  // namespace loopgrad::dsl
