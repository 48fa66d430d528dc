#pragma once
// minGRU and minLSTM: Feng, Tung, Ahmed, Bengio and Hajimirsadeghi, "Were RNNs All We Needed?"
// (arXiv:2410.01201, 2024), section 3, in their sequential form:
//   minGRU:  z = sigmoid(W_z x + b_z)       h~ = W_h x + b_h
//            h = (1 - z) * h' + z * h~
//   minLSTM: f = sigmoid(W_f x + b_f)       i = sigmoid(W_i x + b_i)       h~ = W_h x + b_h
//            h = f / (f + i) * h' + i / (f + i) * h~      (the length-independent scaling)
// where h' is the previous step's h. The gates read only the input, so the recurrence is
// element-wise: each unit's h depends on its own h' alone, and exact RTRL stores |P| values.
#include <boost/hana/tuple.hpp>

#include "loopgrad/dsl.hpp"

namespace loopgrad::cells {

/// A minGRU layer of H units reading X, named after Prefix; what min_gru<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct min_gru_cell {
  static constexpr auto z = dsl::neuron<dsl::join<Prefix, "_z">(), H>;  ///< update gate, Prefix_z
  static constexpr auto c = dsl::neuron<dsl::join<Prefix, "_c">(), H>;  ///< candidate h~, Prefix_c
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< hidden state, Prefix_h
  /// The three definitions (z, c, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(z = sigmoid(dense<join<Prefix, "_W_z">()>(X{}) + bias<join<Prefix, "_b_z">()>),
                                   c = dense<join<Prefix, "_W_h">()>(X{}) + bias<join<Prefix, "_b_h">()>,
                                   h = (1.0 - z) * delay(h) + z * c);
  }
};

/// min_gru<"l1", 128>(x): a minGRU layer of 128 units reading x.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto min_gru(const X&) {
  return min_gru_cell<Prefix, H, X>{};
}

/// A minLSTM layer of H units reading X, named after Prefix; what min_lstm<>() returns.
template <dsl::fixed_string Prefix, std::size_t H, class X>
struct min_lstm_cell {
  static constexpr auto f = dsl::neuron<dsl::join<Prefix, "_f">(), H>;  ///< forget gate, Prefix_f
  static constexpr auto i = dsl::neuron<dsl::join<Prefix, "_i">(), H>;  ///< input gate, Prefix_i
  static constexpr auto c = dsl::neuron<dsl::join<Prefix, "_c">(), H>;  ///< candidate h~, Prefix_c
  static constexpr auto h = dsl::neuron<dsl::join<Prefix, "_h">(), H>;  ///< hidden state, Prefix_h
  /// The four definitions (f, i, c, h), for network<>().
  constexpr auto definitions() const {
    using namespace dsl;
    return boost::hana::make_tuple(f = sigmoid(dense<join<Prefix, "_W_f">()>(X{}) + bias<join<Prefix, "_b_f">()>),
                                   i = sigmoid(dense<join<Prefix, "_W_i">()>(X{}) + bias<join<Prefix, "_b_i">()>),
                                   c = dense<join<Prefix, "_W_h">()>(X{}) + bias<join<Prefix, "_b_h">()>,
                                   h = f / (f + i) * delay(h) + i / (f + i) * c);
  }
};

/// min_lstm<"l1", 128>(x): a minLSTM layer of 128 units reading x.
template <dsl::fixed_string Prefix, std::size_t H, class X>
constexpr auto min_lstm(const X&) {
  return min_lstm_cell<Prefix, H, X>{};
}

/// A whole network: input x (In), minGRU layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto min_gru_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = min_gru<"mingru", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"min_gru">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

/// A whole network: input x (In), minLSTM layer (H), linear output with MSE.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto min_lstm_network() {
  using namespace dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto layer = min_lstm<"minlstm", H>(x);
  constexpr auto y = neuron<"y", Out>;
  return network<"min_lstm">(x, layer, output(y = dense<"W_hy">(layer.h) + bias<"b_y">, mse));
}

}  // namespace loopgrad::cells
