#include "rlaif/common/process_stats.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace rlaif {

ProcessStats ReadProcessStats() {
  ProcessStats out;
  const long page = sysconf(_SC_PAGESIZE);
  {
    std::ifstream statm("/proc/self/statm");
    uint64_t size = 0, resident = 0;
    if (statm >> size >> resident && page > 0) {
      out.virtual_bytes = size * static_cast<uint64_t>(page);
      out.resident_bytes = resident * static_cast<uint64_t>(page);
    }
  }
  {
    // /proc/self/stat: "pid (comm) state ..."; comm may hold spaces, so the
    // fields are counted from the last ')'. utime, stime: fields 14, 15;
    // num_threads: 20.
    std::ifstream stat("/proc/self/stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 <= line.size()) {
      std::istringstream rest(line.substr(close + 2));
      std::string field;
      const long ticks = sysconf(_SC_CLK_TCK);
      for (int i = 3; rest >> field; ++i) {
        // strtod/strtoll: an odd field reads as 0, never throws.
        if ((i == 14 || i == 15) && ticks > 0) {
          out.cpu_seconds += std::strtod(field.c_str(), nullptr) / static_cast<double>(ticks);
        }
        if (i == 20) {
          out.threads = std::strtoll(field.c_str(), nullptr, 10);
          break;
        }
      }
    }
  }
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
       it.increment(ec)) {
    ++out.open_fds;
  }
  if (out.open_fds > 0) --out.open_fds;  // the iterator's own descriptor
  struct rlimit limit {};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) out.max_fds = static_cast<int64_t>(limit.rlim_cur);
  return out;
}

void ReleaseFreeMemory() { malloc_trim(0); }

}  // namespace rlaif
