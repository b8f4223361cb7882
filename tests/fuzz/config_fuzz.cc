// The config loader (common/src/config.cc ParseConfig): any bytes give either
// a Config or an error that lists problems, never a crash or an exception.
#include "fuzz_target.h"
#include "rlaif/common/config.h"

RLAIF_FUZZ_TARGET(config) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = rlaif::ParseConfig(text);
  if (!cfg.ok()) FUZZ_CHECK(!cfg.status().message().empty());
  return 0;
}
