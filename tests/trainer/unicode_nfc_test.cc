// NFC normalization (trainer/src/unicode_nfc.h): Python's unicodedata
// results on the committed corpus tests/trainer/data/nfc_cases.jsonl
// (tools/gen_nfc_cases.py, Unicode 14.0.0), and the pass-through of invalid
// UTF-8, which Python cannot judge.
#include "unicode_nfc.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"

namespace rlaif::trainer {
namespace {

struct NfcCase {
  int line;
  std::string in, out;
};

std::vector<NfcCase> LoadCases() {
  std::istringstream lines(rlaif::testing::ReadFile(rlaif::testing::SourceDir() +
                                                    "/tests/trainer/data/nfc_cases.jsonl"));
  std::vector<NfcCase> cases;
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    const auto j = nlohmann::json::parse(line);
    cases.push_back({number, j.at("in").get<std::string>(), j.at("out").get<std::string>()});
  }
  return cases;
}

std::string Hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x ", c);
    out += buf;
  }
  return out;
}

// True when `s` is entirely valid UTF-8 (no overlongs, surrogates or code
// points past U+10FFFF).
bool IsValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    const size_t len = b >= 0xc2 && b < 0xe0    ? 2
                       : b >= 0xe0 && b < 0xf0  ? 3
                       : b >= 0xf0 && b <= 0xf4 ? 4
                                                : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = b & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = cp << 6 | (c & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || (cp >= 0xd800 && cp <= 0xdfff) ||
        cp > 0x10ffff) {
      return false;
    }
    i += len;
  }
  return true;
}

TEST(UnicodeNfcTest, MatchesPythonOnCorpus) {
  const std::vector<NfcCase> cases = LoadCases();
  ASSERT_GT(cases.size(), 20000u);
  int failures = 0, changed = 0;
  for (const NfcCase& c : cases) {
    const std::string got = NfcNormalize(c.in);
    changed += c.in != c.out;
    if (got != c.out && ++failures <= 20) {
      ADD_FAILURE() << "nfc_cases.jsonl line " << c.line << ": in " << Hex(c.in) << "\n  want "
                    << Hex(c.out) << "\n  got  " << Hex(got);
    }
  }
  EXPECT_EQ(failures, 0) << "of " << cases.size() << " cases";
  EXPECT_GT(changed, 5000) << "the corpus should mostly exercise text that NFC changes";
}

TEST(UnicodeNfcTest, IdempotentOnCorpus) {
  for (const NfcCase& c : LoadCases()) {
    const std::string once = NfcNormalize(c.in);
    ASSERT_EQ(NfcNormalize(once), once) << "line " << c.line << ": " << Hex(c.in);
    ASSERT_EQ(NfcNormalize(c.out), c.out) << "line " << c.line << ": " << Hex(c.out);
  }
}

TEST(UnicodeNfcTest, AsciiUnchanged) {
  std::string all;
  for (int b = 0; b < 0x80; ++b) all += static_cast<char>(b);
  EXPECT_EQ(NfcNormalize(all), all);
  EXPECT_EQ(NfcNormalize(""), "");
  const std::string text(100000, 'x');
  EXPECT_EQ(NfcNormalize(text), text);
}

TEST(UnicodeNfcTest, ComposesDecomposesAndReorders) {
  const std::pair<std::string, std::string> cases[] = {
      {"e\xCC\x81", "\xC3\xA9"},                                 // e + acute -> U+00E9
      {"\xC3\xA9", "\xC3\xA9"},                                  // already NFC
      {"\xE2\x84\xA6", "\xCE\xA9"},                              // Ohm sign -> Omega
      {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC"},              // U+0958: excluded
      {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"},  // L+V+T -> U+AC01
      {"\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81"},              // LV+T -> U+AC01
      {"a\xCC\x81\xCC\xA3", "\xE1\xBA\xA1\xCC\x81"},             // a + 0301 + 0323 -> U+1EA1 0301
      {"a\xCC\x81\xCC\x81", "\xC3\xA1\xCC\x81"},                 // second acute blocked
      {"\xE3\x81\x8B\xE3\x82\x99", "\xE3\x81\x8C"},              // ka + voicing -> ga
      {"\xF0\x9D\x85\x97\xF0\x9D\x85\xA5", "\xF0\x9D\x85\x97\xF0\x9D\x85\xA5"},  // U+1D15E excluded
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(NfcNormalize(in), want) << Hex(in);
}

TEST(UnicodeNfcTest, InvalidUtf8PassesThrough) {
  const std::pair<std::string, std::string> cases[] = {
      {"e\xCC", "e\xCC"},  // truncated mark
      {"\xFF", "\xFF"},
      {"\xED\xA0\x80", "\xED\xA0\x80"},                      // surrogate U+D800
      {"\xC0\xAF", "\xC0\xAF"},                              // overlong '/'
      {"\xE0\x80\xAF", "\xE0\x80\xAF"},                      // overlong, 3 bytes
      {"\xF0\x82\x82\xAC", "\xF0\x82\x82\xAC"},              // overlong, 4 bytes
      {"\xF4\x90\x80\x80", "\xF4\x90\x80\x80"},              // U+110000
      {"\xF8\x88\x80\x80\x80", "\xF8\x88\x80\x80\x80"},      // 5-byte form
      {"\xE1\x84\x80\xE1\x85", "\xE1\x84\x80\xE1\x85"},      // L + truncated V
      {"\xCC\x81\xCC", "\xCC\x81\xCC"},                      // mark, truncated mark
      {"\xE2\x84\xA6\xC3", "\xCE\xA9\xC3"},                  // Ohm, truncated
      {"\xE0\xA5\x98\xFF", "\xE0\xA4\x95\xE0\xA4\xBC\xFF"},  // U+0958, invalid
      // A valid sequence right after an invalid byte is normalized.
      {std::string("\xFF") + "e\xCC\x81", "\xFF\xC3\xA9"},
      {std::string("\xC0") + "e\xCC\x81x", "\xC0\xC3\xA9x"},
      {std::string("\xED\xA0\x80") + "e\xCC\x81", "\xED\xA0\x80\xC3\xA9"},
      {"e\xCC\x81\x80", "\xC3\xA9\x80"},  // stray continuation after
      // An invalid byte is a boundary: nothing composes or reorders across it.
      {"e\xFF\xCC\x81", "e\xFF\xCC\x81"},
      {"e\xCC\xCC\x81", "e\xCC\xCC\x81"},
      {"\xE1\x84\x80\xFF\xE1\x85\xA1", "\xE1\x84\x80\xFF\xE1\x85\xA1"},
      {"a\xCC\x81\xFF\xCC\x96", "\xC3\xA1\xFF\xCC\x96"},
      {"a\xCC\x96\xFF\xCC\x81\xCC\x96", "a\xCC\x96\xFF\xCC\x96\xCC\x81"},
      {std::string("e\0\xCC\x81", 4), std::string("e\0\xCC\x81", 4)},  // NUL is a starter
  };
  for (const auto& [in, want] : cases) EXPECT_EQ(NfcNormalize(in), want) << Hex(in);
}

// Random mixes of valid pieces and invalid bytes: the result is the valid
// runs normalized on their own, the invalid bytes between them unchanged.
TEST(UnicodeNfcTest, InvalidBytesSplitTheText) {
  // Starters; marks; Hangul; a singleton and an exclusion; more pairs.
  // clang-format off
  const std::vector<std::string> valid = {
      "a", "e", " ", "\xC3\xA9", "\xE1\xBA\xA1", "\xE4\xB8\xAD", "\xCC\x81", "\xCC\x96",
      "\xCC\xA7", "\xCD\x85", "\xD7\x91\xD6\xBC", "\xE1\x84\x80", "\xE1\x85\xA1",
      "\xE1\x86\xA8", "\xEA\xB0\x80", "\xE2\x84\xA6", "\xE0\xA5\x98", "\xE0\xAD\x87",
      "\xE0\xAC\xBE", "\xF0\x9D\x85\x97", "\xF0\x9D\x85\xA5"};
  // Each of these is invalid whatever surrounds it (no truncated sequences,
  // which the next piece could complete).
  const std::vector<std::string> invalid = {"\xFF", "\xC0", "\x80", "\xBF",
                                            "\xF5", "\xED\xA0\x80", "\xC1\xBF"};
  // clang-format on
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; ++round) {
    std::string in, want, run;
    const int pieces = static_cast<int>(rng() % 12) + 1;
    for (int k = 0; k < pieces; ++k) {
      if (rng() % 4 == 0) {
        const std::string& bad = invalid[rng() % invalid.size()];
        want += NfcNormalize(run) + bad;
        in += bad;
        run.clear();
      } else {
        const std::string& good = valid[rng() % valid.size()];
        run += good;
        in += good;
      }
    }
    want += NfcNormalize(run);
    ASSERT_EQ(NfcNormalize(in), want) << Hex(in);
  }
  for (const std::string& piece : valid) {
    for (const std::string& next : valid) {
      ASSERT_TRUE(IsValidUtf8(NfcNormalize(piece + next))) << Hex(piece + next);
    }
  }
}

TEST(UnicodeNfcTest, LongRunOfMarksIsSortedStably) {
  // a + (acute, grave-below) x n: the marks below (class 220) move before the
  // acutes (230); the first acute composes with the a, the others are
  // blocked by it.
  const int n = 200000;
  std::string in = "a";
  for (int k = 0; k < n; ++k) in += "\xCC\x81\xCC\x96";
  std::string want = "\xC3\xA1";
  for (int k = 0; k < n; ++k) want += "\xCC\x96";
  for (int k = 1; k < n; ++k) want += "\xCC\x81";
  EXPECT_EQ(NfcNormalize(in), want);
}

}  // namespace
}  // namespace rlaif::trainer
