#pragma once
// What the fuzz targets share: a scratch directory of this process's own (libFuzzer may run
// several processes in one directory), removed at exit, and how a broken contract is reported.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace loopgrad::fuzz {

inline std::filesystem::path scratch_directory() {
  return std::filesystem::temp_directory_path() / ("loopgrad_fuzz_" + std::to_string(::getpid()));
}

// A path in the scratch directory, created on first use.
inline std::filesystem::path scratch(const char* name) {
  static const auto dir = [] {
    auto d = scratch_directory();
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_directory(), ignored);
    });
    return d;
  }();
  return dir / name;
}

// A finding: libFuzzer saves the input and stops.
[[noreturn]] inline void fail(const char* target, const char* what) {
  std::fprintf(stderr, "%s: %s\n", target, what);
  std::abort();
}

}  // namespace loopgrad::fuzz
