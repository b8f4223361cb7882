// Flag parsing shared by the C++ benchmarks: "--name value" pairs into a map
// whose keys are the known flags, pre-filled with their defaults.
#pragma once

#include <iostream>
#include <map>
#include <string>

namespace rlaif::bench {

// Fills `flags` from argv; false (after a message on stderr) for an unknown
// flag or a flag without its value.
inline bool ParseBenchFlags(int argc, char** argv, std::map<std::string, std::string>* flags) {
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || !flags->count(k.substr(2))) {
      std::cerr << "unknown flag " << k << "\n";
      return false;
    }
    if (i + 1 >= argc) {
      std::cerr << "flag " << k << " needs a value\n";
      return false;
    }
    (*flags)[k.substr(2)] = argv[i + 1];
  }
  return true;
}

}  // namespace rlaif::bench
