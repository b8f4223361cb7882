#include "unicode_nfc.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

namespace rlaif::trainer {

namespace {

struct CombiningClassRange {
  char32_t lo, hi;
  uint8_t ccc;
};
struct Decomposition {
  char32_t cp;
  uint16_t start;  // into kDecompositionCode
  uint8_t length;
};
struct Composition {
  char32_t first, second, composite;
};
struct CodePointRange {
  char32_t lo, hi;
};
#include "unicode_nfc.inc"

static_assert(kFirstUnstable >= 0x80, "the ASCII fast paths take every ASCII byte as a boundary");

// Hangul syllables (de)compose by arithmetic (the Unicode Standard, section 3.12).
constexpr char32_t kSBase = 0xac00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11a7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr char32_t kSCount = kLCount * kVCount * kTCount;

// The entry of a table of {lo, hi, ...} ranges sorted by lo that holds `cp`.
template <typename Range, size_t N>
const Range* FindRange(const Range (&table)[N], char32_t cp) {
  const Range* it = std::upper_bound(std::begin(table), std::end(table), cp,
                                     [](char32_t c, const Range& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= (it - 1)->hi ? it - 1 : nullptr;
}

uint8_t CombiningClass(char32_t cp) {
  if (cp < kFirstUnstable) return 0;  // every mark is unstable
  const CombiningClassRange* r = FindRange(kCombiningClasses, cp);
  return r ? r->ccc : 0;
}

// kUnstableRanges as a bitmap over the Basic Multilingual Plane (8 KB,
// built by the compiler), so that the quick check of most text is a load,
// not a binary search.
struct BmpBitmap {
  uint64_t words[0x10000 / 64];
};
constexpr BmpBitmap MakeUnstableBmp() {
  BmpBitmap bitmap{};
  for (const CodePointRange& r : kUnstableRanges) {
    for (char32_t cp = r.lo; cp <= r.hi && cp < 0x10000; ++cp) {
      bitmap.words[cp / 64] |= uint64_t{1} << (cp % 64);
    }
  }
  return bitmap;
}
constexpr BmpBitmap kUnstableBmp = MakeUnstableBmp();

// True when text can be cut just before `cp`: NFC keeps it as it is, and
// nothing before it reorders or composes with it (or with what it
// decomposes to).
bool IsBoundary(char32_t cp) {
  if (cp < 0x10000) return (kUnstableBmp.words[cp / 64] >> (cp % 64) & 1) == 0;
  return FindRange(kUnstableRanges, cp) == nullptr;
}

// The length of the valid UTF-8 sequence at s[0..n) (n > 0) and its code
// point, or 0 when s[0] does not begin one: overlongs, surrogates, code
// points above U+10FFFF and truncated sequences are invalid, as in the
// tokenizer's decoder (hf_tokenizer.cc).
size_t DecodeUtf8(const unsigned char* s, size_t n, char32_t* cp) {
  const unsigned char b = s[0];
  if (b < 0x80) {
    *cp = b;
    return 1;
  }
  if (b < 0xc2 || b > 0xf4) return 0;
  const size_t len = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
  if (len > n) return 0;
  char32_t c = b & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
  for (size_t k = 1; k < len; ++k) {
    if ((s[k] & 0xc0) != 0x80) return 0;
    c = (c << 6) | (s[k] & 0x3f);
  }
  if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || (c >= 0xd800 && c <= 0xdfff) ||
      c > 0x10ffff) {
    return 0;
  }
  *cp = c;
  return len;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    const char bytes[] = {static_cast<char>(0xc0 | (cp >> 6)),
                          static_cast<char>(0x80 | (cp & 0x3f))};
    out->append(bytes, 2);
  } else if (cp < 0x10000) {
    const char bytes[] = {static_cast<char>(0xe0 | (cp >> 12)),
                          static_cast<char>(0x80 | ((cp >> 6) & 0x3f)),
                          static_cast<char>(0x80 | (cp & 0x3f))};
    out->append(bytes, 3);
  } else {
    const char bytes[] = {
        static_cast<char>(0xf0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3f)),
        static_cast<char>(0x80 | ((cp >> 6) & 0x3f)), static_cast<char>(0x80 | (cp & 0x3f))};
    out->append(bytes, 4);
  }
}

// The primary composite of `first` + `second`, or 0 if none.
char32_t Compose(char32_t first, char32_t second) {
  // Unsigned wrap-around makes each difference test a range test.
  if (first - kLBase < kLCount && second - kVBase < kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first - kSBase < kSCount && (first - kSBase) % kTCount == 0 &&
      second - (kTBase + 1) < kTCount - 1) {
    return first + (second - kTBase);
  }
  const Composition* it = std::lower_bound(
      std::begin(kCompositions), std::end(kCompositions), std::pair{first, second},
      [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
        return c.first < key.first || (c.first == key.first && c.second < key.second);
      });
  return it != std::end(kCompositions) && it->first == first && it->second == second ? it->composite
                                                                                     : 0;
}

struct CodeUnit {
  char32_t cp;
  uint8_t ccc;
};

void AppendDecomposed(char32_t cp, std::vector<CodeUnit>* buffer) {
  if (cp - kSBase < kSCount) {
    const char32_t index = cp - kSBase;
    buffer->push_back({kLBase + index / (kVCount * kTCount), 0});
    buffer->push_back({kVBase + index % (kVCount * kTCount) / kTCount, 0});
    if (index % kTCount != 0) buffer->push_back({kTBase + index % kTCount, 0});
    return;
  }
  if (cp >= kDecompositions[0].cp) {
    const Decomposition* it =
        std::lower_bound(std::begin(kDecompositions), std::end(kDecompositions), cp,
                         [](const Decomposition& d, char32_t c) { return d.cp < c; });
    if (it != std::end(kDecompositions) && it->cp == cp) {
      for (size_t k = 0; k < it->length; ++k) {
        const char32_t part = kDecompositionCode[it->start + k];
        buffer->push_back({part, CombiningClass(part)});
      }
      return;
    }
  }
  buffer->push_back({cp, CombiningClass(cp)});
}

// Canonical ordering: each run of non-starters sorted by combining class,
// stably. Short runs (the usual one or two marks) by insertion, which
// allocates nothing; long ones by std::stable_sort, so that a pathological
// run of marks costs n log n, not n^2.
void ReorderMarks(std::vector<CodeUnit>* buffer) {
  constexpr size_t kInsertionSortMax = 16;
  const auto by_class = [](const CodeUnit& a, const CodeUnit& b) { return a.ccc < b.ccc; };
  CodeUnit* data = buffer->data();
  const size_t n = buffer->size();
  size_t i = 0;
  while (i < n) {
    if (data[i].ccc == 0) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < n && data[end].ccc != 0) ++end;
    if (end - i > kInsertionSortMax) {
      std::stable_sort(data + i, data + end, by_class);
    } else {
      for (size_t k = i + 1; k < end; ++k) {
        const CodeUnit unit = data[k];
        size_t j = k;
        for (; j > i && data[j - 1].ccc > unit.ccc; --j) data[j] = data[j - 1];
        data[j] = unit;
      }
    }
    i = end;
  }
}

// Canonical composition (UAX #15, section 1.3) in place: each character
// composes with the last starter before it unless a character in between
// has class 0 or a class at least its own.
void ComposeInPlace(std::vector<CodeUnit>* buffer) {
  CodeUnit* data = buffer->data();
  const size_t n = buffer->size();
  if (n == 0) return;
  size_t starter = 0;
  // A leading non-starter has no starter to compose with; 256 blocks every
  // character after it until a starter comes.
  int last_class = data[0].ccc == 0 ? 0 : 256;
  size_t kept = 1;
  for (size_t i = 1; i < n; ++i) {
    const CodeUnit unit = data[i];
    if (last_class < unit.ccc || last_class == 0) {
      if (const char32_t composite = Compose(data[starter].cp, unit.cp)) {
        data[starter] = {composite, 0};
        continue;
      }
    }
    if (unit.ccc == 0) starter = kept;
    last_class = unit.ccc;
    data[kept++] = unit;
  }
  buffer->resize(kept);
}

// Appends the NFC of `segment`, valid UTF-8 throughout.
void NormalizeSegment(std::string_view segment, std::vector<CodeUnit>* buffer, std::string* out) {
  const auto* s = reinterpret_cast<const unsigned char*>(segment.data());
  buffer->clear();
  for (size_t i = 0; i < segment.size();) {
    char32_t cp = 0;
    const size_t len = DecodeUtf8(s + i, segment.size() - i, &cp);
    AppendDecomposed(cp, buffer);
    i += len;
  }
  ReorderMarks(buffer);
  ComposeInPlace(buffer);
  for (const CodeUnit& unit : *buffer) AppendUtf8(unit.cp, out);
}

}  // namespace

std::string NfcNormalize(std::string_view utf8) {
  const auto* s = reinterpret_cast<const unsigned char*>(utf8.data());
  const size_t n = utf8.size();
  size_t i = 0;
  while (i < n && s[i] < 0x80) ++i;
  if (i == n) return std::string(utf8);

  // Text is copied through in bulk up to the last boundary before a
  // character that may change; from that boundary up to the next one the
  // text is normalized in a buffer. An invalid byte is copied as it is and
  // the next segment starts after it.
  std::string out;
  out.reserve(n);
  std::vector<CodeUnit> buffer;
  size_t copied = 0;                    // s[0..copied) is in `out`
  size_t boundary = i > 0 ? i - 1 : 0;  // where the pending segment would start
  while (i < n) {
    if (s[i] < 0x80) {
      boundary = i++;
      continue;
    }
    char32_t cp = 0;
    size_t len = DecodeUtf8(s + i, n - i, &cp);
    if (len == 0) {
      boundary = ++i;
      continue;
    }
    if (IsBoundary(cp)) {
      boundary = i;
      i += len;
      continue;
    }
    size_t end = i + len;
    while (end < n && s[end] >= 0x80) {
      len = DecodeUtf8(s + end, n - end, &cp);
      if (len == 0 || IsBoundary(cp)) break;
      end += len;
    }
    out.append(utf8.data() + copied, boundary - copied);
    NormalizeSegment(utf8.substr(boundary, end - boundary), &buffer, &out);
    copied = boundary = i = end;
  }
  out.append(utf8.data() + copied, n - copied);
  return out;
}

}  // namespace rlaif::trainer
