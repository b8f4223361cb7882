// A guard to run before parsing untrusted JSON: nlohmann builds every level
// of nesting, so a few megabytes of '[' would cost gigabytes (and deep
// recursion in whatever walks the tree next) before the parse could fail.
//
//   if (JsonNestsDeeperThan(body, 64)) return Error("nests too deep");
#pragma once

#include <string_view>

namespace rlaif {

// True when arrays/objects in `text` nest deeper than `limit`; brackets
// inside strings do not count. Linear, stops at the first level too deep;
// does not validate the JSON otherwise.
bool JsonNestsDeeperThan(std::string_view text, int limit);

}  // namespace rlaif
