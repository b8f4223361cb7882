// Shared helpers for the GoogleTest suites.
#pragma once

#include <string>

namespace rlaif::testing {

// A fresh directory under $TMPDIR, removed (recursively) by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Repo root (for data/ fixtures) and build/bin.
std::string SourceDir();
std::string BinDir();

void WriteFile(const std::string& path, const std::string& content);
void AppendFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

}  // namespace rlaif::testing
