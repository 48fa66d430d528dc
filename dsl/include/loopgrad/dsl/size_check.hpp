#pragma once
// The size rule, checked where the user writes `h = expr` or combines two expressions: every
// element-wise operation and every connection's output inside the definition of a group of size
// N has size N. A failing check names the offending node in its template arguments
// (check_fits<N, diagonal_t<"w", group_t<"x", 4, ...>>>) and says in a sentence what to change.
#include <cstddef>

#include "loopgrad/dsl/node.hpp"

namespace loopgrad::dsl {

template <std::size_t N, class E>
constexpr void check_fits() {
  if constexpr (E::kind == node_kind::binary) {
    check_fits<N, typename E::left_type>();
    check_fits<N, typename E::right_type>();
  } else if constexpr (E::kind == node_kind::activation) {
    check_fits<N, typename E::arg_type>();
  } else if constexpr (E::kind == node_kind::diagonal) {
    static_assert(E::size == N,
                  "loopgrad: size mismatch: a diagonal connection joins groups of the same size "
                  "(one weight per neuron); its source group has a different size than the group "
                  "it feeds: use dense<> to connect groups of different sizes");
  } else if constexpr (E::kind == node_kind::sparse) {
    static_assert(E::max_to() < N,
                  "loopgrad: sparse mask entry out of range: an entry {to, from} has `to` not "
                  "below the size of the group the connection feeds");
  } else if constexpr (E::size != 0) {
    static_assert(E::size == N,
                  "loopgrad: size mismatch: a group read or a connection in this expression has "
                  "a different size than the neuron group it defines; make the sizes equal or "
                  "put a dense<> connection in between");
  }
}

// The size of a + b given the sizes of a and b (0: not yet known).
template <std::size_t A, std::size_t B>
constexpr std::size_t combined_size() {
  static_assert(A == 0 || B == 0 || A == B,
                "loopgrad: size mismatch: element-wise +, - or * of two expressions of different "
                "sizes; every operand of an element-wise operation needs the same size");
  return A != 0 ? A : B;
}

}  // namespace loopgrad::dsl
