// One fuzz target = one function over bytes. The same source builds two ways:
//
//  - with RLAIF_LIBFUZZER (cmake -DRLAIF_FUZZ=ON, clang): the function is
//    LLVMFuzzerTestOneInput of a libFuzzer binary <name>_fuzz (scripts/fuzz.sh);
//  - otherwise it registers itself with fuzz_replay, which runs every file of
//    tests/fuzz/corpus/<name>/ through it in the normal test suite (ctest
//    fuzz.replay), so the seed corpora and every crash once found stay
//    regression tests without clang.
//
//   RLAIF_FUZZ_TARGET(line_parser) {   // (const uint8_t* data, size_t size)
//     ...
//     FUZZ_CHECK(invariant);           // aborts: libFuzzer reports a crash
//     return 0;
//   }
#pragma once

#include <errno.h>
#include <iconv.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace rlaif::fuzz {

using TargetFn = int (*)(const uint8_t*, size_t);

// Registers a target with fuzz_replay (defined in fuzz_replay_main.cc).
bool Register(const char* name, TargetFn fn);

// True when `s` is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF).
// Decided by glibc's UTF-8 converter, an implementation independent of the
// project's own validators (daemon/src/line_parser.cc), so this oracle does
// not share their bugs.
inline bool ValidUtf8(std::string_view s) {
  thread_local iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) std::abort();
  iconv(cd, nullptr, nullptr, nullptr, nullptr);  // reset the shift state
  char* in = const_cast<char*>(s.data());
  size_t in_left = s.size();
  char buf[4096];
  while (in_left > 0) {
    char* out = buf;
    size_t out_left = sizeof buf;
    if (iconv(cd, &in, &in_left, &out, &out_left) == static_cast<size_t>(-1) && errno != E2BIG) {
      return false;  // EILSEQ: invalid; EINVAL: truncated at the end
    }
  }
  return true;
}

}  // namespace rlaif::fuzz

#define FUZZ_CHECK(cond)                                                               \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

#ifdef RLAIF_LIBFUZZER
#define RLAIF_FUZZ_TARGET(name)                                                 \
  static int name##_OneInput(const uint8_t* data, size_t size);                 \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {     \
    return name##_OneInput(data, size);                                         \
  }                                                                             \
  static int name##_OneInput(const uint8_t* data, size_t size)
#else
#define RLAIF_FUZZ_TARGET(name)                                                 \
  static int name##_OneInput(const uint8_t* data, size_t size);                 \
  [[maybe_unused]] static const bool name##_registered =                        \
      ::rlaif::fuzz::Register(#name, &name##_OneInput);                         \
  static int name##_OneInput(const uint8_t* data, size_t size)
#endif
