#pragma once
// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON naming each tensor's dtype, shape and byte range, then the
// raw little-endian data. Used for PyTorch parameter interop and for checkpoints.
//
// read() validates everything before returning (lengths, JSON, dtypes, byte ranges against
// shapes, the tensors tiling the data exactly) and throws SafetensorsError with the file and the
// tensor at fault; write() goes through a temporary file renamed into place, so a crash never
// leaves a half-written file.
//
// Header-only and dependent on nothing but the standard library (and the POSIX calls of the
// atomic write), so that an app which includes only a generated kernel header can read and write
// these files too (loopgrad/runtime/kernel_io.hpp). The header's JSON is therefore parsed here,
// strictly (RFC 8259, UTF-8 checked, a name twice in one object refused); the fuzzer
// tests/fuzz/fuzz_safetensors.cpp holds this parser to nlohmann-json's verdict on every input.
#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
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

/// A JSON value of a safetensors header. Numbers keep their literal text: a header needs only
/// non-negative integers (shapes and byte offsets), read with unsigned_integer().
struct Json {
  /// What the value is.
  enum class Kind { null, boolean, number, string, array, object };
  Kind kind = Kind::null;          ///< what the value is
  std::string text;                ///< a string's value, a number's literal, "true" or "false"
  std::vector<Json> items;         ///< an array's elements, an object's values
  std::vector<std::string> keys;   ///< an object's names, in file order (keys[i] names items[i])

  /// The object's member `key`, or nullptr (also when this is not an object).
  const Json* find(std::string_view key) const {
    for (std::size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == key) return &items[i];
    return nullptr;
  }
  /// Whether this is a non-negative integer literal that fits 64 bits, with its value in `out`
  /// (1.0, 1e3, -0 and 2^64 are not: a shape or an offset must be written as a plain integer).
  bool unsigned_integer(std::uint64_t& out) const {
    if (kind != Kind::number || text.empty()) return false;
    out = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      if (__builtin_mul_overflow(out, std::uint64_t(10), &out) ||
          __builtin_add_overflow(out, static_cast<std::uint64_t>(c - '0'), &out))
        return false;
    }
    return true;
  }
};

/// The deepest nesting parse_header accepts (a safetensors header nests three deep).
inline constexpr int max_json_depth = 128;

/// A strict recursive-descent JSON parser (RFC 8259): one value with optional whitespace around
/// it, strings of valid UTF-8 with every escape and surrogate pairs checked, no name twice in one
/// object. Errors throw SafetensorsError naming the file and the byte.
class JsonParser {
 public:
  /// Parses `text`, the header of the file `where` describes.
  JsonParser(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

  /// The whole text as one JSON value.
  Json document() {
    space();
    Json v = value(0);
    space();
    if (at_ < s_.size()) fail("text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw SafetensorsError(where_ + " has a corrupt header: " + what + " at byte " + std::to_string(at_));
  }
  bool more() const { return at_ < s_.size(); }
  char peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
  void space() {
    while (more() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r')) ++at_;
  }
  void expect(char c, const char* what) {
    if (peek() != c || !more()) fail(std::string("expected ") + what);
    ++at_;
  }
  void literal(std::string_view word) {
    if (s_.substr(at_, word.size()) != word) fail("an invalid literal");
    at_ += word.size();
  }

  Json value(int depth) {
    if (depth > max_json_depth) fail("values nested deeper than " + std::to_string(max_json_depth));
    Json v;
    if (!more()) fail("the header ended where a value was expected");
    switch (peek()) {
      case '{': {
        v.kind = Json::Kind::object;
        ++at_;
        space();
        if (peek() == '}' && more()) {
          ++at_;
          return v;
        }
        for (;;) {
          space();
          if (peek() != '"' || !more()) fail("expected a name in quotes");
          std::string key = string();
          for (const auto& k : v.keys)
            if (k == key) throw SafetensorsError(where_ + " has a corrupt header: the name '" + key + "' appears twice");
          space();
          expect(':', "':' after a name");
          space();
          v.keys.push_back(std::move(key));
          v.items.push_back(value(depth + 1));
          space();
          if (peek() == ',' && more()) {
            ++at_;
            continue;
          }
          expect('}', "',' or '}' in an object");
          return v;
        }
      }
      case '[': {
        v.kind = Json::Kind::array;
        ++at_;
        space();
        if (peek() == ']' && more()) {
          ++at_;
          return v;
        }
        for (;;) {
          space();
          v.items.push_back(value(depth + 1));
          space();
          if (peek() == ',' && more()) {
            ++at_;
            continue;
          }
          expect(']', "',' or ']' in an array");
          return v;
        }
      }
      case '"':
        v.kind = Json::Kind::string;
        v.text = string();
        return v;
      case 't':
        literal("true");
        v.kind = Json::Kind::boolean;
        v.text = "true";
        return v;
      case 'f':
        literal("false");
        v.kind = Json::Kind::boolean;
        v.text = "false";
        return v;
      case 'n':
        literal("null");
        return v;
      default:
        v.kind = Json::Kind::number;
        v.text = number();
        return v;
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }
  std::string number() {
    const std::size_t begin = at_;
    if (peek() == '-') ++at_;
    if (!more() || !digit(peek())) fail("an invalid value");
    if (peek() == '0') {
      ++at_;
    } else {
      while (more() && digit(peek())) ++at_;
    }
    if (more() && peek() == '.') {
      ++at_;
      if (!more() || !digit(peek())) fail("a number without digits after its '.'");
      while (more() && digit(peek())) ++at_;
    }
    if (more() && (peek() == 'e' || peek() == 'E')) {
      ++at_;
      if (more() && (peek() == '+' || peek() == '-')) ++at_;
      if (!more() || !digit(peek())) fail("a number without digits in its exponent");
      while (more() && digit(peek())) ++at_;
    }
    return std::string(s_.substr(begin, at_ - begin));
  }

  unsigned hex4() {
    if (s_.size() - at_ < 4) fail("a \\u escape cut short");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[at_++];
      v <<= 4;
      if (digit(c)) v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else fail("a \\u escape with a non-hexadecimal digit");
    }
    return v;
  }
  static void put_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  /// A string starting at its opening quote: its value, escapes decoded.
  std::string string() {
    ++at_;  // the opening quote
    std::string out;
    for (;;) {
      if (!more()) fail("a string without its closing quote");
      const auto c = static_cast<unsigned char>(s_[at_]);
      if (c == '"') {
        ++at_;
        return out;
      }
      if (c < 0x20) fail("a control character inside a string (escape it)");
      if (c == '\\') {
        ++at_;
        if (!more()) fail("a string without its closing quote");
        const char e = s_[at_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            std::uint32_t cp = hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail("a \\u escape of a lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (s_.substr(at_, 2) != "\\u") fail("a high surrogate not followed by a low one");
              at_ += 2;
              const std::uint32_t low = hex4();
              if (low < 0xDC00 || low > 0xDFFF) fail("a high surrogate not followed by a low one");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            put_utf8(out, cp);
            break;
          }
          default:
            --at_;
            fail("an invalid escape in a string");
        }
        continue;
      }
      // One UTF-8 sequence, checked as RFC 3629 says: no overlong forms, no surrogates, at most U+10FFFF.
      std::size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
      if (length == 0 || s_.size() - at_ < length) fail("invalid UTF-8 in a string");
      std::uint32_t cp = length == 1 ? c : length == 2 ? (c & 0x1Fu) : length == 3 ? (c & 0x0Fu) : (c & 0x07u);
      for (std::size_t k = 1; k < length; ++k) {
        const auto b = static_cast<unsigned char>(s_[at_ + k]);
        if ((b & 0xC0) != 0x80) fail("invalid UTF-8 in a string");
        cp = (cp << 6) | (b & 0x3Fu);
      }
      static constexpr std::uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
      if (cp < least[length] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8 in a string");
      out.append(s_.substr(at_, length));
      at_ += length;
    }
  }

  std::string_view s_;
  std::string where_;
  std::size_t at_ = 0;
};

/// `s` as a JSON string (quotes and escapes as nlohmann-json's dump() writes them, so that files
/// are byte for byte what loopgrad wrote before). Throws if `s` is not valid UTF-8.
inline std::string quoted(std::string_view s, const std::string& what) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (c < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
      continue;
    }
    out += static_cast<char>(c);
  }
  out += '"';
  // Checks the UTF-8 by parsing the result back.
  try {
    JsonParser(out, what).document();
  } catch (const SafetensorsError&) {
    throw SafetensorsError(what + " is not valid UTF-8; safetensors names and metadata must be");
  }
  return out;
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
  const detail::Json header = detail::JsonParser(text, where).document();
  if (header.kind != detail::Json::Kind::object) throw SafetensorsError(where + " has a corrupt header: not a JSON object");
  const std::uint64_t data_size = file_size - 8 - n;
  File file;
  struct Range {
    std::uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  using Kind = detail::Json::Kind;
  for (std::size_t i = 0; i < header.keys.size(); ++i) {
    const std::string& name = header.keys[i];
    const detail::Json& entry = header.items[i];
    if (name == "__metadata__") {
      if (entry.kind != Kind::object) throw SafetensorsError(where + ": __metadata__ is not an object of strings");
      for (std::size_t k = 0; k < entry.keys.size(); ++k) {
        if (entry.items[k].kind != Kind::string)
          throw SafetensorsError(where + ": __metadata__ entry '" + entry.keys[k] + "' is not a string");
        file.metadata[entry.keys[k]] = entry.items[k].text;
      }
      continue;
    }
    const std::string at = where + ", tensor '" + name + "'";
    const detail::Json* dtype = entry.find("dtype");
    const detail::Json* shape = entry.find("shape");
    const detail::Json* offsets = entry.find("data_offsets");
    if (entry.kind != Kind::object || !dtype || !shape || !offsets || dtype->kind != Kind::string ||
        shape->kind != Kind::array || offsets->kind != Kind::array || offsets->items.size() != 2)
      throw SafetensorsError(at + ": needs a dtype, a shape and two data_offsets");
    Tensor t;
    t.dtype = dtype->text;
    const std::size_t element = dtype_size(t.dtype);
    if (element == 0) throw SafetensorsError(at + ": unknown dtype '" + t.dtype + "'");
    std::uint64_t expected = element;
    for (const auto& d : shape->items) {
      std::uint64_t dim = 0;
      if (!d.unsigned_integer(dim)) throw SafetensorsError(at + ": shape entries must be non-negative integers");
      if (dim > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(expected, dim, &expected))
        throw SafetensorsError(at + ": its shape has more bytes than 2^64");
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    std::uint64_t begin = 0, end = 0;
    if (!offsets->items[0].unsigned_integer(begin) || !offsets->items[1].unsigned_integer(end))
      throw SafetensorsError(at + ": data_offsets must be non-negative integers");
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
  const std::string where = "safetensors file '" + path.string() + "'";
  // The header's entries by name, so in nlohmann-json's order (std::map's), "__metadata__" among them.
  std::map<std::string, std::string> entries;
  if (!file.metadata.empty()) {
    std::string m = "{";
    for (const auto& [k, v] : file.metadata) {
      if (m.size() > 1) m += ',';
      m += detail::quoted(k, where + ": metadata name '" + k + "'");
      m += ':';
      m += detail::quoted(v, where + ": metadata entry '" + k + "'");
    }
    entries["__metadata__"] = m + "}";
  }
  std::uint64_t offset = 0;
  for (const auto& [name, t] : file.tensors) {
    if (name == "__metadata__") throw SafetensorsError(where + ": a tensor may not be called __metadata__");
    std::string e = "{\"data_offsets\":[";
    e += std::to_string(offset);
    e += ',';
    e += std::to_string(offset + t.bytes.size());
    e += "],\"dtype\":";
    e += detail::quoted(t.dtype, where + ": the dtype of tensor '" + name + "'");
    e += ",\"shape\":[";
    for (std::size_t d = 0; d < t.shape.size(); ++d) {
      if (d) e += ',';
      e += std::to_string(t.shape[d]);
    }
    entries[name] = e + "]}";
    offset += t.bytes.size();
  }
  std::string text = "{";
  for (const auto& [name, e] : entries) {
    if (text.size() > 1) text += ',';
    text += detail::quoted(name, where + ": tensor name '" + name + "'");
    text += ':';
    text += e;
  }
  text += "}";
  while (text.size() % 8 != 0) text += ' ';
  std::string out(8, '\0');
  const std::uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  for (const auto& [name, t] : file.tensors) out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
  emit::write_file_atomically(path, out);
}

}  // namespace loopgrad::runtime::safetensors
