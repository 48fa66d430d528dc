#pragma once
// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON naming each tensor's dtype, shape and byte range, then the
// raw little-endian data. Used for PyTorch parameter interop and for checkpoints.
//
// read() validates everything before returning (lengths, JSON, dtypes, byte ranges against
// shapes) and throws SafetensorsError with the file and the tensor at fault; write() goes through
// a temporary file renamed into place, so a crash never leaves a half-written file.
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "loopgrad/emit/write_file.hpp"

namespace loopgrad::runtime::safetensors {

static_assert(std::endian::native == std::endian::little, "loopgrad's safetensors I/O assumes a little-endian machine");

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Tensor {
  std::string dtype;                // "F64", "F32", ... as in the file
  std::vector<std::int64_t> shape;  // C order
  std::vector<std::uint8_t> bytes;  // little-endian data

  std::int64_t element_count() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  // The values as T; F64 and F32 are read, other dtypes are an error naming the tensor.
  template <class T>
  std::vector<T> values(const std::string& name) const {
    std::vector<T> out(static_cast<std::size_t>(element_count()));
    if (dtype == "F64") {
      for (std::size_t i = 0; i < out.size(); ++i) {
        double v;
        std::memcpy(&v, bytes.data() + 8 * i, 8);
        out[i] = static_cast<T>(v);
      }
    } else if (dtype == "F32") {
      for (std::size_t i = 0; i < out.size(); ++i) {
        float v;
        std::memcpy(&v, bytes.data() + 4 * i, 4);
        out[i] = static_cast<T>(v);
      }
    } else {
      throw SafetensorsError("tensor '" + name + "' has dtype " + dtype + "; loopgrad reads F32 and F64 (convert it, e.g. tensor.double())");
    }
    return out;
  }
  template <class T>
  static Tensor from(const std::vector<T>& values, std::vector<std::int64_t> shape) {
    static_assert(std::is_same_v<T, double> || std::is_same_v<T, float>);
    Tensor t;
    t.dtype = std::is_same_v<T, double> ? "F64" : "F32";
    t.shape = std::move(shape);
    t.bytes.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
    return t;
  }
};

struct File {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

inline std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

inline File read(const std::filesystem::path& path) {
  const std::string where = "safetensors file '" + path.string() + "'";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SafetensorsError("cannot open " + where);
  std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < 8) throw SafetensorsError(where + " is truncated: it is shorter than its 8-byte header length");
  std::uint64_t n = 0;
  std::memcpy(&n, data.data(), 8);
  if (n > data.size() - 8)
    throw SafetensorsError(where + " is truncated or corrupt: its header claims " + std::to_string(n) +
                           " bytes but the file has " + std::to_string(data.size() - 8) + " after the length");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(data.begin() + 8, data.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const nlohmann::json::exception& e) {
    throw SafetensorsError(where + " has a corrupt header: " + e.what());
  }
  if (!header.is_object()) throw SafetensorsError(where + " has a corrupt header: not a JSON object");
  const std::size_t data_begin = 8 + static_cast<std::size_t>(n);
  const std::size_t data_size = data.size() - data_begin;
  File file;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw SafetensorsError(where + ": __metadata__ is not an object of strings");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw SafetensorsError(where + ": __metadata__ entry '" + k + "' is not a string");
        file.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string at = where + ", tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets") ||
        !entry["dtype"].is_string() || !entry["shape"].is_array() || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      throw SafetensorsError(at + ": needs a dtype, a shape and two data_offsets");
    Tensor t;
    t.dtype = entry["dtype"].get<std::string>();
    const std::size_t element = dtype_size(t.dtype);
    if (element == 0) throw SafetensorsError(at + ": unknown dtype '" + t.dtype + "'");
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<std::int64_t>() < 0) throw SafetensorsError(at + ": shape entries must be non-negative integers");
      t.shape.push_back(d.get<std::int64_t>());
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw SafetensorsError(at + ": data_offsets must be non-negative integers");
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    const auto expected = static_cast<std::uint64_t>(t.element_count()) * element;
    if (begin > end || end > data_size)
      throw SafetensorsError(at + ": its bytes [" + std::to_string(begin) + ", " + std::to_string(end) +
                             ") lie outside the file's " + std::to_string(data_size) + " data bytes (truncated file?)");
    if (end - begin != expected)
      throw SafetensorsError(at + ": holds " + std::to_string(end - begin) + " bytes but its shape and dtype need " +
                             std::to_string(expected));
    t.bytes.assign(data.begin() + static_cast<std::ptrdiff_t>(data_begin + begin),
                   data.begin() + static_cast<std::ptrdiff_t>(data_begin + end));
    file.tensors.emplace(name, std::move(t));
  }
  return file;
}

// Writes `file`, tensors in name order, the header padded with spaces to a multiple of 8 bytes.
inline void write(const std::filesystem::path& path, const File& file) {
  nlohmann::json header = nlohmann::json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    header[name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  std::string out(8, '\0');
  const std::uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  for (const auto& [name, t] : file.tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  emit::write_file_atomically(path, out);
}

}  // namespace loopgrad::runtime::safetensors
