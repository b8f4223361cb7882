// Wall-clock helpers. Kept in one place so tests and logs agree on units.
#pragma once

#include <cstdint>
#include <string>

namespace rlaif {

// Milliseconds since the Unix epoch (system clock).
int64_t NowMs();
// Seconds on a monotonic clock, for durations.
double MonotonicSeconds();
// RFC 3339 UTC time, e.g. "2026-11-27T09:40:37.123Z".
std::string FormatTimeMs(int64_t ms_since_epoch);

}  // namespace rlaif
