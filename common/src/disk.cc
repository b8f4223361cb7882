#include "rlaif/common/disk.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

namespace rlaif {

uint64_t DirectoryBytes(const std::string& dir, bool unshared_only) {
  namespace fs = std::filesystem;
  std::error_code ec;
  uint64_t bytes = 0;
  // unshared_only: inode -> links seen under `dir`, its link count, its blocks.
  struct Linked {
    nlink_t seen = 0;
    nlink_t links = 0;
    uint64_t bytes = 0;
  };
  std::map<std::pair<dev_t, ino_t>, Linked> linked;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (const fs::recursive_directory_iterator end; !ec && it != end; it.increment(ec)) {
    std::error_code file_ec;
    // A symbolic link counts nothing (it may point anywhere, or at a file
    // counted already); the iterator does not follow directory links.
    if (!fs::is_regular_file(it->symlink_status(file_ec))) continue;
    // The blocks it takes (as du counts), not its length: RocksDB
    // preallocates its log files, so the length says too little.
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    const uint64_t blocks = static_cast<uint64_t>(st.st_blocks) * 512;
    if (unshared_only && st.st_nlink > 1) {
      Linked& l = linked[{st.st_dev, st.st_ino}];
      ++l.seen;
      l.links = st.st_nlink;
      l.bytes = blocks;
      continue;
    }
    bytes += blocks;
  }
  // A file hard-linked only within `dir` (one store file in several backups)
  // counts once; one linked from outside too (the live store) frees nothing.
  for (const auto& [inode, l] : linked) {
    if (l.seen >= l.links) bytes += l.bytes;
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
