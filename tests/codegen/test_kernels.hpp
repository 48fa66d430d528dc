#pragma once
// Every network whose generated kernel the test build checks: the core issue's test networks
// (double, and float for some) and the random-network corpus. The build-time tool emits one
// header per entry; the test rebuilds each network from the same expression and compares.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "../networks.hpp"
#include "loopgrad/ir/network.hpp"
#include "loopgrad/ir/torch_layout.hpp"
#include "random_network.hpp"

namespace loopgrad::testing {

struct TestKernel {
  std::string name;        // the kernel's namespace and header name
  std::string scalar;      // "float" or "double"
  std::string expression;  // C++ that builds the network's IR, for the test's own copy
  std::function<ir::Network()> make;
  long long blas_min_flops = 0;  // > 0: dense products call CBLAS (the kernel's shard is shard_blas)
  std::vector<std::string> layer_local = {};  // the layer_local approximation's states (AnalysisOptions)
  std::size_t panel_bytes = 0;  // > 0: KernelOptions::panel_bytes, small to make several column panels
};

// `net` (a cell of 3 inputs and 4 units with a linear output y) with the tensors of PyTorch's
// `cell` module and a torch.nn.Linear `out` (tests/interop/torch_reference.py writes those).
inline ir::Network torch_network(ir::Network net, const ir::TensorLayout& cell) {
  net.tensors = ir::join({cell, ir::torch_linear_layout("W_hy", "b_y", "out.")});
  return net;
}

// Seeds of the random-network corpus; printed by every failing check.
inline constexpr unsigned random_network_count = 80;  // both corpora (random_network.hpp)
inline constexpr unsigned random_float_count = 10;

inline std::vector<TestKernel> test_kernels() {
#define LOOPGRAD_NETWORK(expr) #expr, [] { return expr; }
  std::vector<TestKernel> out = {
      {"k_elman", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 5, 2>()))},
      {"k_stacked", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::stacked_rnn_network<3, 4, 5, 3>()))},
      {"k_lstm", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<3, 4, 2>()))},
      {"k_gru", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::gru_network<3, 4, 2>()))},
      {"k_diagonal", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::diagonal_rnn_network<3, 6, 2>()))},
      {"k_multi_loop", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::multi_loop_network()))},
      {"k_all_ops", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::all_ops_network()))},
      {"k_elementwise_ops", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::elementwise_ops_network()))},
      {"k_losses", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::losses_network()))},
      {"k_long_delay", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::long_delay_network()))},
      {"k_expression_sources", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::expression_sources_network()))},
      {"k_shared_weights", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::shared_weights_network()))},
      {"k_indrnn", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::indrnn_network<3, 5, 2>()))},
      {"k_min_gru", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::min_gru_network<3, 5, 2>()))},
      {"k_min_lstm", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::min_lstm_network<3, 5, 2>()))},
      {"k_elstm", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elstm_network<3, 5, 2>()))},
      {"k_lru_stack", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::lru_stack()))},
      {"k_rg_lru_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::rg_lru_network<5, 2>()))},
      // 26 units: dense products with packed source tiles, two column tiles of W_hh's 676
      // columns, and two rows past the register-tiled ones.
      {"k_elman26", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 26, 2>()))},
      {"k_elman26_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 26, 2>()))},
      // 32 units: the block ends' dense_gradients take W_hh's terms row by row for all 32 columns of
      // a chunk (16 columns or more, W_hh's 32 source columns one whole register tile); the
      // gradient's single column and W_xh's 3 source columns go column by column.
      {"k_elman32", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 32, 2>()))},
      // Column panels (KernelPlan::panel_columns) with a small budget: W_h*'s 400 columns in panels
      // of 96, the last 16 wide, the immediate blocks' rows of 20 columns across the panels' edges,
      // the gates' products sharing each packed panel of Delta_(N-1) and the cells' passes in it.
      {"k_lstm20_panels", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<3, 20, 2>())), 0, {}, 16384},
      {"k_lstm20_panels_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<3, 20, 2>())), 0, {}, 16384},
      // Layer 2 reads layer 1's block of this step: its panel is packed after layer 1 formed it.
      {"k_stacked20_panels", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::stacked_rnn_network<3, 20, 20, 2>())), 0, {}, 16384},
      {"k_gru20_panels", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::gru_network<3, 20, 2>())), 0, {}, 16384},
      {"k_elman_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 5, 2>()))},
      {"k_lstm_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::lstm_network<3, 4, 2>()))},
      {"k_multi_loop_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::multi_loop_network()))},
      {"k_all_ops_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::all_ops_network()))},
      {"k_elementwise_ops_f", "float", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::elementwise_ops_network()))},
      // The layer_local approximation, generated as analysed: every layer of the stack, and the
      // multi-loop network's third loop alone (c keeps its own weights, drops a's and b's).
      {"k_stacked_layer_local", "double",
       LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::cells::stacked_rnn_network<3, 4, 5, 3>())), 0, {"*"}},
      {"k_multi_loop_layer_local", "double", LOOPGRAD_NETWORK(loopgrad::dsl::lower(loopgrad::testing::multi_loop_network())),
       0, {"c"}},
      // PyTorch's modules with their tensors' names in the header (kernel_io_test.cpp).
      {"k_torch_rnn", "double",
       LOOPGRAD_NETWORK(loopgrad::testing::torch_network(loopgrad::dsl::lower(loopgrad::cells::elman_network<3, 4, 1>()),
                                                         loopgrad::ir::torch_rnn_layout("rnn")))},
      {"k_torch_lstm", "double",
       LOOPGRAD_NETWORK(loopgrad::testing::torch_network(loopgrad::dsl::lower(loopgrad::cells::lstm_network<3, 4, 1>()),
                                                         loopgrad::ir::torch_lstm_layout("lstm")))},
      {"k_torch_gru", "double",
       LOOPGRAD_NETWORK(loopgrad::testing::torch_network(loopgrad::dsl::lower(loopgrad::cells::gru_network<3, 4, 1>()),
                                                         loopgrad::ir::torch_gru_layout("gru")))},
  };
  // Every dense product through CBLAS: the generation option of issue 5, checked like the rest.
  for (const auto& blas : {std::pair{"k_lstm", "double"}, {"k_stacked", "double"}, {"k_multi_loop", "double"},
                           {"k_lstm_f", "float"}}) {
    const std::string name = blas.first;  // a plain variable: clang 14 cannot capture a structured binding
    auto base = *std::find_if(out.begin(), out.end(), [&](const TestKernel& k) { return k.name == name; });
    base.name += "_blas";
    base.scalar = blas.second;
    base.blas_min_flops = 1;
    out.push_back(base);
  }
#undef LOOPGRAD_NETWORK
  for (unsigned seed = 1; seed <= random_network_count; ++seed) {
    const std::string expression = "loopgrad::testing::random_network(" + std::to_string(seed) + ")";
    out.push_back({"k_random_" + std::to_string(seed), "double", expression, [seed] { return random_network(seed); }});
    if (seed <= random_float_count)
      out.push_back({"k_random_" + std::to_string(seed) + "_f", "float", expression, [seed] { return random_network(seed); }});
  }
  return out;
}

}  // namespace loopgrad::testing
