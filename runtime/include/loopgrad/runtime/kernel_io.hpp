#pragma once
// Parameters, gradients and checkpoints of a generated kernel in safetensors files, for an app
// that includes nothing of loopgrad but a generated header and this header: the standard library
// alone (no Boost, fmt, JSON library or loopgrad library to link; CMake: loopgrad::kernel_io). The
// files are the runtime's: what loopgrad::runtime::export_parameters writes, this reads, and
// PyTorch reads and writes both (safetensors.torch.save_file / load_file).
//
// Every function takes the generated namespace's Kernel class as its template argument, and the
// arrays (Params::flat, State::flat, ...) as spans:
//
//   #include "lstm_kernel.hpp"                 // generated, with a PyTorch layout in its spec
//   #include <loopgrad/runtime/kernel_io.hpp>
//   namespace io = loopgrad::runtime::kernel_io;
//   lstm_kernel::Params params;
//   io::import_torch<lstm_kernel::Kernel>("model.safetensors", params.flat);   // PyTorch's weights
//   ... rtrl_step(params, state, sensitivity, input, &target, gradient, step) ...
//   io::export_torch_gradient<lstm_kernel::Kernel>("grad.safetensors", gradient.flat);
//   io::save_checkpoint<lstm_kernel::Kernel>("run.safetensors", params.flat, state.flat, sensitivity.flat, steps);
//
// Every read checks the whole file before it changes anything and throws
// safetensors::SafetensorsError naming the file, the tensor and what was expected; every write is
// atomic (a temporary file synced, then renamed into place).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "loopgrad/runtime/checkpoint_file.hpp"
#include "loopgrad/runtime/tensor_map.hpp"

namespace loopgrad::runtime::kernel_io {

namespace detail {

/// The kernel's parameter groups (its parameter_groups table), no tensors yet.
template <class Kernel>
tensor_map::Map groups() {
  tensor_map::Map map;
  map.network = Kernel::network();
  map.size = Kernel::param_count();
  for (const auto& g : Kernel::parameter_table()) map.groups.push_back({g.name, g.offset, g.rows, g.cols, g.matrix});
  return map;
}

/// One tensor per parameter group, in loopgrad's names.
template <class Kernel>
tensor_map::Map loopgrad_names() {
  auto map = groups<Kernel>();
  for (std::size_t g = 0; g < map.groups.size(); ++g) map.tensors.push_back({map.groups[g].name, {g}, false});
  return map;
}

/// The spec's PyTorch layout (the torch_tensors table).
template <class Kernel>
tensor_map::Map torch_names() {
  static_assert(!Kernel::torch_table().empty(),
                "this kernel's spec gave no PyTorch layout: pass one as LOOPGRAD_GENERATOR's second argument "
                "(loopgrad/ir/torch_layout.hpp), or use kernel_io::load and kernel_io::save (loopgrad's names)");
  auto map = groups<Kernel>();
  const auto parts = Kernel::torch_table_groups();
  for (const auto& t : Kernel::torch_table()) {
    tensor_map::Tensor tensor{t.name, {}, t.summed};
    for (std::size_t i = t.first; i < t.first + t.count; ++i) tensor.groups.push_back(parts[i]);
    map.tensors.push_back(std::move(tensor));
  }
  return map;
}

inline void check_size(std::size_t got, std::size_t want, const char* what, const char* network) {
  if (got != want)
    throw std::invalid_argument(std::string("kernel_io: network '") + network + "' has " + std::to_string(want) + " " + what +
                                " values, the array given " + std::to_string(got));
}

}  // namespace detail

/// Reads `params` (Params::flat) from `path`, one tensor per parameter group in loopgrad's names
/// (what save and runtime::export_parameters with the default layout write).
template <class Kernel>
void load(const std::filesystem::path& path, std::span<typename Kernel::Scalar> params) {
  tensor_map::import_values(detail::loopgrad_names<Kernel>(), path, params);
}

/// Writes `params` to `path`, one tensor per parameter group in loopgrad's names.
template <class Kernel>
void save(const std::filesystem::path& path, std::span<const typename Kernel::Scalar> params) {
  tensor_map::export_values(detail::loopgrad_names<Kernel>(), params, path, true);
}

/// Reads `params` from a PyTorch state_dict saved as safetensors, in the names and layouts of the
/// spec's PyTorch layout (groups it does not name keep their values). PyTorch's two RNN biases
/// are summed into loopgrad's one.
template <class Kernel>
void import_torch(const std::filesystem::path& path, std::span<typename Kernel::Scalar> params) {
  tensor_map::import_values(detail::torch_names<Kernel>(), path, params);
}

/// Writes `params` in PyTorch's names (safetensors.torch.load_file and load_state_dict read it): a
/// group PyTorch splits in two goes whole into the first tensor and as zeros into the second.
template <class Kernel>
void export_torch(const std::filesystem::path& path, std::span<const typename Kernel::Scalar> params) {
  tensor_map::export_values(detail::torch_names<Kernel>(), params, path, true);
}

/// Writes a gradient (Gradient::flat) in PyTorch's names: what autograd puts in each parameter's
/// .grad. A group PyTorch splits in two gets the whole gradient in both tensors.
template <class Kernel>
void export_torch_gradient(const std::filesystem::path& path, std::span<const typename Kernel::Scalar> gradient) {
  tensor_map::export_values(detail::torch_names<Kernel>(), gradient, path, false);
}

/// Writes an app's online learning state: the parameters, the recurrent state, the sensitivity
/// Delta and the step count, with `metadata` of the app's own, the network's name and a CRC-32C
/// over everything (loopgrad's checkpoint format 2, algorithm "kernel_io").
template <class Kernel>
void save_checkpoint(const std::filesystem::path& path, std::span<const typename Kernel::Scalar> params,
                     std::span<const typename Kernel::Scalar> state, std::span<const typename Kernel::Scalar> sensitivity,
                     std::int64_t steps = 0, const std::map<std::string, std::string>& metadata = {}) {
  using T = typename Kernel::Scalar;
  detail::check_size(params.size(), Kernel::param_count(), "parameter", Kernel::network());
  detail::check_size(state.size(), Kernel::state_size(), "state", Kernel::network());
  detail::check_size(sensitivity.size(), Kernel::sensitivity_size(), "sensitivity", Kernel::network());
  if (steps < 0) throw std::invalid_argument("kernel_io::save_checkpoint: a step count is >= 0");
  auto f = runtime::detail::new_checkpoint(metadata, Kernel::network(), "kernel_io", steps, false);
  runtime::detail::put(f, "params", std::vector<T>(params.begin(), params.end()));
  runtime::detail::put(f, "state", std::vector<T>(state.begin(), state.end()));
  runtime::detail::put(f, "sensitivity", std::vector<T>(sensitivity.begin(), sensitivity.end()));
  runtime::detail::write_checkpoint(path, f);
}

/// Reads what save_checkpoint wrote into the three arrays and returns the step count. Checks the
/// checksum, the network's name, the writer, the scalar type and every size first: on any
/// mismatch it throws naming the file and what differs, and changes nothing.
template <class Kernel>
std::int64_t load_checkpoint(const std::filesystem::path& path, std::span<typename Kernel::Scalar> params,
                             std::span<typename Kernel::Scalar> state, std::span<typename Kernel::Scalar> sensitivity) {
  using T = typename Kernel::Scalar;
  detail::check_size(params.size(), Kernel::param_count(), "parameter", Kernel::network());
  detail::check_size(state.size(), Kernel::state_size(), "state", Kernel::network());
  detail::check_size(sensitivity.size(), Kernel::sensitivity_size(), "sensitivity", Kernel::network());
  const std::string where = "checkpoint '" + path.string() + "'";
  const auto f = runtime::detail::open_checkpoint(path, Kernel::network(), "kernel_io", where);
  const auto steps = runtime::detail::integer(runtime::detail::meta(f, "steps", where), "steps", where);
  const auto p = runtime::detail::take<T>(f, "params", params.size(), where);
  const auto s = runtime::detail::take<T>(f, "state", state.size(), where);
  const auto d = runtime::detail::take<T>(f, "sensitivity", sensitivity.size(), where);
  std::copy(p.begin(), p.end(), params.begin());
  std::copy(s.begin(), s.end(), state.begin());
  std::copy(d.begin(), d.end(), sensitivity.begin());
  return steps;
}

}  // namespace loopgrad::runtime::kernel_io
