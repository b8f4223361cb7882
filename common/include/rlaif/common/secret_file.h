// Reading a secret (an upstream API key) from a file, as a Kubernetes Secret
// volume, a Vault agent or an operator writes it.
//
//   auto key = rlaif::ReadSecretFile("/etc/rlaifd-keys/judge", "judge.api_key_file");
//   if (!key.ok()) spdlog::warn("{}", key.status().message());  // never holds the key
#pragma once

#include <string>

#include "rlaif/common/status.h"

namespace rlaif {

// The secret in `path`: surrounding whitespace (a trailing newline, CRLF)
// and a UTF-8 byte-order mark dropped. Refused when the file is not a
// regular one (a FIFO, a device or a directory: opened without blocking,
// so a FIFO cannot hang the caller), cannot be read, is over 16 KiB, is
// empty, holds more than one line, or holds anything but printable ASCII
// (an HTTP header cannot carry it). Messages start with `what` (the config
// key, e.g. "judge.api_key_file") and quote neither the content nor the
// path (a key pasted in as the path must not reach a log).
Result<std::string> ReadSecretFile(const std::string& path, const std::string& what);

}  // namespace rlaif
