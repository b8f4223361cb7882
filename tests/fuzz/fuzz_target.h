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
inline bool ValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += len;
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
