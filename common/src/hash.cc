#include "rlaif/common/hash.h"

#include <cstdio>

namespace rlaif {

namespace {
constexpr uint64_t kFnvOffset = 1469598103934665603ULL;
constexpr uint64_t kFnvPrime = 1099511628211ULL;
}  // namespace

uint64_t Hash64(std::string_view data, uint64_t seed) {
  uint64_t h = kFnvOffset ^ seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= kFnvPrime;
  }
  // Final avalanche (splitmix64) so that nearby inputs spread over [0,1) evenly.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

uint64_t HashFields(std::initializer_list<std::string_view> fields) {
  std::string buf;
  for (std::string_view f : fields) {
    buf += std::to_string(f.size());
    buf += ':';
    buf.append(f.data(), f.size());
  }
  return Hash64(buf);
}

std::string HexId(uint64_t h) {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

double HashToUnit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

}  // namespace rlaif
