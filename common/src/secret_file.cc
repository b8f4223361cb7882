#include "rlaif/common/secret_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "rlaif/common/strings.h"

namespace rlaif {

namespace {

constexpr size_t kMaxSecretBytes = 16 * 1024;

// Closes the descriptor on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<std::string> ReadSecretFile(const std::string& path, const std::string& what) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (f.fd < 0) return Status::IoError(what + ": cannot open the file: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) {
    return Status::IoError(what + ": cannot stat the file: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(what + ": not a regular file");
  std::string text(kMaxSecretBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(f.fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IoError(what + ": cannot read the file: " + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  if (text.size() > kMaxSecretBytes) {
    return Status::InvalidArgument(what + ": the file is over 16 KiB: not a key");
  }
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // a byte-order mark
  std::string secret = TrimAsciiSpace(text);
  if (secret.empty()) return Status::InvalidArgument(what + ": the file is empty");
  if (secret.find_first_of("\r\n") != std::string::npos) {
    return Status::InvalidArgument(what + ": the file holds more than one line");
  }
  if (std::any_of(secret.begin(), secret.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u >= 0x7f;
      })) {
    return Status::InvalidArgument(
        what +
        ": the file holds control characters or non-ASCII bytes (an HTTP header cannot "
        "carry them)");
  }
  return secret;
}

}  // namespace rlaif
