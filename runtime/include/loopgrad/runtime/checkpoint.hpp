#pragma once
// Checkpoints: a training run's whole state in one safetensors file (readable from Python too):
// parameters, recurrent state, sensitivity, the learner's accumulated gradient and step count,
// and the optimizer's state. A run resumed from a checkpoint continues bit for bit as if it had
// never stopped. Writes are atomic (a temporary file of the writer's own, synced, then renamed);
// a CRC-32C over every tensor and metadata entry is written with the file and checked on load;
// loads check everything (the checksum, the network's name, every size, the scalar type, every
// number in the metadata with its range) before they change anything. ExactRtrl and
// BlockedRtrl each have their own pair of functions; a checkpoint names the learner that wrote it.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "loopgrad/runtime/checksum.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"
#include "loopgrad/runtime/safetensors.hpp"

namespace loopgrad::runtime {

namespace detail {

template <class T>
void put(safetensors::File& f, const std::string& name, const std::vector<T>& values) {
  f.tensors[name] = safetensors::Tensor::from(values, {static_cast<std::int64_t>(values.size())});
}

template <class T>
std::vector<T> take(const safetensors::File& f, const std::string& name, std::size_t size, const std::string& where) {
  auto it = f.tensors.find(name);
  if (it == f.tensors.end()) throw safetensors::SafetensorsError(where + " has no tensor '" + name + "'");
  const std::string want = std::is_same_v<T, double> ? "F64" : "F32";
  if (it->second.dtype != want)
    throw safetensors::SafetensorsError(where + ": tensor '" + name + "' is " + it->second.dtype + ", this run uses " + want);
  if (it->second.shape != std::vector<std::int64_t>{static_cast<std::int64_t>(size)})
    throw safetensors::SafetensorsError(where + ": tensor '" + name + "' has " + std::to_string(it->second.element_count()) +
                                        " values, this run needs " + std::to_string(size));
  return it->second.values<T>(name);
}

/// The length of a 1-D tensor that must hold either nothing or `size` values (optimizer state that
/// appears with the first update).
template <class T>
std::vector<T> take_empty_or(const safetensors::File& f, const std::string& name, std::size_t size, const std::string& where) {
  auto it = f.tensors.find(name);
  if (it == f.tensors.end()) throw safetensors::SafetensorsError(where + " has no tensor '" + name + "'");
  return take<T>(f, name, it->second.element_count() == 0 ? 0 : size, where);
}

inline const std::string& meta(const safetensors::File& f, const std::string& key, const std::string& where) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) throw safetensors::SafetensorsError(where + " has no metadata '" + key + "'");
  return it->second;
}

/// A checkpoint's metadata every learner writes: the user's, then what loading checks.
inline safetensors::File new_checkpoint(const std::map<std::string, std::string>& user_metadata, const std::string& network,
                                        const std::string& algorithm, std::int64_t steps, bool gradient_ready) {
  safetensors::File f;
  f.metadata = user_metadata;
  f.metadata["loopgrad.checkpoint"] = "2";
  f.metadata["network"] = network;
  f.metadata["algorithm"] = algorithm;
  f.metadata["steps"] = std::to_string(steps);
  f.metadata["gradient_ready"] = gradient_ready ? "1" : "0";
  return f;
}

/// The checkpoint's CRC-32C: every metadata entry but the checksum itself and every tensor (name,
/// dtype, shape, bytes), in name order, as "crc32c:" and eight hex digits.
inline std::string checksum(const safetensors::File& f) {
  std::uint32_t crc = 0;
  auto add = [&](const std::string& text) { crc = crc32c(crc, text.c_str(), text.size() + 1); };
  for (const auto& [key, value] : f.metadata)
    if (key != "loopgrad.checksum") {
      add(key);
      add(value);
    }
  for (const auto& [name, t] : f.tensors) {
    add(name);
    add(t.dtype);
    std::string shape;
    for (auto d : t.shape) shape += std::to_string(d) + ",";
    add(shape);
    crc = crc32c(crc, t.bytes.data(), t.bytes.size());
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(crc));
  return std::string("crc32c:") + hex;
}

/// Writes a checkpoint with its checksum.
inline void write_checkpoint(const std::filesystem::path& path, safetensors::File& f) {
  f.metadata["loopgrad.checksum"] = checksum(f);
  safetensors::write(path, f);
}

/// Reads a checkpoint and checks that it is one, intact (its checksum; checkpoints of format 1,
/// from before checksums, carry none), of `network`, written by `algorithm`'s learner (checkpoints
/// from before the blocked algorithm carry no algorithm and are RTRL's).
inline safetensors::File open_checkpoint(const std::filesystem::path& path, const std::string& network,
                                         const std::string& algorithm, const std::string& where) {
  auto f = safetensors::read(path);
  const auto format = f.metadata.find("loopgrad.checkpoint");
  if (format == f.metadata.end()) throw safetensors::SafetensorsError(where + " is not a loopgrad checkpoint");
  if (format->second != "1" && format->second != "2")
    throw safetensors::SafetensorsError(where + " has checkpoint format '" + format->second +
                                        "'; this loopgrad reads formats 1 and 2 (a newer loopgrad wrote it?)");
  const auto stored = f.metadata.find("loopgrad.checksum");
  if (format->second == "2" && stored == f.metadata.end())
    throw safetensors::SafetensorsError(where + " has no checksum ('loopgrad.checksum'); the file is damaged");
  if (stored != f.metadata.end())
    if (const auto computed = checksum(f); stored->second != computed)
      throw safetensors::SafetensorsError(where + ": its checksum does not match its contents (" + stored->second + " stored, " +
                                          computed + " computed); the file was changed or damaged after it was written");
  if (meta(f, "network", where) != network)
    throw safetensors::SafetensorsError(where + " belongs to network '" + meta(f, "network", where) + "', not '" + network + "'");
  const auto it = f.metadata.find("algorithm");
  const std::string written = it == f.metadata.end() ? "rtrl" : it->second;
  if (written != algorithm)
    throw safetensors::SafetensorsError(where + " was written by the " + written + " learner; this run uses " + algorithm);
  return f;
}

inline std::string schedule_name(BlockSchedule s) { return s == BlockSchedule::real_time ? "real_time" : "block_end"; }

/// A metadata integer: decimal digits only (no sign, space, exponent or suffix), within [low, high].
inline std::int64_t integer(const std::string& text, const std::string& key, const std::string& where,
                            std::int64_t low = 0, std::int64_t high = INT64_MAX) {
  std::int64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [at, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || text[0] == '-' || error != std::errc() || at != end)
    throw safetensors::SafetensorsError(where + ": metadata '" + key + "' is '" + text + "', not a non-negative integer");
  if (value < low || value > high)
    throw safetensors::SafetensorsError(where + ": metadata '" + key + "' is " + text + ", outside " + std::to_string(low) +
                                        ".." + std::to_string(high));
  return value;
}

/// A metadata flag: "0" or "1".
inline bool flag(const safetensors::File& f, const std::string& key, const std::string& where) {
  const auto& text = meta(f, key, where);
  if (text != "0" && text != "1")
    throw safetensors::SafetensorsError(where + ": metadata '" + key + "' is '" + text + "', not 0 or 1");
  return text == "1";
}

}  // namespace detail

/// Writes the optimizer's state into `f`: its name, hyperparameters and per-parameter vectors.
template <class T>
void save_optimizer(const Sgd<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "sgd";
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate});
}
/// Restores what save_optimizer wrote; `where` names the file in errors, `n` is the parameter
/// count the vectors must have. Throws SafetensorsError when the file holds another optimizer.
template <class T>
void load_optimizer(Sgd<T>& o, const safetensors::File& f, const std::string& where, std::size_t) {
  if (detail::meta(f, "optimizer", where) != "sgd") throw safetensors::SafetensorsError(where + " holds a " + detail::meta(f, "optimizer", where) + " optimizer, this run uses sgd");
  o.rate = detail::take<T>(f, "optimizer.hyperparameters", 1, where)[0];
}
/// @copydoc save_optimizer(const Sgd<T>&, safetensors::File&)
template <class T>
void save_optimizer(const Momentum<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "momentum";
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate, o.momentum});
  detail::put(f, "optimizer.velocity", o.velocity);
}
/// @copydoc load_optimizer(Sgd<T>&, const safetensors::File&, const std::string&, std::size_t)
template <class T>
void load_optimizer(Momentum<T>& o, const safetensors::File& f, const std::string& where, std::size_t n) {
  if (detail::meta(f, "optimizer", where) != "momentum") throw safetensors::SafetensorsError(where + " holds a " + detail::meta(f, "optimizer", where) + " optimizer, this run uses momentum");
  Momentum<T> loaded;
  const auto h = detail::take<T>(f, "optimizer.hyperparameters", 2, where);
  loaded.rate = h[0];
  loaded.momentum = h[1];
  loaded.velocity = detail::take_empty_or<T>(f, "optimizer.velocity", n, where);
  o = std::move(loaded);
}
/// @copydoc save_optimizer(const Sgd<T>&, safetensors::File&)
template <class T>
void save_optimizer(const Adam<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "adam";
  f.metadata["optimizer.steps"] = std::to_string(o.steps);
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate, o.beta1, o.beta2, o.epsilon});
  detail::put(f, "optimizer.first", o.first);
  detail::put(f, "optimizer.second", o.second);
}
/// @copydoc load_optimizer(Sgd<T>&, const safetensors::File&, const std::string&, std::size_t)
template <class T>
void load_optimizer(Adam<T>& o, const safetensors::File& f, const std::string& where, std::size_t n) {
  if (detail::meta(f, "optimizer", where) != "adam") throw safetensors::SafetensorsError(where + " holds a " + detail::meta(f, "optimizer", where) + " optimizer, this run uses adam");
  Adam<T> loaded;
  const auto h = detail::take<T>(f, "optimizer.hyperparameters", 4, where);
  loaded.rate = h[0];
  loaded.beta1 = h[1];
  loaded.beta2 = h[2];
  loaded.epsilon = h[3];
  loaded.steps = detail::integer(detail::meta(f, "optimizer.steps", where), "optimizer.steps", where);
  loaded.first = detail::take_empty_or<T>(f, "optimizer.first", n, where);
  loaded.second = detail::take_empty_or<T>(f, "optimizer.second", n, where);
  o = std::move(loaded);
}

/// Saves an online run with exact RTRL.
template <class Kernel, class T, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const std::string& network, const std::vector<T>& params,
                     const ExactRtrl<Kernel, T>& learner, const Optimizer& optimizer,
                     const std::map<std::string, std::string>& user_metadata = {}) {
  auto f = detail::new_checkpoint(user_metadata, network, "rtrl", learner.rtrl().steps(), learner.gradient_ready());
  detail::put(f, "params", params);
  detail::put(f, "state", learner.rtrl().state());
  detail::put(f, "sensitivity", learner.rtrl().sensitivity());
  detail::put(f, "accumulated_gradient", learner.gradient());
  save_optimizer(optimizer, f);
  detail::write_checkpoint(path, f);
}

/// Restores what save_checkpoint wrote into `params`, `learner` and `optimizer` (built for the same
/// network), or throws and leaves all three as they were.
template <class Kernel, class T, class Optimizer>
void load_checkpoint(const std::filesystem::path& path, const std::string& network, std::vector<T>& params,
                     ExactRtrl<Kernel, T>& learner, Optimizer& optimizer) {
  const std::string where = "checkpoint '" + path.string() + "'";
  const auto f = detail::open_checkpoint(path, network, "rtrl", where);
  auto new_params = detail::take<T>(f, "params", params.size(), where);
  auto state = detail::take<T>(f, "state", learner.rtrl().state().size(), where);
  auto sensitivity = detail::take<T>(f, "sensitivity", learner.rtrl().sensitivity().size(), where);
  auto accumulated = detail::take<T>(f, "accumulated_gradient", params.size(), where);
  const auto steps = detail::integer(detail::meta(f, "steps", where), "steps", where);
  const bool ready = detail::flag(f, "gradient_ready", where);
  Optimizer new_optimizer = optimizer;
  load_optimizer(new_optimizer, f, where, params.size());
  // Everything checked: commit.
  params = std::move(new_params);
  learner.rtrl().state() = std::move(state);
  learner.rtrl().sensitivity() = std::move(sensitivity);
  learner.rtrl().set_steps(steps);
  learner.accumulated() = std::move(accumulated);
  learner.ready_flag() = ready;
  optimizer = std::move(new_optimizer);
}

/// Saves an online run with the blocked exact algorithm, mid-block too: the start (R_s, Delta_s) of
/// the oldest stored step and what each stored step ran with (parameters, input, target), from
/// which loading replays the forward steps (with the real-time schedule: the closing block's steps,
/// then the current block's).
template <class Kernel, class T, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const std::string& network, const std::vector<T>& params,
                     const BlockedRtrl<Kernel, T>& learner, const Optimizer& optimizer,
                     const std::map<std::string, std::string>& user_metadata = {}) {
  const auto snap = learner.snapshot();
  auto f = detail::new_checkpoint(user_metadata, network, "blocked", snap.steps, snap.ready);
  f.metadata["block_length"] = std::to_string(learner.block_length());
  f.metadata["block.schedule"] = detail::schedule_name(learner.schedule());
  f.metadata["block.closing_steps"] = std::to_string(snap.closing);
  f.metadata["block.steps"] = std::to_string(snap.inputs.size());
  f.metadata["block.pending"] = std::to_string(snap.pending);
  f.metadata["block.param_vectors"] = std::to_string(snap.params.size());
  detail::put(f, "params", params);
  detail::put(f, "state", learner.state());
  detail::put(f, "block.start_state", snap.block_start_state);
  detail::put(f, "sensitivity", snap.sensitivity);
  detail::put(f, "accumulated_gradient", snap.accumulated);
  std::vector<T> pool, index, has_target, inputs, targets;
  for (const auto& p : snap.params) pool.insert(pool.end(), p.begin(), p.end());
  for (std::size_t j = 0; j < snap.inputs.size(); ++j) {
    index.push_back(static_cast<T>(snap.param_index[j]));
    has_target.push_back(snap.targets[j].empty() ? T(0) : T(1));
    inputs.insert(inputs.end(), snap.inputs[j].begin(), snap.inputs[j].end());
    if (snap.targets[j].empty())
      targets.resize(targets.size() + learner.kernel().target_size(), T(0));
    else
      targets.insert(targets.end(), snap.targets[j].begin(), snap.targets[j].end());
  }
  detail::put(f, "block.params", pool);
  detail::put(f, "block.param_index", index);
  detail::put(f, "block.has_target", has_target);
  detail::put(f, "block.inputs", inputs);
  detail::put(f, "block.targets", targets);
  save_optimizer(optimizer, f);
  detail::write_checkpoint(path, f);
}

/// Restores what save_checkpoint wrote into `params`, `learner` (same network, block length and
/// schedule) and `optimizer`, or throws and leaves all three as they were. The state after the replay must be the
/// saved one, bit for bit.
template <class Kernel, class T, class Optimizer>
void load_checkpoint(const std::filesystem::path& path, const std::string& network, std::vector<T>& params,
                     BlockedRtrl<Kernel, T>& learner, Optimizer& optimizer) {
  const std::string where = "checkpoint '" + path.string() + "'";
  const auto f = detail::open_checkpoint(path, network, "blocked", where);
  const auto& k = learner.kernel();
  const auto block_length = detail::integer(detail::meta(f, "block_length", where), "block_length", where, 1);
  if (block_length != learner.block_length())
    throw safetensors::SafetensorsError(where + " has block length " + std::to_string(block_length) +
                                        ", this learner " + std::to_string(learner.block_length()));
  auto count = [&](const std::string& key, std::int64_t limit) {
    return static_cast<std::size_t>(detail::integer(detail::meta(f, key, where), key, where, 0, limit));
  };
  // Checkpoints from before the real-time schedule carry no schedule: theirs is block_end.
  const auto schedule = f.metadata.count("block.schedule") != 0 ? f.metadata.at("block.schedule") : std::string("block_end");
  if (schedule != detail::schedule_name(learner.schedule()))
    throw safetensors::SafetensorsError(where + " was written with the " + schedule + " schedule; this learner uses " +
                                        detail::schedule_name(learner.schedule()));
  const bool real_time = learner.schedule() == BlockSchedule::real_time;
  const std::size_t closing =
      f.metadata.count("block.closing_steps") != 0 ? count("block.closing_steps", real_time ? block_length : 0) : 0;
  if (closing != 0 && closing != static_cast<std::size_t>(block_length))
    throw safetensors::SafetensorsError(where + ": metadata 'block.closing_steps' is " + std::to_string(closing) +
                                        "; it must be 0 or the block length " + std::to_string(block_length));
  const std::size_t steps_in_block = count("block.steps", static_cast<std::int64_t>(closing) + block_length - 1);
  if (steps_in_block < closing)
    throw safetensors::SafetensorsError(where + ": metadata 'block.steps' is " + std::to_string(steps_in_block) +
                                        ", fewer than the closing block's " + std::to_string(closing));
  const std::size_t vectors = count("block.param_vectors", static_cast<std::int64_t>(steps_in_block));
  typename BlockedRtrl<Kernel, T>::Snapshot snap;
  snap.steps = detail::integer(detail::meta(f, "steps", where), "steps", where);
  snap.ready = detail::flag(f, "gradient_ready", where);
  snap.pending = count("block.pending", static_cast<std::int64_t>(steps_in_block - closing));
  snap.closing = closing;
  auto new_params = detail::take<T>(f, "params", params.size(), where);
  const auto state = detail::take<T>(f, "state", k.state_size(), where);
  snap.block_start_state = detail::take<T>(f, "block.start_state", k.state_size(), where);
  snap.sensitivity = detail::take<T>(f, "sensitivity", k.sensitivity_size(), where);
  snap.accumulated = detail::take<T>(f, "accumulated_gradient", params.size(), where);
  const auto pool = detail::take<T>(f, "block.params", vectors * params.size(), where);
  const auto index = detail::take<T>(f, "block.param_index", steps_in_block, where);
  const auto has_target = detail::take<T>(f, "block.has_target", steps_in_block, where);
  const auto inputs = detail::take<T>(f, "block.inputs", steps_in_block * k.input_size(), where);
  const auto targets = detail::take<T>(f, "block.targets", steps_in_block * k.target_size(), where);
  for (std::size_t v = 0; v < vectors; ++v)
    snap.params.emplace_back(pool.begin() + static_cast<std::ptrdiff_t>(v * params.size()),
                             pool.begin() + static_cast<std::ptrdiff_t>((v + 1) * params.size()));
  for (std::size_t j = 0; j < steps_in_block; ++j) {
    if (!(index[j] >= T(0) && index[j] < static_cast<T>(vectors)))
      throw safetensors::SafetensorsError(where + ": block step " + std::to_string(j) + " names no parameter vector");
    snap.param_index.push_back(static_cast<std::size_t>(index[j]));
    snap.inputs.emplace_back(inputs.begin() + static_cast<std::ptrdiff_t>(j * k.input_size()),
                             inputs.begin() + static_cast<std::ptrdiff_t>((j + 1) * k.input_size()));
    if (has_target[j] != T(0))
      snap.targets.emplace_back(targets.begin() + static_cast<std::ptrdiff_t>(j * k.target_size()),
                                targets.begin() + static_cast<std::ptrdiff_t>((j + 1) * k.target_size()));
    else
      snap.targets.emplace_back();
  }
  Optimizer new_optimizer = optimizer;
  load_optimizer(new_optimizer, f, where, params.size());
  // Everything read and checked: replay into a copy of the learner, compare, then commit.
  BlockedRtrl<Kernel, T> restored = learner;
  restored.restore(snap);
  if (restored.state() != state)
    throw safetensors::SafetensorsError(where + ": replaying the block's " + std::to_string(steps_in_block) +
                                        " steps does not give the saved state; the file does not belong to this kernel");
  params = std::move(new_params);
  learner = std::move(restored);
  optimizer = std::move(new_optimizer);
}

}  // namespace loopgrad::runtime
