// fuzz_replay CORPUS_ROOT [TARGET...]: runs every file of CORPUS_ROOT/<target>/
// through its registered fuzz target (fuzz_target.h). Exit 0 when all ran;
// a failing check aborts, as it would under libFuzzer. Exit 1 when a target
// has no corpus directory or no file (a seed corpus must not silently vanish).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace rlaif::fuzz {

static std::map<std::string, TargetFn>& Targets() {
  static std::map<std::string, TargetFn> targets;
  return targets;
}

bool Register(const char* name, TargetFn fn) {
  Targets()[name] = fn;
  return true;
}

}  // namespace rlaif::fuzz

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::cerr << "usage: fuzz_replay CORPUS_ROOT [TARGET...]\n";
    return 2;
  }
  const fs::path root = argv[1];
  std::vector<std::string> only(argv + 2, argv + argc);
  int failures = 0;
  for (const auto& [name, fn] : rlaif::fuzz::Targets()) {
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
    const fs::path dir = root / name;
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) {
      std::cerr << name << ": no corpus in " << dir << "\n";
      ++failures;
      continue;
    }
    size_t bytes = 0;
    for (const auto& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      bytes += data.size();
      fn(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    }
    std::cout << name << ": " << files.size() << " inputs (" << bytes << " bytes) ok\n";
  }
  return failures == 0 ? 0 : 1;
}
