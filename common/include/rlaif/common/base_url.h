// An OpenAI-compatible endpoint's base_url (e.g. http://127.0.0.1:8000/v1),
// parsed once for both the config check (`rlaifd check-config`, start) and
// the HTTP client, so a URL the client would refuse is refused up front.
#pragma once

#include <string>

#include "rlaif/common/status.h"

namespace rlaif {

struct BaseUrl {
  bool https = false;
  std::string host;  // without brackets for IPv6
  int port = 0;      // 80 / 443 when the URL names none
  std::string path;  // without a trailing '/', e.g. "/v1" ("" for none)
};

// kInvalidArgument, with a message that never quotes a query, fragment or
// user info (where secrets hide), when `url` is not http(s)://host[:port][/path].
Result<BaseUrl> ParseBaseUrl(const std::string& url);

}  // namespace rlaif
