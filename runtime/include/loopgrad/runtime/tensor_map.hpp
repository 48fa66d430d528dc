#pragma once
// A parameter vector in and out of safetensors files, tensor by tensor, on the standard library
// alone: the one implementation behind the runtime's parameter I/O on a network
// (loopgrad/runtime/parameter_io.hpp) and an app's on a generated header
// (loopgrad/runtime/kernel_io.hpp). A Map says where each parameter group lies in the vector and
// which groups, stacked row-wise, make each tensor of the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/runtime/safetensors.hpp"

namespace loopgrad::runtime::tensor_map {

/// A parameter group: where its values lie in the parameter vector and its shape.
struct Group {
  std::string name;         ///< loopgrad's name of the group
  std::size_t offset = 0;   ///< its first value in the parameter vector
  std::size_t rows = 0;     ///< rows (a dense weight is to x from)
  std::size_t cols = 1;     ///< columns, 1 for a vector
  bool matrix = false;      ///< a dense weight, written as a 2-D tensor; otherwise 1-D
  std::size_t size() const { return rows * cols; }  ///< its number of values
};

/// One tensor of the file: the groups stacked row-wise into it.
struct Tensor {
  std::string name;                 ///< the tensor's name in the file
  std::vector<std::size_t> groups;  ///< indices into Map::groups
  /// One of several tensors summed into one group (PyTorch's two RNN biases): see ir::TensorMapping.
  bool summed = false;
};

/// A network's parameter vector and a file's tensors on it.
struct Map {
  std::string network;           ///< the network's name, in messages and the file's metadata
  std::size_t size = 0;          ///< values in the parameter vector
  std::vector<Group> groups;     ///< every parameter group
  std::vector<Tensor> tensors;   ///< the file's tensors
};

/// A tensor's shape: [rows, cols] when its groups are dense weights, [rows] otherwise.
inline std::vector<std::int64_t> shape(const Map& map, const Tensor& t) {
  std::int64_t rows = 0, cols = 1;
  bool matrix = false;
  for (std::size_t g : t.groups) {
    rows += static_cast<std::int64_t>(map.groups[g].rows);
    cols = static_cast<std::int64_t>(map.groups[g].cols);
    matrix = map.groups[g].matrix;
  }
  if (matrix) return {rows, cols};
  return {rows};
}

/// A shape as "[2, 3]".
inline std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

/// Reads the tensors `map` names from `path` into `values` (the parameter vector; groups no tensor
/// names keep their values). Every tensor is checked first (present, its shape, its dtype F32 or
/// F64, the file intact): a mismatch throws SafetensorsError naming the file, the tensor and what
/// was expected, and `values` is left as it was.
template <class T>
void import_values(const Map& map, const std::filesystem::path& path, std::span<T> values) {
  if (values.size() != map.size)
    throw std::invalid_argument("network '" + map.network + "' has " + std::to_string(map.size) + " parameters, the vector to load into " +
                                std::to_string(values.size()));
  const auto file = safetensors::read(path);
  const std::string where = "'" + path.string() + "'";
  std::vector<T> out(values.begin(), values.end());
  std::vector<bool> zeroed(map.groups.size(), false);
  for (const auto& t : map.tensors) {
    auto it = file.tensors.find(t.name);
    if (it == file.tensors.end()) {
      std::string holds;
      for (std::size_t g : t.groups) holds += (holds.empty() ? "" : ", ") + map.groups[g].name;
      throw safetensors::SafetensorsError(where + " has no tensor '" + t.name + "' (it holds " + holds + " of network '" + map.network + "')");
    }
    const auto want = shape(map, t);
    if (it->second.shape != want)
      throw safetensors::SafetensorsError(where + ": tensor '" + t.name + "' has shape " + shape_string(it->second.shape) + " but network '" +
                                          map.network + "' needs " + shape_string(want));
    std::vector<T> read;
    try {
      read = it->second.values<T>(t.name);
    } catch (const safetensors::SafetensorsError& e) {
      throw safetensors::SafetensorsError(where + ": " + e.what());  // the file too, not only the tensor
    }
    std::size_t at = 0;
    for (std::size_t g : t.groups) {
      const auto& group = map.groups[g];
      T* to = out.data() + group.offset;
      if (t.summed && !zeroed[g])
        for (std::size_t i = 0; i < group.size(); ++i) to[i] = T(0);
      zeroed[g] = true;
      for (std::size_t i = 0; i < group.size(); ++i) to[i] = t.summed ? to[i] + read[at + i] : read[at + i];
      at += group.size();
    }
  }
  std::copy(out.begin(), out.end(), values.begin());
}

/// Writes `values` (the parameter vector, or a gradient in its layout) to `path` as the tensors
/// `map` names (F64 for double, F32 for float), with the network's name in the metadata. A group
/// summed from several tensors goes whole into the first of them and as zeros into the others when
/// `split_sum` (parameters: importing the file sums back to the group), whole into every one
/// otherwise (gradients: the derivative by each summand is the derivative by the sum).
template <class T>
void export_values(const Map& map, std::span<const T> values, const std::filesystem::path& path, bool split_sum) {
  if (values.size() != map.size)
    throw std::invalid_argument("network '" + map.network + "' has " + std::to_string(map.size) + " parameters, the vector to write " +
                                std::to_string(values.size()));
  safetensors::File file;
  file.metadata["format"] = "pt";
  file.metadata["loopgrad.network"] = map.network;
  std::vector<bool> written(map.groups.size(), false);
  for (const auto& t : map.tensors) {
    std::vector<T> out;
    for (std::size_t g : t.groups) {
      const auto& group = map.groups[g];
      const bool zero = split_sum && t.summed && written[g];
      for (std::size_t i = 0; i < group.size(); ++i) out.push_back(zero ? T(0) : values[group.offset + i]);
      written[g] = true;
    }
    file.tensors[t.name] = safetensors::Tensor::from(out, shape(map, t));
  }
  safetensors::write(path, file);
}

}  // namespace loopgrad::runtime::tensor_map
