#include "rlaif/common/disk.h"

#include <sys/statvfs.h>

#include <filesystem>
#include <system_error>

namespace rlaif {

uint64_t DirectoryBytes(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  uint64_t bytes = 0;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::error_code file_ec;
    // A symbolic link counts nothing (it may point anywhere, or at a file
    // counted already); the iterator does not follow directory links.
    if (!fs::is_regular_file(it->symlink_status(file_ec))) continue;
    const uintmax_t size = it->file_size(file_ec);
    if (!file_ec) bytes += size;
  }
  return bytes;
}

FilesystemSpace SpaceOf(const std::string& path) {
  struct statvfs fs {};
  if (statvfs(path.c_str(), &fs) != 0) return {};
  const uint64_t unit = fs.f_frsize ? fs.f_frsize : fs.f_bsize;
  return {true, static_cast<uint64_t>(fs.f_bavail) * unit,
          static_cast<uint64_t>(fs.f_blocks) * unit};
}

}  // namespace rlaif
