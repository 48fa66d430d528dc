// libFuzzer target: loopgrad's safetensors reader on arbitrary bytes. Built by the clang build of
// scripts/test.sh (LOOPGRAD_FUZZ=ON: -fsanitize=fuzzer,address,undefined) and run there for a
// bounded time from the seed corpus in tests/fuzz/corpus/safetensors.
//
// The contract checked: read() either throws SafetensorsError or returns a file whose tensors all
// have a known dtype and exactly their shape's bytes, and that file written and read again is the
// same. Any other exception, a crash, a leak or undefined behaviour is a finding.
//
// The reader parses its JSON header itself (it needs only the standard library), so the fuzzer
// also holds that parser to an independent one: on the header bytes of every input (or on all the
// bytes after the length when the length is out of range), loopgrad's parser and nlohmann-json
// (with a name twice in one object refused) must accept and refuse the same texts, and what both
// accept must be the same value. Three documented differences are handled apart: nlohmann-json
// skips a leading UTF-8 byte-order mark (RFC 8259 lets a parser refuse it, as safetensors' own
// reader does); it reads a NUL byte as the end of the text, where no JSON text may hold one (so
// loopgrad must refuse every text with a NUL); and loopgrad refuses nesting deeper than
// detail::max_json_depth.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "loopgrad/runtime/safetensors.hpp"

namespace {

using loopgrad::fuzz::scratch;

[[noreturn]] void fail(const char* what) { loopgrad::fuzz::fail("fuzz_safetensors", what); }

namespace st = loopgrad::runtime::safetensors;

// loopgrad's parsed value as nlohmann-json's (numbers through nlohmann-json's own reading of the
// literal, so the two compare as values).
nlohmann::json as_nlohmann(const st::detail::Json& v) {
  using Kind = st::detail::Json::Kind;
  switch (v.kind) {
    case Kind::null: return nullptr;
    case Kind::boolean: return v.text == "true";
    case Kind::number: return nlohmann::json::parse(v.text);
    case Kind::string: return v.text;
    case Kind::array: {
      auto out = nlohmann::json::array();
      for (const auto& item : v.items) out.push_back(as_nlohmann(item));
      return out;
    }
    case Kind::object: {
      auto out = nlohmann::json::object();
      for (std::size_t i = 0; i < v.keys.size(); ++i) out[v.keys[i]] = as_nlohmann(v.items[i]);
      return out;
    }
  }
  return nullptr;
}

// nlohmann-json's verdict on `text`, a name twice in one object refused; the value in `out`.
bool nlohmann_accepts(const std::string& text, nlohmann::json& out) {
  std::vector<std::vector<std::string>> keys;  // the names seen in each open object
  bool duplicate = false;
  auto check = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::object_start) keys.emplace_back();
    if (event == nlohmann::json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
    if (event == nlohmann::json::parse_event_t::key && !keys.empty()) {
      const auto name = parsed.get<std::string>();
      for (const auto& k : keys.back()) duplicate = duplicate || k == name;
      keys.back().push_back(name);
    }
    return true;
  };
  try {
    out = nlohmann::json::parse(text, check);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  return !duplicate;
}

// The header parser against nlohmann-json on `text`.
void compare_json_parsers(const std::string& text) {
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) return;  // a byte-order mark
  bool ours = true;
  st::detail::Json value;
  try {
    value = st::detail::JsonParser(text, "header").document();
  } catch (const st::SafetensorsError& e) {
    if (std::string_view(e.what()).find("nested deeper") != std::string_view::npos) return;
    ours = false;
  }
  nlohmann::json theirs;
  const bool accepted = nlohmann_accepts(text, theirs);
  if (text.find('\0') != std::string::npos) {
    if (ours) fail("the header parser accepted a text with a NUL byte");
    return;
  }
  if (ours && !accepted) fail("the header parser accepted JSON that nlohmann-json refuses");
  if (!ours && accepted) fail("the header parser refused JSON that nlohmann-json accepts");
  if (ours && as_nlohmann(value) != theirs) fail("the header parser and nlohmann-json read different values");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 8) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    const std::size_t length = n <= size - 8 ? static_cast<std::size_t>(n) : size - 8;
    compare_json_parsers(std::string(reinterpret_cast<const char*>(data) + 8, length));
  }
  const auto path = scratch("input.safetensors");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  st::File file;
  try {
    file = st::read(path);
  } catch (const st::SafetensorsError&) {
    return 0;  // refused, as it should be for a malformed file
  }
  for (const auto& [name, tensor] : file.tensors) {
    const auto bytes = st::dtype_size(tensor.dtype);
    if (bytes == 0) fail("read() accepted an unknown dtype");
    if (static_cast<std::uint64_t>(tensor.element_count()) * bytes != tensor.bytes.size())
      fail("read() returned a tensor whose bytes are not its shape's");
  }
  const auto copy = scratch("copy.safetensors");
  st::write(copy, file);
  const auto again = st::read(copy);
  if (again.metadata != file.metadata || again.tensors.size() != file.tensors.size()) fail("a round trip changed the file");
  for (const auto& [name, tensor] : file.tensors) {
    const auto it = again.tensors.find(name);
    if (it == again.tensors.end() || it->second.dtype != tensor.dtype || it->second.shape != tensor.shape ||
        it->second.bytes != tensor.bytes)
      fail("a round trip changed a tensor");
  }
  return 0;
}
