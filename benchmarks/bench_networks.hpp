#pragma once
// The benchmarked networks (Elman 16/64/256, stacked 2 x 128, LSTM 128, GRU 128, the diagonal
// layer of 1024 units with 32 inputs, and the random corpus's three largest; then the exact
// algorithms in float and at Elman 512 and LSTM 256; then the element-wise cells and their stacks).
// One table for the build-time tool that emits their kernels and for the benchmark that rebuilds
// their IR.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "loopgrad/cells.hpp"
#include "random_network.hpp"

namespace bench {

struct BenchNetwork {
  std::string name;        // kernel namespace (pruned); "<name>_dense" is the unpruned kernel
  std::string expression;  // C++ that builds the IR
  std::function<loopgrad::ir::Network()> make;
};

inline std::vector<BenchNetwork> networks() {
#define BENCH_NETWORK(expr) #expr, [] { return expr; }
  std::vector<BenchNetwork> out = {
      {"elman16", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<8, 16, 8>()))},
      {"elman64", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<8, 64, 8>()))},
      {"elman256", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<8, 256, 8>()))},
      {"stacked2x128", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::stacked_rnn_network<32, 128, 128, 32>()))},
      {"lstm128", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<32, 128, 8>()))},
      {"gru128", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::gru_network<32, 128, 8>()))},
      {"diagonal1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::diagonal_rnn_network<32, 1024, 8>()))},
  };
#undef BENCH_NETWORK
  // The random corpus's three largest (by parameter count, seeds 1..60 as in the test suite).
  std::vector<std::pair<int, unsigned>> sizes;
  for (unsigned seed = 1; seed <= 60; ++seed) sizes.emplace_back(loopgrad::testing::random_network(seed).param_count(), seed);
  std::sort(sizes.rbegin(), sizes.rend());
  for (int i = 0; i < 3; ++i) {
    const unsigned seed = sizes[static_cast<std::size_t>(i)].second;
    out.push_back({"random" + std::to_string(seed), "loopgrad::testing::random_network(" + std::to_string(seed) + ")",
                   [seed] { return loopgrad::testing::random_network(seed); }});
  }
  return out;
}

// The exact algorithms where the sizes or the scalar differ from the table above: the dense cells
// in float, and Elman 512 and LSTM 256 in double. One pruned kernel each, namespace `name`.
struct ExactNetwork {
  std::string name;
  std::string expression;
  std::function<loopgrad::ir::Network()> make;
  bool single_precision = false;
};

inline std::vector<ExactNetwork> exact_networks() {
#define BENCH_NETWORK(expr) #expr, [] { return expr; }
  return {
      {"elman256_float", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<8, 256, 8>())), true},
      {"lstm128_float", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<32, 128, 8>())), true},
      {"gru128_float", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::gru_network<32, 128, 8>())), true},
      {"elman512", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<8, 512, 8>())), false},
      {"lstm256", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<32, 256, 8>())), false},
  };
#undef BENCH_NETWORK
}

// minGRU layers of H units stacked two and four deep over In inputs, a linear output of Out.
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto min_gru_stack2() {
  using namespace loopgrad::dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto l1 = loopgrad::cells::min_gru<"l1", H>(x);
  constexpr auto l2 = loopgrad::cells::min_gru<"l2", H>(l1.h);
  constexpr auto y = neuron<"y", Out>;
  return network<"min_gru_stack2">(x, l1, l2, output(y = dense<"W_hy">(l2.h) + bias<"b_y">, mse));
}
template <std::size_t In, std::size_t H, std::size_t Out>
constexpr auto min_gru_stack4() {
  using namespace loopgrad::dsl;
  constexpr auto x = input<"x", In>;
  constexpr auto l1 = loopgrad::cells::min_gru<"l1", H>(x);
  constexpr auto l2 = loopgrad::cells::min_gru<"l2", H>(l1.h);
  constexpr auto l3 = loopgrad::cells::min_gru<"l3", H>(l2.h);
  constexpr auto l4 = loopgrad::cells::min_gru<"l4", H>(l3.h);
  constexpr auto y = neuron<"y", Out>;
  return network<"min_gru_stack4">(x, l1, l2, l3, l4, output(y = dense<"W_hy">(l4.h) + bias<"b_y">, mse));
}

// The element-wise cells: one layer of 1024 units over 32 inputs (the RG-LRU reads an input of
// its own width, 1024), and minGRU stacks of 2 and 4 layers of 256 units over 32 inputs beside
// the dense LSTMs of about their parameter counts (177 units: 150,812 parameters against the
// 2-layer stack's 150,536; 304 units: 413,448 against the 4-layer stack's 413,704). One pruned
// kernel each, namespace `name`; loopgrad_bench's rows forward/ and rtrl/ (bench_elementwise.cpp).
inline std::vector<ExactNetwork> elementwise_networks() {
#define BENCH_NETWORK(expr) #expr, [] { return expr; }
  return {
      {"indrnn1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::indrnn_network<32, 1024, 8>()))},
      {"min_gru1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::min_gru_network<32, 1024, 8>()))},
      {"min_lstm1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::min_lstm_network<32, 1024, 8>()))},
      {"rg_lru1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::rg_lru_network<1024, 8>()))},
      {"elstm1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elstm_network<32, 1024, 8>()))},
      {"lru1024", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lru_network<32, 1024, 8>()))},
      {"min_gru_stack2x256", BENCH_NETWORK(loopgrad::dsl::lower(bench::min_gru_stack2<32, 256, 8>()))},
      {"min_gru_stack4x256", BENCH_NETWORK(loopgrad::dsl::lower(bench::min_gru_stack4<32, 256, 8>()))},
      {"lstm177", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<32, 177, 8>()))},
      {"lstm304", BENCH_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<32, 304, 8>()))},
  };
#undef BENCH_NETWORK
}

}  // namespace bench
