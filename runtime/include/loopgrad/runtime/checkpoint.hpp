#pragma once
// Checkpoints: a training run's whole state in one safetensors file (readable from Python too):
// parameters, recurrent state, sensitivity, the learner's accumulated gradient and step count,
// and the optimizer's state. A run resumed from a checkpoint continues bit for bit as if it had
// never stopped. Writes are atomic (a temporary file of the writer's own, synced, then renamed);
// a CRC-32C over every tensor and metadata entry is written with the file and checked on load;
// loads check everything (the checksum, the network's name, every size, the scalar type, every
// number in the metadata with its range) before they change anything. One pair of functions
// serves every exact learner (ExactRtrl, BlockedRtrl, ExactOnline) through its part of the file
// (put_learner / read_learner); a checkpoint names the algorithm that wrote it.
#include <charconv>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "loopgrad/runtime/checkpoint_file.hpp"
#include "loopgrad/runtime/learners.hpp"
#include "loopgrad/runtime/optimizer.hpp"

namespace loopgrad::runtime {

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

/// A step of loading that has checked everything and only moves values into place: a load reads and
/// checks every part of a checkpoint first, then runs each part's commit, so that a refused file
/// changes nothing.
using Commit = std::function<void()>;

/// Writes an exact RTRL learner's part of a checkpoint into `f`: state, sensitivity, accumulated
/// gradient (the step count and the ready flag are in the metadata new_checkpoint wrote).
template <class Kernel, class T>
void put_learner(safetensors::File& f, const ExactRtrl<Kernel, T>& learner) {
  detail::put(f, "state", learner.rtrl().state());
  detail::put(f, "sensitivity", learner.rtrl().sensitivity());
  detail::put(f, "accumulated_gradient", learner.gradient());
}

/// Reads and checks what put_learner wrote for `learner` (same kernel), naming `where` in errors;
/// changes nothing and returns the commit that makes it current.
template <class Kernel, class T>
Commit read_learner(const safetensors::File& f, ExactRtrl<Kernel, T>& learner, const std::string& where) {
  const std::size_t n = learner.gradient().size();
  auto state = std::make_shared<std::vector<T>>(detail::take<T>(f, "state", learner.rtrl().state().size(), where));
  auto sensitivity =
      std::make_shared<std::vector<T>>(detail::take<T>(f, "sensitivity", learner.rtrl().sensitivity().size(), where));
  auto accumulated = std::make_shared<std::vector<T>>(detail::take<T>(f, "accumulated_gradient", n, where));
  const auto steps = detail::integer(detail::meta(f, "steps", where), "steps", where);
  const bool ready = detail::flag(f, "gradient_ready", where);
  return [&learner, state, sensitivity, accumulated, steps, ready] {
    learner.rtrl().state() = std::move(*state);
    learner.rtrl().sensitivity() = std::move(*sensitivity);
    learner.rtrl().set_steps(steps);
    learner.accumulated() = std::move(*accumulated);
    learner.ready_flag() = ready;
  };
}

/// The algorithm name a learner's checkpoints carry: "rtrl" or "blocked".
template <class Kernel, class T>
std::string algorithm_name(const ExactRtrl<Kernel, T>&) {
  return "rtrl";
}

/// Writes a blocked learner's part of a checkpoint into `f`, mid-block too: the start (R_s, Delta_s)
/// of the oldest stored step and what each stored step ran with (parameters, input, target), from
/// which loading replays the forward steps (with the real-time and background schedules: the
/// closing block's steps, then the current block's).
template <class Kernel, class T>
void put_learner(safetensors::File& f, const BlockedRtrl<Kernel, T>& learner) {
  const auto snap = learner.snapshot();
  f.metadata["block_length"] = std::to_string(learner.block_length());
  f.metadata["block.schedule"] = schedule_name(learner.schedule());
  f.metadata["block.closing_steps"] = std::to_string(snap.closing);
  f.metadata["block.steps"] = std::to_string(snap.inputs.size());
  f.metadata["block.pending"] = std::to_string(snap.pending);
  f.metadata["block.param_vectors"] = std::to_string(snap.params.size());
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
}

/// Reads and checks what put_learner wrote for `learner` (same kernel, block length and schedule),
/// replaying the stored steps into a copy of it: the state after the replay must be the saved one,
/// bit for bit. Changes nothing and returns the commit that makes it current.
template <class Kernel, class T>
Commit read_learner(const safetensors::File& f, BlockedRtrl<Kernel, T>& learner, const std::string& where) {
  const auto& k = learner.kernel();
  const std::size_t n_params = k.param_count();
  const auto block_length = detail::integer(detail::meta(f, "block_length", where), "block_length", where, 1);
  if (block_length != learner.block_length())
    throw safetensors::SafetensorsError(where + " has block length " + std::to_string(block_length) +
                                        ", this learner " + std::to_string(learner.block_length()));
  auto count = [&](const std::string& key, std::int64_t limit) {
    return static_cast<std::size_t>(detail::integer(detail::meta(f, key, where), key, where, 0, limit));
  };
  // Checkpoints from before the real-time schedule carry no schedule: theirs is block_end.
  const auto schedule = f.metadata.count("block.schedule") != 0 ? f.metadata.at("block.schedule") : std::string("block_end");
  if (schedule != schedule_name(learner.schedule()))
    throw safetensors::SafetensorsError(where + " was written with the " + schedule + " schedule; this learner uses " +
                                        schedule_name(learner.schedule()));
  const bool keeps_closing = learner.schedule() != BlockSchedule::block_end;
  const std::size_t closing =
      f.metadata.count("block.closing_steps") != 0 ? count("block.closing_steps", keeps_closing ? block_length : 0) : 0;
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
  const auto state = detail::take<T>(f, "state", k.state_size(), where);
  snap.block_start_state = detail::take<T>(f, "block.start_state", k.state_size(), where);
  snap.sensitivity = detail::take<T>(f, "sensitivity", k.sensitivity_size(), where);
  snap.accumulated = detail::take<T>(f, "accumulated_gradient", n_params, where);
  const auto pool = detail::take<T>(f, "block.params", vectors * n_params, where);
  const auto index = detail::take<T>(f, "block.param_index", steps_in_block, where);
  const auto has_target = detail::take<T>(f, "block.has_target", steps_in_block, where);
  const auto inputs = detail::take<T>(f, "block.inputs", steps_in_block * k.input_size(), where);
  const auto targets = detail::take<T>(f, "block.targets", steps_in_block * k.target_size(), where);
  for (std::size_t v = 0; v < vectors; ++v)
    snap.params.emplace_back(pool.begin() + static_cast<std::ptrdiff_t>(v * n_params),
                             pool.begin() + static_cast<std::ptrdiff_t>((v + 1) * n_params));
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
  auto restored = std::make_shared<BlockedRtrl<Kernel, T>>(learner);
  restored->restore(snap);
  if (restored->state() != state)
    throw safetensors::SafetensorsError(where + ": replaying the block's " + std::to_string(steps_in_block) +
                                        " steps does not give the saved state; the file does not belong to this kernel");
  return [&learner, restored] { learner = std::move(*restored); };
}

/// @copydoc algorithm_name(const ExactRtrl<Kernel, T>&)
template <class Kernel, class T>
std::string algorithm_name(const BlockedRtrl<Kernel, T>&) {
  return "blocked";
}

/// Writes an ExactOnline learner's part of a checkpoint: that of the learner it runs.
template <class Kernel, class T>
void put_learner(safetensors::File& f, const ExactOnline<Kernel, T>& learner) {
  std::visit([&](const auto& l) { put_learner(f, l); }, learner.learner());
}
/// Reads an ExactOnline learner's part of a checkpoint: that of the learner it runs.
template <class Kernel, class T>
Commit read_learner(const safetensors::File& f, ExactOnline<Kernel, T>& learner, const std::string& where) {
  return std::visit([&](auto& l) { return read_learner(f, l, where); }, learner.learner());
}
/// The algorithm of the learner an ExactOnline runs: "rtrl" or "blocked".
template <class Kernel, class T>
std::string algorithm_name(const ExactOnline<Kernel, T>& learner) {
  return std::visit([](const auto& l) { return algorithm_name(l); }, learner.learner());
}

/// A learner whose state a checkpoint can hold: ExactRtrl, BlockedRtrl or ExactOnline (put_learner,
/// read_learner and algorithm_name are defined for it).
template <class Learner>
concept CheckpointableLearner = requires(safetensors::File& f, const Learner& c, Learner& l, const std::string& w) {
  put_learner(f, c);
  { read_learner(f, l, w) } -> std::convertible_to<Commit>;
  { algorithm_name(c) } -> std::convertible_to<std::string>;
};

/// Saves an online run: parameters, the learner's state (a blocked learner's mid-block too, see
/// put_learner), the optimizer's state and `user_metadata`, in one file, atomically.
template <CheckpointableLearner Learner, class T, class Optimizer>
void save_checkpoint(const std::filesystem::path& path, const std::string& network, const std::vector<T>& params,
                     const Learner& learner, const Optimizer& optimizer,
                     const std::map<std::string, std::string>& user_metadata = {}) {
  auto f = detail::new_checkpoint(user_metadata, network, algorithm_name(learner), learner.steps(), learner.gradient_ready());
  detail::put(f, "params", params);
  put_learner(f, learner);
  save_optimizer(optimizer, f);
  detail::write_checkpoint(path, f);
}

/// Restores what save_checkpoint wrote into `params`, `learner` (built for the same network, of the
/// same kind; a blocked one with the same block length and schedule) and `optimizer`, or throws
/// SafetensorsError and leaves all three as they were.
template <CheckpointableLearner Learner, class T, class Optimizer>
void load_checkpoint(const std::filesystem::path& path, const std::string& network, std::vector<T>& params,
                     Learner& learner, Optimizer& optimizer) {
  const std::string where = "checkpoint '" + path.string() + "'";
  const auto f = detail::open_checkpoint(path, network, algorithm_name(learner), where);
  auto new_params = detail::take<T>(f, "params", params.size(), where);
  const Commit commit_learner = read_learner(f, learner, where);
  Optimizer new_optimizer = optimizer;
  load_optimizer(new_optimizer, f, where, params.size());
  // Everything read and checked: commit.
  params = std::move(new_params);
  commit_learner();
  optimizer = std::move(new_optimizer);
}

}  // namespace loopgrad::runtime
