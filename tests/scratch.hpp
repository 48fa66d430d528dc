#pragma once
// A scratch directory per test area and process, for the files the tests write.
#include <unistd.h>

#include <filesystem>
#include <string>

namespace loopgrad::testing {

// `name` in the temporary directory's loopgrad_<area>_<pid>/, which is created if needed.
inline std::filesystem::path scratch_file(const std::string& area, const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("loopgrad_" + area + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace loopgrad::testing
