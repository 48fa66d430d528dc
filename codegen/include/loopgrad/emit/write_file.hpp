#pragma once
// Atomic, durable file writes, header-only: the generator writes its headers, reports and graphs
// through them, and the runtime its safetensors files and checkpoints, including the standard-
// library-only app I/O that an app needing nothing but a generated header uses
// (loopgrad/runtime/kernel_io.hpp). Needs the C++ standard library and the POSIX calls every Linux
// and macOS libc has (open, write, fsync, rename, getpid, kill): fsync is what makes a write
// durable, and the standard library has no equivalent.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace loopgrad::emit {

namespace detail {

namespace fs = std::filesystem;

inline std::string reason(int error) { return std::generic_category().message(error); }

/// The directory `path` lives in ("." for a bare name).
inline fs::path directory_of(const fs::path& path) { return path.has_parent_path() ? path.parent_path() : fs::path("."); }

/// Removes the temporaries `<name>.tmp.<pid>.<n>` that writers of `path` left behind when they were
/// killed mid-write: those whose process no longer exists.
inline void remove_stale_temporaries(const fs::path& path) {
  const std::string prefix = path.filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(directory_of(path), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == 0 || dot == std::string::npos || rest.find_first_not_of("0123456789") != dot) continue;
    const long pid = std::strtol(rest.substr(0, dot).c_str(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

/// A file written to its temporary and synced, not yet renamed into place.
struct Staged {
  fs::path path;  ///< where it goes
  fs::path tmp;   ///< where it is
};

inline void remove_temporaries(const std::vector<Staged>& staged) {
  for (const auto& s : staged) {
    std::error_code ignored;
    fs::remove(s.tmp, ignored);
  }
}

/// `text` written to a temporary of this writer's own beside `path`, synced to disk.
inline Staged stage(const fs::path& path, const std::string& text) {
  std::error_code ec;
  if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create directory '" + path.parent_path().string() + "': " + ec.message());
  }
  const auto existing = fs::symlink_status(path, ec);
  if (!ec && fs::exists(existing) && !fs::is_regular_file(existing))
    throw std::runtime_error("will not replace '" + path.string() +
                             "': it is not a regular file (a directory, device, FIFO or symbolic link); give the path of a file");
  // A name no other writer uses: this process's id and a count of its writes.
  static std::atomic<unsigned long> writes{0};
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(writes++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0)
    throw std::runtime_error("cannot write '" + path.string() + "': " + reason(errno) + " (check that its directory is writable)");
  // Drops the temporary (closing it first unless that is what failed) and reports `error`.
  auto fail = [&](int error, bool close = true) {
    if (close) ::close(fd);
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw std::runtime_error("writing '" + path.string() + "' failed: " + reason(error));
  };
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t written = ::write(fd, p, left);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) fail(written < 0 ? errno : ENOSPC);
    p += written;
    left -= static_cast<std::size_t>(written);
  }
  // On disk before the rename, so that the name never points at a file whose data is not there.
  if (::fsync(fd) != 0) fail(errno);
  if (::close(fd) != 0) fail(errno, false);
  return {path, tmp};
}

/// Whether `path` is a regular file that holds exactly `text` already (then it is left alone, its
/// time stamp too, so that nothing that depends on it rebuilds).
inline bool holds(const fs::path& path, const std::string& text) {
  std::error_code ec;
  const auto status = fs::symlink_status(path, ec);
  if (ec || !fs::is_regular_file(status) || fs::file_size(path, ec) != text.size() || ec) return false;
  std::ifstream in(path, std::ios::binary);
  std::string existing(text.size(), '\0');
  in.read(existing.data(), static_cast<std::streamsize>(existing.size()));
  return in.gcount() == static_cast<std::streamsize>(text.size()) && existing == text;
}

}  // namespace detail

/// Several files as one: every one is written to its temporary and synced first; only when all of
/// them succeeded are they renamed into place, so a failure leaves every destination as it was.
/// Refuses one path given twice. See write_file_atomically for what each write guarantees.
inline void write_files_atomically(const std::vector<std::pair<std::filesystem::path, std::string>>& files) {
  namespace fs = std::filesystem;
  for (std::size_t i = 0; i < files.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (fs::absolute(files[i].first).lexically_normal() == fs::absolute(files[j].first).lexically_normal())
        throw std::runtime_error("'" + files[i].first.string() + "' is given for two outputs; give each output its own path");
  std::vector<detail::Staged> staged;
  try {
    for (const auto& [path, text] : files) {
      detail::remove_stale_temporaries(path);
      if (!detail::holds(path, text)) staged.push_back(detail::stage(path, text));
    }
  } catch (...) {
    detail::remove_temporaries(staged);
    throw;
  }
  for (std::size_t i = 0; i < staged.size(); ++i)
    if (::rename(staged[i].tmp.c_str(), staged[i].path.c_str()) != 0) {
      const int error = errno;
      detail::remove_temporaries({staged.begin() + static_cast<std::ptrdiff_t>(i), staged.end()});
      throw std::runtime_error("replacing '" + staged[i].path.string() + "' failed: " + detail::reason(error));
    }
  // The renames themselves on disk: sync the directories (some file systems refuse; the files are in place).
  for (const auto& s : staged) {
    const int dir = ::open(detail::directory_of(s.path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }
}

/// Writes `text` to `path` through a temporary file renamed into place, creating the directory if
/// needed, so a failed or killed write never leaves a half file: the temporary's name is unique to
/// the writer (the path, then ".tmp.", the process id and a counter, so concurrent writers of one
/// path never collide; the last rename wins), its data is synced before the rename and the
/// directory after it, and temporaries left by writers that were killed are removed by the next
/// write. Refuses to replace anything but a regular file (a device, FIFO, directory or symbolic
/// link). A file that already holds exactly `text` is left alone, time stamp included, so that
/// what depends on it does not rebuild (a comment-only edit of a spec regenerates the same
/// header). Throws std::runtime_error naming the path.
inline void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  write_files_atomically({{path, text}});
}

}  // namespace loopgrad::emit
