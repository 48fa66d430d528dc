#pragma once
// Checkpoints: a training run's whole state in one safetensors file (readable from Python too):
// parameters, recurrent state, sensitivity, the learner's accumulated gradient and step count,
// and the optimizer's state. A run resumed from a checkpoint continues bit for bit as if it had
// never stopped. Writes are atomic (temporary file, then rename); loads check everything (the
// network's name, every size, the scalar type) before they change anything.
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

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

// The length of a 1-D tensor that must hold either nothing or `size` values (optimizer state that
// appears with the first update).
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

inline std::int64_t integer(const std::string& text, const std::string& key, const std::string& where) {
  try {
    return std::stoll(text);
  } catch (const std::exception&) {
    throw safetensors::SafetensorsError(where + ": metadata '" + key + "' is not an integer");
  }
}

}  // namespace detail

// Optimizer state: name, hyperparameters and per-parameter vectors.
template <class T>
void save_optimizer(const Sgd<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "sgd";
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate});
}
template <class T>
void load_optimizer(Sgd<T>& o, const safetensors::File& f, const std::string& where, std::size_t) {
  if (detail::meta(f, "optimizer", where) != "sgd") throw safetensors::SafetensorsError(where + " holds a " + detail::meta(f, "optimizer", where) + " optimizer, this run uses sgd");
  o.rate = detail::take<T>(f, "optimizer.hyperparameters", 1, where)[0];
}
template <class T>
void save_optimizer(const Momentum<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "momentum";
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate, o.momentum});
  detail::put(f, "optimizer.velocity", o.velocity);
}
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
template <class T>
void save_optimizer(const Adam<T>& o, safetensors::File& f) {
  f.metadata["optimizer"] = "adam";
  f.metadata["optimizer.steps"] = std::to_string(o.steps);
  detail::put(f, "optimizer.hyperparameters", std::vector<T>{o.rate, o.beta1, o.beta2, o.epsilon});
  detail::put(f, "optimizer.first", o.first);
  detail::put(f, "optimizer.second", o.second);
}
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

// Saves an online run with exact RTRL.
template <class Kernel, class T, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const std::string& network, const std::vector<T>& params,
                     const ExactRtrl<Kernel, T>& learner, const Optimizer& optimizer,
                     const std::map<std::string, std::string>& user_metadata = {}) {
  safetensors::File f;
  f.metadata = user_metadata;
  f.metadata["loopgrad.checkpoint"] = "1";
  f.metadata["network"] = network;
  f.metadata["steps"] = std::to_string(learner.rtrl().steps());
  f.metadata["gradient_ready"] = learner.gradient_ready() ? "1" : "0";
  detail::put(f, "params", params);
  detail::put(f, "state", learner.rtrl().state());
  detail::put(f, "sensitivity", learner.rtrl().sensitivity());
  detail::put(f, "accumulated_gradient", learner.gradient());
  save_optimizer(optimizer, f);
  safetensors::write(path, f);
}

// Restores what save_checkpoint wrote into `params`, `learner` and `optimizer` (built for the same
// network), or throws and leaves all three as they were.
template <class Kernel, class T, class Optimizer>
void load_checkpoint(const std::filesystem::path& path, const std::string& network, std::vector<T>& params,
                     ExactRtrl<Kernel, T>& learner, Optimizer& optimizer) {
  const std::string where = "checkpoint '" + path.string() + "'";
  const auto f = safetensors::read(path);
  if (f.metadata.count("loopgrad.checkpoint") == 0) throw safetensors::SafetensorsError(where + " is not a loopgrad checkpoint");
  if (detail::meta(f, "network", where) != network)
    throw safetensors::SafetensorsError(where + " belongs to network '" + detail::meta(f, "network", where) + "', not '" + network + "'");
  auto new_params = detail::take<T>(f, "params", params.size(), where);
  auto state = detail::take<T>(f, "state", learner.rtrl().state().size(), where);
  auto sensitivity = detail::take<T>(f, "sensitivity", learner.rtrl().sensitivity().size(), where);
  auto accumulated = detail::take<T>(f, "accumulated_gradient", params.size(), where);
  const auto steps = detail::integer(detail::meta(f, "steps", where), "steps", where);
  const bool ready = detail::meta(f, "gradient_ready", where) == "1";
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

}  // namespace loopgrad::runtime
