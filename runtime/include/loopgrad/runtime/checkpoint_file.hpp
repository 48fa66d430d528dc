#pragma once
// What every loopgrad checkpoint shares, on the standard library alone: its metadata (format,
// network, algorithm, steps), its CRC-32C over every tensor and metadata entry, checked on load,
// and the checked reads of its tensors and numbers. The learners' checkpoints
// (loopgrad/runtime/checkpoint.hpp) and an app's own (loopgrad/runtime/kernel_io.hpp) are built
// from these, so both are refused and accepted by the same rules.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "loopgrad/runtime/checksum.hpp"
#include "loopgrad/runtime/safetensors.hpp"

namespace loopgrad::runtime::detail {

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

}  // namespace loopgrad::runtime::detail
