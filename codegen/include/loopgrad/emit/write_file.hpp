#pragma once
#include <filesystem>
#include <string>

namespace loopgrad::emit {

// Writes `text` to `path` through a temporary file renamed into place, creating the directory if
// needed, so a failed or killed write never leaves a half file: the temporary's name is unique to
// the writer (`<path>.tmp.<pid>.<n>`, so concurrent writers of one path never collide; the last
// rename wins), its data is synced before the rename and the directory after it, and temporaries
// left by writers that were killed are removed by the next write. Refuses to replace anything but
// a regular file (a device, FIFO, directory or symbolic link). Throws std::runtime_error naming
// the path.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace loopgrad::emit
