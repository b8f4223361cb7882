// Small string helpers shared by the daemon and rlaifctl.
#pragma once

#include <string>
#include <string_view>

namespace rlaif {

// `s` without leading and trailing ASCII whitespace (space, tab, CR, LF, VT,
// FF): a secret read from a file (`$(cat key)`, a Kubernetes Secret made
// --from-file) often ends in a newline, which no HTTP header can carry.
std::string TrimAsciiSpace(std::string_view s);

}  // namespace rlaif
