// libFuzzer target: loopgrad's safetensors reader on arbitrary bytes. Built by the clang build of
// scripts/test.sh (LOOPGRAD_FUZZ=ON: -fsanitize=fuzzer,address,undefined) and run there for a
// bounded time from the seed corpus in tests/fuzz/corpus/safetensors.
//
// The contract checked: read() either throws SafetensorsError or returns a file whose tensors all
// have a known dtype and exactly their shape's bytes, and that file written and read again is the
// same. Any other exception, a crash, a leak or undefined behaviour is a finding.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_support.hpp"
#include "loopgrad/runtime/safetensors.hpp"

namespace {

using loopgrad::fuzz::scratch;

[[noreturn]] void fail(const char* what) { loopgrad::fuzz::fail("fuzz_safetensors", what); }

namespace st = loopgrad::runtime::safetensors;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
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
