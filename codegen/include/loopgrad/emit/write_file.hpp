#pragma once
#include <filesystem>
#include <string>

namespace loopgrad::emit {

// Writes `text` to `path` through a temporary file renamed into place, creating the directory if
// needed, so a failed write never leaves a half file. Throws std::runtime_error naming the path.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace loopgrad::emit
