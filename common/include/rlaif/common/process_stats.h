// This process's resource use, from /proc/self (Linux): for the standard
// Prometheus process_* metrics. Fields that cannot be read stay 0.
#pragma once

#include <cstdint>

namespace rlaif {

struct ProcessStats {
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  double cpu_seconds = 0;  // user + system
  int64_t open_fds = 0;
  int64_t max_fds = 0;  // RLIMIT_NOFILE soft limit
  int64_t threads = 0;
};
ProcessStats ReadProcessStats();

// Hands memory freed by the allocator back to the system (glibc
// malloc_trim): after a training run, whose tensors were freed in many
// threads' arenas, the resident size would otherwise stay at its peak.
void ReleaseFreeMemory();

}  // namespace rlaif
