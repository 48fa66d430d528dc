#pragma once
// The layouts of PyTorch's recurrent modules: how the tensors of a torch.nn.RNN, LSTM, GRU or
// Linear state_dict map onto the parameter groups of loopgrad's cells (loopgrad/cells/). A spec
// hands them to LOOPGRAD_GENERATOR so that the generated header can read and write PyTorch's
// files on its own (loopgrad/runtime/kernel_io.hpp); the runtime's parameter I/O takes them too
// (loopgrad/runtime/parameter_io.hpp).
//
//   LOOPGRAD_GENERATOR((cells::lstm_network<3, 64, 1>()),
//                      ir::join({ir::torch_lstm_layout("lstm", "rnn."), ir::torch_linear_layout("W_hy", "b_y", "out.")}))
#include <initializer_list>
#include <string>
#include <vector>

#include "loopgrad/ir/network.hpp"

namespace loopgrad::ir {

/// A whole file's layout: one entry per tensor.
using TensorLayout = std::vector<TensorMapping>;

/// Several layouts as one (a model's modules, one after another).
inline TensorLayout join(std::initializer_list<TensorLayout> parts) {
  TensorLayout out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

/// torch.nn.RNN (tanh) layer `layer` <-> loopgrad's elman cell named `cell` (parameters
/// CELL_W_xh, CELL_W_hh, CELL_b_h, where CELL is `cell`). `module` prefixes the tensor names ("rnn." in a model
/// whose RNN is the attribute `rnn`). PyTorch's two biases are summed into CELL_b_h.
inline TensorLayout torch_rnn_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
  const std::string l = "_l" + std::to_string(layer);
  return {{module + "weight_ih" + l, {cell + "_W_xh"}, false},
          {module + "weight_hh" + l, {cell + "_W_hh"}, false},
          {module + "bias_ih" + l, {cell + "_b_h"}, true},
          {module + "bias_hh" + l, {cell + "_b_h"}, true}};
}

/// torch.nn.LSTM layer <-> loopgrad's lstm cell (gates stacked in PyTorch's order i, f, g, o).
inline TensorLayout torch_lstm_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
  const std::string l = "_l" + std::to_string(layer);
  auto gates = [&](const std::string& kind) {
    std::vector<std::string> out;
    for (const char* g : {"i", "f", "g", "o"}) out.push_back(cell + "_" + kind + g);
    return out;
  };
  return {{module + "weight_ih" + l, gates("W_i"), false},
          {module + "weight_hh" + l, gates("W_h"), false},
          {module + "bias_ih" + l, gates("b_i"), false},
          {module + "bias_hh" + l, gates("b_h"), false}};
}

/// torch.nn.GRU layer <-> loopgrad's gru cell (gates stacked in PyTorch's order r, z, n).
inline TensorLayout torch_gru_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
  const std::string l = "_l" + std::to_string(layer);
  auto gates = [&](const std::string& kind) {
    std::vector<std::string> out;
    for (const char* g : {"r", "z", "n"}) out.push_back(cell + "_" + kind + g);
    return out;
  };
  return {{module + "weight_ih" + l, gates("W_i"), false},
          {module + "weight_hh" + l, gates("W_h"), false},
          {module + "bias_ih" + l, gates("b_i"), false},
          {module + "bias_hh" + l, gates("b_h"), false}};
}

/// torch.nn.Linear <-> a dense connection and a bias.
inline TensorLayout torch_linear_layout(const std::string& weight, const std::string& bias, const std::string& module) {
  return {{module + "weight", {weight}, false}, {module + "bias", {bias}, false}};
}

}  // namespace loopgrad::ir
