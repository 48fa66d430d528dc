#include "loopgrad/emit/write_file.hpp"

#include <fmt/format.h>

#include <fstream>
#include <stdexcept>
#include <system_error>

namespace loopgrad::emit {

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.has_parent_path()) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw std::runtime_error(fmt::format("cannot create directory '{}': {}", path.parent_path().string(), ec.message()));
  }
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}': check that its directory is writable", path.string()));
    out << text;
    out.close();
    if (!out) {
      fs::remove(tmp, ec);
      throw std::runtime_error(fmt::format("writing '{}' failed (disk full?)", path.string()));
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    const std::string reason = ec.message();
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("cannot replace '{}': {}", path.string(), reason));
  }
}

}  // namespace loopgrad::emit
