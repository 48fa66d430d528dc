#pragma once
// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON naming each tensor's dtype, shape and byte range, then the
// raw little-endian data. Used for PyTorch parameter interop and for checkpoints.
//
// read() validates everything before returning (lengths, JSON, dtypes, byte ranges against
// shapes, the tensors tiling the data exactly) and throws SafetensorsError with the file and the
// tensor at fault; write() goes through a temporary file renamed into place, so a crash never
// leaves a half-written file.
#include <algorithm>
#include <bit>
#include <climits>
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

/// One tensor of a safetensors file: its dtype, shape and raw bytes.
struct Tensor {
  std::string dtype;                ///< "F64", "F32", ... as in the file
  std::vector<std::int64_t> shape;  ///< C order
  std::vector<std::uint8_t> bytes;  ///< little-endian data

  /// The product of the shape; throws SafetensorsError if a dimension is negative or the product
  /// does not fit in 63 bits.
  std::int64_t element_count() const {
    std::int64_t n = 1;
    for (auto d : shape)
      if (d < 0 || __builtin_mul_overflow(n, d, &n))
        throw SafetensorsError("a tensor's shape has a negative dimension or more than 2^63 elements");
    return n;
  }
  /// The values as T; F64 and F32 are read, other dtypes are an error naming the tensor.
  template <class T>
  std::vector<T> values(const std::string& name) const {
    const std::size_t size = dtype == "F64" ? 8 : dtype == "F32" ? 4 : 0;
    if (size == 0)
      throw SafetensorsError("tensor '" + name + "' has dtype " + dtype + "; loopgrad reads F32 and F64 (convert it, e.g. tensor.double())");
    const auto count = static_cast<std::size_t>(element_count());
    if (bytes.size() / size != count || bytes.size() % size != 0)
      throw SafetensorsError("tensor '" + name + "' holds " + std::to_string(bytes.size()) + " bytes, not the " +
                             std::to_string(count) + " values of its shape");
    std::vector<T> out(count);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (size == 8) {
        double v;
        std::memcpy(&v, bytes.data() + 8 * i, 8);
        out[i] = static_cast<T>(v);
      } else {
        float v;
        std::memcpy(&v, bytes.data() + 4 * i, 4);
        out[i] = static_cast<T>(v);
      }
    }
    return out;
  }
  /// A tensor holding `values` (double: F64, float: F32) with shape `shape`.
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

/// A whole safetensors file: its tensors by name and its metadata.
struct File {
  std::map<std::string, Tensor> tensors;  ///< by name
  std::map<std::string, std::string> metadata;  ///< the header's __metadata__ entries
};

/// Bytes per value of a safetensors dtype ("F64": 8, ...); 0 for one it does not know.
inline std::size_t dtype_size(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL" || dtype == "F8_E4M3" || dtype == "F8_E5M2") return 1;
  return 0;
}

/// The largest JSON header read() accepts (the safetensors reference implementation's limit).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

namespace detail {

/// Parses the JSON header, refusing a name used twice in one object (JSON would keep the last).
inline nlohmann::json parse_header(const std::string& text, const std::string& where) {
  std::vector<std::vector<std::string>> keys;  // the keys seen in each open object
  std::string duplicate;
  auto check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::object_start) keys.emplace_back();
    if (event == nlohmann::json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == nlohmann::json::parse_event_t::key && !keys.empty() && duplicate.empty()) {
      const auto name = parsed.get<std::string>();
      for (const auto& k : keys.back())
        if (k == name) duplicate = name;
      keys.back().push_back(name);
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, check);
  } catch (const nlohmann::json::exception& e) {
    throw SafetensorsError(where + " has a corrupt header: " + e.what());
  }
  if (!duplicate.empty()) throw SafetensorsError(where + " has a corrupt header: the name '" + duplicate + "' appears twice");
  return header;
}

}  // namespace detail

/// Reads and checks a whole file: a regular file, a header of at most max_header_bytes read and
/// checked before any data, every tensor's dtype, shape and byte range, the tensors tiling the data
/// section exactly (no gap, no overlap, no trailing bytes), no name twice. Throws SafetensorsError
/// naming the file and the tensor at fault.
inline File read(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  const std::string where = "safetensors file '" + path.string() + "'";
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw SafetensorsError("cannot open " + where + ": no such file");
  if (!fs::is_regular_file(status))
    throw SafetensorsError("cannot read " + where + ": it is not a regular file (a directory, FIFO or device)");
  const std::uintmax_t file_size = fs::file_size(path, ec);
  if (ec) throw SafetensorsError("cannot read " + where + ": " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SafetensorsError("cannot open " + where);
  auto read_bytes = [&](char* to, std::uint64_t count, const char* what) {
    in.read(to, static_cast<std::streamsize>(count));
    if (static_cast<std::uint64_t>(in.gcount()) != count)
      throw SafetensorsError(where + " is truncated: it ended inside its " + what);
  };
  if (file_size < 8) throw SafetensorsError(where + " is truncated: it is shorter than its 8-byte header length");
  std::uint64_t n = 0;
  read_bytes(reinterpret_cast<char*>(&n), 8, "header length");
  if (n > max_header_bytes)
    throw SafetensorsError(where + " is corrupt: its header claims " + std::to_string(n) + " bytes, more than the " +
                           std::to_string(max_header_bytes) + " a safetensors header may have");
  if (n > file_size - 8)
    throw SafetensorsError(where + " is truncated or corrupt: its header claims " + std::to_string(n) +
                           " bytes but the file has " + std::to_string(file_size - 8) + " after the length");
  std::string text(static_cast<std::size_t>(n), '\0');
  read_bytes(text.data(), n, "header");
  const nlohmann::json header = detail::parse_header(text, where);
  if (!header.is_object()) throw SafetensorsError(where + " has a corrupt header: not a JSON object");
  const std::uint64_t data_size = file_size - 8 - n;
  File file;
  struct Range {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
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
    std::uint64_t expected = element;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) throw SafetensorsError(at + ": shape entries must be non-negative integers");
      const auto dim = d.get<std::uint64_t>();
      if (dim > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(expected, dim, &expected))
        throw SafetensorsError(at + ": its shape has more bytes than 2^64");
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw SafetensorsError(at + ": data_offsets must be non-negative integers");
    const auto begin = offsets[0].get<std::uint64_t>(), end = offsets[1].get<std::uint64_t>();
    if (begin > end || end > data_size)
      throw SafetensorsError(at + ": its bytes [" + std::to_string(begin) + ", " + std::to_string(end) +
                             ") lie outside the file's " + std::to_string(data_size) + " data bytes (truncated file?)");
    if (end - begin != expected)
      throw SafetensorsError(at + ": holds " + std::to_string(end - begin) + " bytes but its shape and dtype need " +
                             std::to_string(expected));
    ranges.push_back({begin, end, name});
    file.tensors.emplace(name, std::move(t));
  }
  // The tensors must tile the data section: sorted by offset, each starts where the last ended.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  std::uint64_t covered = 0;
  for (const auto& r : ranges) {
    if (r.begin != covered)
      throw SafetensorsError(where + ", tensor '" + r.name + "': its bytes start at " + std::to_string(r.begin) +
                             (r.begin < covered ? ", inside another tensor's" : ", leaving a gap after byte " + std::to_string(covered)) +
                             "; the tensors must tile the data section exactly");
    covered = r.end;
  }
  if (covered != data_size)
    throw SafetensorsError(where + " is corrupt: the tensors cover " + std::to_string(covered) + " of its " +
                           std::to_string(data_size) + " data bytes (a wrong header length, or bytes after the last tensor)");
  // Everything checks: read the data, tensor by tensor in file order.
  for (const auto& r : ranges) {
    auto& bytes = file.tensors[r.name].bytes;
    bytes.resize(static_cast<std::size_t>(r.end - r.begin));
    read_bytes(reinterpret_cast<char*>(bytes.data()), r.end - r.begin, ("tensor '" + r.name + "'").c_str());
  }
  return file;
}

/// Writes `file`, tensors in name order, the header padded with spaces to a multiple of 8 bytes.
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
