#pragma once
// Parameters in and out of safetensors files, in loopgrad's own names or in the names and layouts
// of PyTorch's state_dicts (torch.nn.RNN, LSTM, GRU, Linear), so that a network trained in
// PyTorch can go on learning online in a C++ app, and back.
//
// A Layout lists the file's tensors and, for each, the loopgrad parameter groups stacked row by
// row into it (PyTorch stacks its gates: weight_ih_l0 of an LSTM is [W_ii; W_if; W_ig; W_io]).
// Dense weights are 2-D [rows, cols]; biases, diagonal and sparse weights are 1-D [rows].
// import_parameters checks every tensor the layout names before it changes anything: a missing
// tensor, a wrong shape or dtype, a truncated or corrupt file is an error naming the file, the
// tensor and what was expected, and nothing is loaded.
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "loopgrad/ir/network.hpp"
#include "loopgrad/ir/torch_layout.hpp"
#include "loopgrad/runtime/tensor_map.hpp"

namespace loopgrad::runtime {

using TensorMapping = ir::TensorMapping;  ///< how one tensor of a file maps onto parameter groups
using Layout = ir::TensorLayout;          ///< how a file's tensors map onto a network's parameters
using ir::torch_gru_layout;
using ir::torch_linear_layout;
using ir::torch_lstm_layout;
using ir::torch_rnn_layout;

/// One tensor per parameter group, named and shaped as the group.
inline Layout default_layout(const ir::Network& net) {
  Layout out;
  for (const auto& p : net.params) out.push_back({p.name, {p.name}, false});
  return out;
}

/// `net`'s parameter vector and `layout`'s tensors on it, checked (ir::tensor_shape): a layout
/// naming a group the network lacks, or stacking groups that do not fit, throws
/// std::invalid_argument naming the tensor.
inline tensor_map::Map tensor_map_of(const ir::Network& net, const Layout& layout) {
  tensor_map::Map map;
  map.network = net.name;
  for (const auto& p : net.params) {
    const bool matrix = p.connection >= 0 && net.connections[static_cast<std::size_t>(p.connection)].kind == ir::ConnectionKind::dense;
    map.groups.push_back({p.name, map.size, static_cast<std::size_t>(p.rows), static_cast<std::size_t>(p.cols), matrix});
    map.size += static_cast<std::size_t>(p.size());
  }
  for (const auto& m : layout) {
    ir::tensor_shape(net, m);
    tensor_map::Tensor t{m.tensor, {}, m.summed};
    for (const auto& name : m.params) t.groups.push_back(static_cast<std::size_t>(net.find_param(name)));
    map.tensors.push_back(std::move(t));
  }
  return map;
}

/// Parameters read from `path` under `layout`, starting from `params` (groups the layout does not
/// name keep their values there). Throws, changing nothing, on any mismatch.
template <class T>
std::vector<T> import_parameters(const ir::Network& net, const std::filesystem::path& path, const Layout& layout,
                                 std::vector<T> params) {
  tensor_map::import_values(tensor_map_of(net, layout), path, std::span<T>(params));
  return params;
}

/// Writes `params` to `path` under `layout` (F64 for double, F32 for float), with the network's
/// name in the metadata. A group PyTorch splits in two (the RNN's biases) goes whole into the first
/// tensor and as zeros into the second, so that PyTorch's sum is the group.
template <class T>
void export_parameters(const ir::Network& net, const std::vector<T>& params, const std::filesystem::path& path,
                       const Layout& layout) {
  tensor_map::export_values(tensor_map_of(net, layout), std::span<const T>(params), path, true);
}

/// Writes a gradient (dC/dP in the parameter layout) to `path` in PyTorch's names under `layout`:
/// what PyTorch's autograd puts in each parameter's .grad. A group PyTorch splits in two gets the
/// group's gradient in both tensors (the derivative by each summand is the derivative by the sum).
template <class T>
void export_gradient(const ir::Network& net, const std::vector<T>& gradient, const std::filesystem::path& path,
                     const Layout& layout) {
  tensor_map::export_values(tensor_map_of(net, layout), std::span<const T>(gradient), path, false);
}

}  // namespace loopgrad::runtime
