// Judge reply parsing (judge/src/judge.cc ParseVerdict) and the rate-limit
// reset durations read from upstream headers (ParseResetDuration): both parse
// bytes chosen by a remote server. Checks: no crash; a rejected reply is
// kCorruption (the pipeline dead-letters exactly that code as
// "unparseable_verdict") with a bounded message; durations are finite, >= 0.
#include <cmath>

#include "fuzz_target.h"
#include "rlaif/judge/judge.h"
#include "rlaif/judge/rate_limit.h"

RLAIF_FUZZ_TARGET(verdict) {
  const std::string reply(reinterpret_cast<const char*>(data), size);
  auto w = rlaif::judge::ParseVerdict(reply);
  if (!w.ok()) {
    FUZZ_CHECK(w.status().code() == rlaif::StatusCode::kCorruption);
    FUZZ_CHECK(w.status().message().size() < 4096);
  }
  if (auto d = rlaif::judge::ParseResetDuration(reply)) {
    FUZZ_CHECK(std::isfinite(*d) && *d >= 0);
  }
  return 0;
}
