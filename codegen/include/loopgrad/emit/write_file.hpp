#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace loopgrad::emit {

/// Writes `text` to `path` through a temporary file renamed into place, creating the directory if
/// needed, so a failed or killed write never leaves a half file: the temporary's name is unique to
/// the writer (the path, then ".tmp.", the process id and a counter, so concurrent writers of one
/// path never collide; the last rename wins), its data is synced before the rename and the
/// directory after it, and temporaries
/// left by writers that were killed are removed by the next write. Refuses to replace anything but
/// a regular file (a device, FIFO, directory or symbolic link). A file that already holds exactly
/// `text` is left alone, time stamp included, so that what depends on it does not rebuild (a
/// comment-only edit of a spec regenerates the same header). Throws std::runtime_error naming the
/// path.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

/// Several files as one: every one is written to its temporary and synced first; only when all of
/// them succeeded are they renamed into place, so a failure leaves every destination as it was.
/// Refuses one path given twice.
void write_files_atomically(const std::vector<std::pair<std::filesystem::path, std::string>>& files);

}  // namespace loopgrad::emit
