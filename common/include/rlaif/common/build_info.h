// The version and git revision of this build, for /v1/status, /metrics,
// checkpoints and backups. Defined in a file generated at configure time
// (common/src/build_info.cc.in), so that a new commit recompiles that one
// file instead of every object that a global compile definition would touch.
#pragma once

namespace rlaif {

const char* BuildVersion();   // the project version, e.g. "0.1.0"
const char* BuildRevision();  // `git rev-parse --short HEAD` at configure time, or "unknown"

}  // namespace rlaif
