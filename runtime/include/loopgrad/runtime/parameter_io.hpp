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
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "loopgrad/ir/network.hpp"
#include "loopgrad/runtime/safetensors.hpp"

namespace loopgrad::runtime {

/// How one tensor of a file maps onto loopgrad's parameter groups (an entry of a Layout).
struct TensorMapping {
  std::string tensor;               ///< name in the file
  std::vector<std::string> params;  ///< loopgrad parameter groups, stacked row-wise
  /// Several tensors summed into one group (PyTorch's RNN has bias_ih and bias_hh where loopgrad's
  /// Elman layer has one bias): import adds them, export writes the group into the first tensor of
  /// the sum and zeros into the others.
  bool summed = false;
};
using Layout = std::vector<TensorMapping>;  ///< how a file's tensors map onto a network's parameters

namespace detail {
inline const ir::Param& find_param(const ir::Network& net, const std::string& name, const std::string& context) {
  const int p = net.find_param(name);
  if (p < 0) throw std::invalid_argument(context + ": network '" + net.name + "' has no parameter group '" + name + "'");
  return net.params[static_cast<std::size_t>(p)];
}
inline bool is_matrix(const ir::Network& net, const ir::Param& p) {
  return p.connection >= 0 && net.connections[static_cast<std::size_t>(p.connection)].kind == ir::ConnectionKind::dense;
}
/// The tensor's shape under the layout, checking that the stacked groups fit together.
inline std::vector<std::int64_t> mapped_shape(const ir::Network& net, const TensorMapping& m) {
  std::int64_t rows = 0, cols = -1;
  bool matrix = false;
  for (const auto& name : m.params) {
    const auto& p = find_param(net, name, "layout entry '" + m.tensor + "'");
    matrix = is_matrix(net, p);
    if (cols >= 0 && cols != p.cols)
      throw std::invalid_argument("layout entry '" + m.tensor + "' stacks parameter groups with different column counts");
    cols = p.cols;
    rows += p.rows;
  }
  if (matrix) return {rows, cols};
  return {rows};
}
inline std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace detail

/// One tensor per parameter group, named and shaped as the group.
inline Layout default_layout(const ir::Network& net) {
  Layout out;
  for (const auto& p : net.params) out.push_back({p.name, {p.name}, false});
  return out;
}

/// torch.nn.RNN (tanh) layer `layer` <-> loopgrad's elman cell named `cell` (parameters
/// CELL_W_xh, CELL_W_hh, CELL_b_h, where CELL is `cell`). `module` prefixes the tensor names ("rnn." in a model
/// whose RNN is the attribute `rnn`).
inline Layout torch_rnn_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
  const std::string l = "_l" + std::to_string(layer);
  return {{module + "weight_ih" + l, {cell + "_W_xh"}, false},
          {module + "weight_hh" + l, {cell + "_W_hh"}, false},
          {module + "bias_ih" + l, {cell + "_b_h"}, true},
          {module + "bias_hh" + l, {cell + "_b_h"}, true}};
}

/// torch.nn.LSTM layer <-> loopgrad's lstm cell (gates stacked in PyTorch's order i, f, g, o).
inline Layout torch_lstm_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
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
inline Layout torch_gru_layout(const std::string& cell, const std::string& module = "", int layer = 0) {
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
inline Layout torch_linear_layout(const std::string& weight, const std::string& bias, const std::string& module) {
  return {{module + "weight", {weight}, false}, {module + "bias", {bias}, false}};
}

/// Parameters read from `path` under `layout`, starting from `params` (groups the layout does not
/// name keep their values there). Throws, changing nothing, on any mismatch.
template <class T>
std::vector<T> import_parameters(const ir::Network& net, const std::filesystem::path& path, const Layout& layout,
                                 std::vector<T> params) {
  std::size_t count = 0;
  for (const auto& p : net.params) count += static_cast<std::size_t>(p.size());
  if (params.size() != count)
    throw std::invalid_argument("import_parameters: network '" + net.name + "' has " + std::to_string(count) +
                                " parameters, the starting vector " + std::to_string(params.size()));
  const auto file = safetensors::read(path);
  std::vector<std::size_t> offset;
  std::size_t off = 0;
  for (const auto& p : net.params) {
    offset.push_back(off);
    off += static_cast<std::size_t>(p.size());
  }
  std::vector<bool> zeroed(net.params.size(), false);
  for (const auto& m : layout) {
    const std::string where = "'" + path.string() + "'";
    auto it = file.tensors.find(m.tensor);
    if (it == file.tensors.end()) {
      std::string holds;
      for (const auto& p : m.params) holds += (holds.empty() ? "" : ", ") + p;
      throw safetensors::SafetensorsError(where + " has no tensor '" + m.tensor + "' (it holds " + holds + " of network '" +
                                          net.name + "')");
    }
    const auto shape = detail::mapped_shape(net, m);
    if (it->second.shape != shape)
      throw safetensors::SafetensorsError(where + ": tensor '" + m.tensor + "' has shape " + detail::shape_string(it->second.shape) +
                                          " but network '" + net.name + "' needs " + detail::shape_string(shape));
    std::vector<T> values;
    try {
      values = it->second.values<T>(m.tensor);
    } catch (const safetensors::SafetensorsError& e) {
      throw safetensors::SafetensorsError(where + ": " + e.what());  // the file too, not only the tensor
    }
    std::size_t at = 0;
    for (const auto& name : m.params) {
      const int p = net.find_param(name);
      const auto n = static_cast<std::size_t>(net.params[static_cast<std::size_t>(p)].size());
      T* out = params.data() + offset[static_cast<std::size_t>(p)];
      if (m.summed && !zeroed[static_cast<std::size_t>(p)]) std::fill(out, out + n, T(0));
      zeroed[static_cast<std::size_t>(p)] = true;
      for (std::size_t i = 0; i < n; ++i) out[i] = m.summed ? out[i] + values[at + i] : values[at + i];
      at += n;
    }
  }
  return params;
}

namespace detail {
/// export_parameters and export_gradient: `values` in the parameter layout to `path` under
/// `layout`. A group summed from several tensors is written whole into the first of them and as
/// zeros into the others (`split_sum`: parameters, so that importing the file sums back to the
/// group) or whole into every one of them (gradients: d/d(bias_ih) = d/d(bias_hh) = d/d(b_h)).
template <class T>
void export_values(const ir::Network& net, const std::vector<T>& params, const std::filesystem::path& path,
                   const Layout& layout, bool split_sum) {
  std::vector<std::size_t> offset;
  std::size_t off = 0;
  for (const auto& p : net.params) {
    offset.push_back(off);
    off += static_cast<std::size_t>(p.size());
  }
  safetensors::File file;
  file.metadata["format"] = "pt";
  file.metadata["loopgrad.network"] = net.name;
  std::vector<bool> written(net.params.size(), false);
  for (const auto& m : layout) {
    std::vector<T> values;
    for (const auto& name : m.params) {
      const int p = net.find_param(name);
      if (p < 0) throw std::invalid_argument("export_parameters: network '" + net.name + "' has no parameter group '" + name + "'");
      const auto n = static_cast<std::size_t>(net.params[static_cast<std::size_t>(p)].size());
      const T* in = params.data() + offset[static_cast<std::size_t>(p)];
      const bool zero = split_sum && m.summed && written[static_cast<std::size_t>(p)];
      for (std::size_t i = 0; i < n; ++i) values.push_back(zero ? T(0) : in[i]);
      written[static_cast<std::size_t>(p)] = true;
    }
    file.tensors[m.tensor] = safetensors::Tensor::from(values, detail::mapped_shape(net, m));
  }
  safetensors::write(path, file);
}
}  // namespace detail

/// Writes `params` to `path` under `layout` (F64 for double, F32 for float), with the network's
/// name in the metadata. A group PyTorch splits in two (the RNN's biases) goes whole into the first
/// tensor and as zeros into the second, so that PyTorch's sum is the group.
template <class T>
void export_parameters(const ir::Network& net, const std::vector<T>& params, const std::filesystem::path& path,
                       const Layout& layout) {
  detail::export_values(net, params, path, layout, true);
}

/// Writes a gradient (dC/dP in the parameter layout) to `path` in PyTorch's names under `layout`:
/// what PyTorch's autograd puts in each parameter's .grad. A group PyTorch splits in two gets the
/// group's gradient in both tensors (the derivative by each summand is the derivative by the sum).
template <class T>
void export_gradient(const ir::Network& net, const std::vector<T>& gradient, const std::filesystem::path& path,
                     const Layout& layout) {
  detail::export_values(net, gradient, path, layout, false);
}

}  // namespace loopgrad::runtime
