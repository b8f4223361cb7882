#include "rlaif/common/base_url.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace rlaif {

Result<BaseUrl> ParseBaseUrl(const std::string& url) {
  BaseUrl ep;
  std::string lower = url;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string rest;
  if (lower.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (lower.rfind("https://", 0) == 0) {
    ep.https = true;
    rest = url.substr(8);
  } else {
    return Status::InvalidArgument("base_url must start with http:// or https://");
  }
  const size_t end = rest.find_first_of("/?#");
  const std::string authority = rest.substr(0, end);
  std::string path = end == std::string::npos ? "" : rest.substr(end);
  // Neither is quoted: credentials and keys are what people put there.
  if (authority.find('@') != std::string::npos) {
    return Status::InvalidArgument(
        "base_url must not contain user info (user:password@): the key belongs in the "
        "environment variable named by api_key_env");
  }
  if (path.find_first_of("?#") != std::string::npos) {
    return Status::InvalidArgument(
        "base_url must not have a query or fragment (?...): a key belongs in the environment "
        "variable named by api_key_env");
  }
  const std::string shown = std::string(ep.https ? "https://" : "http://") + authority + path;
  std::string port_text;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) {
      return Status::InvalidArgument("base_url '" + shown + "': unterminated IPv6 address");
    }
    ep.host = authority.substr(1, close - 1);
    const std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Status::InvalidArgument("base_url '" + shown + "': bad port");
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    ep.host = authority.substr(0, colon);
    if (colon != std::string::npos) port_text = authority.substr(colon + 1);
  }
  if (ep.host.empty()) return Status::InvalidArgument("base_url '" + shown + "' has no host");
  ep.port = ep.https ? 443 : 80;
  if (!port_text.empty() || (!authority.empty() && authority.back() == ':')) {
    char* stop = nullptr;
    const long p = std::strtol(port_text.c_str(), &stop, 10);
    if (port_text.empty() || *stop != '\0' || p < 1 || p > 65535) {
      return Status::InvalidArgument("base_url '" + shown + "': bad port '" + port_text + "'");
    }
    ep.port = static_cast<int>(p);
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  ep.path = path;
  return ep;
}

}  // namespace rlaif
