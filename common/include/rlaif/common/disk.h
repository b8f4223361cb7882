// Disk usage, for metrics and retention: never throws, never fails loudly
// (what cannot be read counts as nothing).
#pragma once

#include <cstdint>
#include <string>

namespace rlaif {

// Disk space the regular files under `dir` take, recursively (allocated
// blocks, as `du` counts: a preallocated log file counts what it holds on
// disk; symbolic links count nothing); a directory removed during the walk
// or without permission counts 0. `unshared_only`: what deleting `dir`
// would free: a file hard-linked from outside `dir` (a backup's store file
// that is also the live store's) counts nothing, one linked several times
// within `dir` (in several backups) counts once.
uint64_t DirectoryBytes(const std::string& dir, bool unshared_only = false);

struct FilesystemSpace {
  bool known = false;     // statvfs succeeded
  uint64_t free = 0;      // bytes an unprivileged process may still write
  uint64_t capacity = 0;  // bytes of the filesystem
};
// The space of the filesystem holding `path`.
FilesystemSpace SpaceOf(const std::string& path);

}  // namespace rlaif
