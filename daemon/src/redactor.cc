#include "rlaif/daemon/redactor.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#define RLAIF_REDACTOR_SSE2 1
#endif

namespace rlaif::daemon {

namespace {

// Hand-written scanners for the built-in kinds: std::regex is far too slow
// for the ingest hot path and recurses on long inputs.

struct Span {
  size_t b, e;
  int priority;  // lower wins an overlap
  std::string kind;
  std::string prefix;
};

// ASCII only, locale-free (the <cctype> functions consult the locale).
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlpha(char c) { return IsUpper(c) || IsLower(c); }
bool IsAlnum(char c) { return IsDigit(c) || IsAlpha(c); }
bool IsWord(char c) { return IsAlnum(c) || c == '_'; }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

void FindEmails(std::string_view t, std::vector<Span>* out) {
  auto local = [](char c) { return IsAlnum(c) || std::strchr("._%+-", c) != nullptr; };
  auto domain = [](char c) { return IsAlnum(c) || c == '-' || c == '.'; };
  for (size_t at = t.find('@'); at != std::string_view::npos; at = t.find('@', at + 1)) {
    size_t b = at;
    while (b > 0 && local(t[b - 1])) --b;
    while (b < at && t[b] == '.') ++b;
    size_t e = at + 1;
    while (e < t.size() && domain(t[e])) ++e;
    while (e > at + 1 && (t[e - 1] == '.' || t[e - 1] == '-')) --e;
    if (b == at || e <= at + 1) continue;
    std::string_view dom = t.substr(at + 1, e - at - 1);
    size_t dot = dom.rfind('.');
    if (dot == std::string_view::npos || dot == 0) continue;
    std::string_view tld = dom.substr(dot + 1);
    if (tld.size() < 2 || !std::all_of(tld.begin(), tld.end(), IsAlpha)) {
      continue;
    }
    out->push_back({b, e, 2, "email", "EMAIL"});
  }
}

void FindSecrets(std::string_view t, std::vector<Span>* out) {
  auto token = [](char c) { return IsAlnum(c) || c == '-' || c == '_'; };
  static const char* kPrefixes[] = {"sk-",   "sk_live_", "sk_test_", "rk_live_",    "ghp_",
                                    "gho_",  "ghs_",     "ghu_",     "github_pat_", "xoxb-",
                                    "xoxp-", "xoxa-",    "glpat-",   "hf_"};
  for (const char* prefix : kPrefixes) {
    const size_t pl = std::strlen(prefix);
    for (size_t p = t.find(prefix); p != std::string_view::npos; p = t.find(prefix, p + 1)) {
      if (p > 0 && IsWord(t[p - 1])) continue;
      size_t e = p + pl;
      while (e < t.size() && token(t[e])) ++e;
      if (e - p - pl >= 20) out->push_back({p, e, 1, "secret", "SECRET"});
    }
  }
  for (const char* prefix : {"AKIA", "ASIA"}) {
    for (size_t p = t.find(prefix); p != std::string_view::npos; p = t.find(prefix, p + 1)) {
      if (p > 0 && IsAlnum(t[p - 1])) continue;
      size_t e = p + 4;
      while (e < t.size() && (IsUpper(t[e]) || IsDigit(t[e]))) ++e;
      if (e - p == 20 && (e == t.size() || !IsAlnum(t[e]))) {
        out->push_back({p, e, 1, "secret", "SECRET"});
      }
    }
  }
  // "Bearer <token>": the token only.
  for (size_t p = 0; p + 7 < t.size(); ++p) {
    if ((t[p] != 'B' && t[p] != 'b') || strncasecmp(t.data() + p, "bearer ", 7) != 0) continue;
    if (p > 0 && IsWord(t[p - 1])) continue;
    size_t b = p + 7;
    while (b < t.size() && t[b] == ' ') ++b;
    size_t e = b;
    while (e < t.size() && (IsAlnum(t[e]) || std::strchr("._~+/=-", t[e]) != nullptr)) ++e;
    if (e - b >= 16) out->push_back({b, e, 1, "secret", "SECRET"});
  }
  // Long hex or base64-like runs.
  auto b64 = [](char c) {
    return IsAlnum(c) || c == '+' || c == '/' || c == '=' || c == '_' || c == '-';
  };
  for (size_t i = 0; i < t.size();) {
    if (!b64(t[i])) {
      ++i;
      continue;
    }
    size_t e = i;
    bool upper = false, lower = false, digit = false, all_hex = true;
    while (e < t.size() && b64(t[e])) {
      char c = t[e];
      upper |= IsUpper(c);
      lower |= IsLower(c);
      digit |= IsDigit(c);
      all_hex &= IsHex(c);
      ++e;
    }
    const size_t len = e - i;
    if ((all_hex && len >= 32 && digit) || (len >= 40 && upper && lower && digit)) {
      out->push_back({i, e, 1, "secret", "SECRET"});
    }
    i = e;
  }
}

void FindIpv4(std::string_view t, std::vector<Span>* out) {
  for (size_t i = 0; i < t.size(); ++i) {
    if (!IsDigit(t[i]) || (i > 0 && (IsAlnum(t[i - 1]) || t[i - 1] == '.'))) continue;
    size_t p = i;
    bool ok = true;
    for (int part = 0; part < 4 && ok; ++part) {
      if (part > 0) {
        if (p >= t.size() || t[p] != '.') {
          ok = false;
          break;
        }
        ++p;
      }
      size_t s = p;
      int v = 0;
      while (p < t.size() && IsDigit(t[p]) && p - s < 4) v = v * 10 + (t[p++] - '0');
      if (p == s || p - s > 3 || v > 255) ok = false;
    }
    if (!ok) continue;
    if (p < t.size() && (IsAlnum(t[p]) || (t[p] == '.' && p + 1 < t.size() && IsDigit(t[p + 1])))) {
      continue;
    }
    out->push_back({i, p, 4, "ipv4", "IP"});
    i = p;
  }
}

void FindIpv6(std::string_view t, std::vector<Span>* out) {
  auto ch = [](char c) { return IsHex(c) || c == ':' || c == '.'; };
  for (size_t i = 0; i < t.size();) {
    if (!ch(t[i]) || (i > 0 && IsWord(t[i - 1]))) {
      ++i;
      continue;
    }
    size_t e = i;
    int colons = 0;
    while (e < t.size() && ch(t[e])) colons += t[e++] == ':';
    if (colons < 2) {  // ordinary words made of a-f letters end here, cheaply
      i = e;
      continue;
    }
    size_t end = e;
    while (end > i && t[end - 1] == '.') --end;
    std::string cand(t.substr(i, end - i));
    const bool bounded = e == t.size() || !IsWord(t[e]);
    const auto hex = std::count_if(cand.begin(), cand.end(), [](char c) { return IsHex(c); });
    in6_addr addr{};
    if (bounded && cand.size() <= 45 && (hex >= 3 || cand == "::1") &&
        inet_pton(AF_INET6, cand.c_str(), &addr) == 1) {
      out->push_back({i, end, 5, "ipv6", "IP"});
    }
    i = e;
  }
}

// Groups of digits separated by one separator character from `seps`.
struct DigitRun {
  std::vector<size_t> group_ends;  // end offset of each group
  std::vector<int> digits_upto;    // digits counted through each group
};

DigitRun ReadGroups(std::string_view t, size_t i, const char* seps) {
  DigitRun run;
  int digits = 0;
  size_t p = i;
  while (true) {
    size_t s = p;
    while (p < t.size() && IsDigit(t[p])) ++p;
    if (p == s) break;
    digits += static_cast<int>(p - s);
    run.group_ends.push_back(p);
    run.digits_upto.push_back(digits);
    if (p + 1 < t.size() && std::strchr(seps, t[p]) != nullptr && IsDigit(t[p + 1])) {
      ++p;
    } else {
      break;
    }
  }
  return run;
}

void FindCards(std::string_view t, std::vector<Span>* out) {
  for (size_t i = 0; i < t.size(); ++i) {
    if (!IsDigit(t[i]) || (i > 0 && (IsAlnum(t[i - 1]) || IsDigit(t[i - 1])))) continue;
    DigitRun run = ReadGroups(t, i, " -");
    if (run.group_ends.empty()) continue;
    const size_t last = run.group_ends.back();
    if (last < t.size() && IsAlnum(t[last])) {
      i = last;
      continue;
    }
    for (size_t g = run.group_ends.size(); g-- > 0;) {
      int n = run.digits_upto[g];
      if (n < 13 || n > 19) continue;
      std::string_view cand = t.substr(i, run.group_ends[g] - i);
      if (LuhnValid(cand)) {
        out->push_back({i, run.group_ends[g], 3, "card", "CARD"});
        break;
      }
    }
    i = last;
  }
}

void FindPhones(std::string_view t, std::vector<Span>* out) {
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (!(IsDigit(c) || c == '+' || c == '(')) continue;
    if (i > 0 && (IsAlnum(t[i - 1]) || t[i - 1] == '+' || t[i - 1] == '.' || t[i - 1] == '-')) {
      continue;
    }
    size_t p = i;
    const bool plus = c == '+';
    if (plus) ++p;
    int digits = 0, seps_between = 0, run_sep = 0, last_group = 0, max_group = 0, open = 0;
    size_t end = p;
    while (p < t.size()) {
      char d = t[p];
      if (IsDigit(d)) {
        if (run_sep > 0) {
          ++seps_between;
          last_group = 0;
        }
        run_sep = 0;
        ++digits;
        max_group = std::max(max_group, ++last_group);
        end = p + 1;
      } else if (d == '(' && open == 0) {
        open = 1;
        ++run_sep;
      } else if (d == ')' && open == 1) {
        open = 2;
        ++run_sep;
      } else if (d == ' ' || d == '-' || d == '.') {
        ++run_sep;
      } else {
        break;
      }
      if (run_sep > 2) break;
      ++p;
    }
    if (digits < 10 || digits > 15) continue;
    if (end < t.size() && IsAlnum(t[end])) continue;
    // Without '+', only grouped national formats (555-123-4567, (555) 123 4567):
    // groups of at most 4 digits ending in one of 4, so dates, decimals and
    // bare ids are left alone.
    if (!plus && (seps_between == 0 || last_group != 4 || max_group > 4)) continue;
    out->push_back({i, end, 6, "phone", "PHONE"});
    i = end;
  }
}

// Necessary conditions of the scanners above, found cheaply: most text has
// no PII, and each scanner is a full byte-by-byte pass of its own.
struct TextShape {
  bool at = false;               // has '@' (emails)
  bool long_token = false;       // has a run of >= kMinSecretRun [A-Za-z0-9_+/=.~-]
  bool ipv6_run = false;         // has a run of [0-9A-Fa-f:.] with >= 2 colons
  int64_t dots = 0;               // exact below 255 (may saturate above)
  int64_t longest_number = 0;    // most digits in one run of digits joined by gaps
                                 // of at most 2 characters from " -.()+"
};

// Every secret is a run of at least 16 such characters: the shortest is the
// token after "Bearer " (16); prefixed keys need 20 after the prefix, AKIA
// ids 20, hex/base64 runs 32. Card numbers (13+ digits), phone numbers (10+)
// and IPv4 addresses (4+ digits, 3 dots) are such digit runs.
constexpr size_t kMinSecretRun = 16;

bool IsTokenChar(char c) { return IsAlnum(c) || (c != 0 && std::strchr("_+/=.~-", c) != nullptr); }

#ifdef RLAIF_REDACTOR_SSE2
// Bit i set iff p[i] is a token character (IsTokenChar), for 16 bytes:
// [-./0-9] is one range, letters are [a-z] after setting bit 0x20, and bytes
// >= 0x80 are negative in the signed compares, so never token characters.
inline uint32_t TokenMask16(const char* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
  const __m128i punct_digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(0x2C)),
                                            _mm_cmplt_epi8(v, _mm_set1_epi8(0x3A)));
  const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(lower, _mm_set1_epi8(0x60)),
                                       _mm_cmplt_epi8(lower, _mm_set1_epi8(0x7B)));
  const __m128i other = _mm_or_si128(
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('+')), _mm_cmpeq_epi8(v, _mm_set1_epi8('='))),
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('_')), _mm_cmpeq_epi8(v, _mm_set1_epi8('~'))));
  return static_cast<uint32_t>(
      _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(punct_digit, letter), other)));
}

inline __m128i DigitVec16(__m128i v) {
  return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                       _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
}
inline uint32_t DigitMask16(__m128i v) {
  return static_cast<uint32_t>(_mm_movemask_epi8(DigitVec16(v)));
}
// The sum of the 16 bytes of `v`.
inline int64_t SumBytes16(__m128i v) {
  const __m128i s = _mm_sad_epu8(v, _mm_setzero_si128());
  return _mm_cvtsi128_si64(s) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
}

// Whether `t` has a run of at least kMinSecretRun token characters: token
// bitmasks of 64 bytes at a time, runs found by shifting and and-ing (a set
// bit i of x & x>>1 & ... & x>>15 starts a run of 16), `run` carrying the
// length of the run that reaches the end of the previous 64 bytes.
bool HasLongTokenRun(std::string_view t) {
  static_assert(kMinSecretRun == 16);
  const char* p = t.data();
  const size_t n = t.size();
  uint64_t run = 0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const uint64_t m = uint64_t{TokenMask16(p + i)} | (uint64_t{TokenMask16(p + i + 16)} << 16) |
                       (uint64_t{TokenMask16(p + i + 32)} << 32) |
                       (uint64_t{TokenMask16(p + i + 48)} << 48);
    if (run + static_cast<uint64_t>(std::countr_one(m)) >= kMinSecretRun) return true;
    uint64_t x = m & (m >> 1);
    x &= x >> 2;
    x &= x >> 4;
    x &= x >> 8;
    if (x != 0) return true;
    run = static_cast<uint64_t>(std::countl_one(m));  // m != ~0 here
  }
  for (; i < n; ++i) {
    run = IsTokenChar(p[i]) ? run + 1 : 0;
    if (run >= kMinSecretRun) return true;
  }
  return false;
}
#endif

TextShape Shape(std::string_view t) {
  static const auto kToken = [] {
    std::array<bool, 256> table{};
    for (int c = 0; c < 256; ++c) table[c] = IsTokenChar(static_cast<char>(c));
    return table;
  }();
  [[maybe_unused]] auto token = [&](size_t i) { return kToken[static_cast<unsigned char>(t[i])]; };
  TextShape s;
  // Counts first: a loop the compiler vectorizes.
  int64_t digits = 0, dots = 0, ats = 0;
  size_t counted = 0;
#ifdef RLAIF_REDACTOR_SSE2
  // Per-byte-lane counters that saturate at 255: the sums are exact below
  // 255, which is all the callers compare against (digits >= 4, dots >= 3, @ > 0).
  {
    const __m128i one = _mm_set1_epi8(1);
    __m128i dg = _mm_setzero_si128(), dt = dg, at = dg;
    for (; counted + 16 <= t.size(); counted += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + counted));
      dg = _mm_adds_epu8(dg, _mm_and_si128(DigitVec16(v), one));
      dt = _mm_adds_epu8(dt, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')), one));
      at = _mm_adds_epu8(at, _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('@')), one));
    }
    digits = SumBytes16(dg);
    dots = SumBytes16(dt);
    ats = SumBytes16(at);
  }
#endif
  for (char c : t.substr(counted)) {
    digits += static_cast<unsigned char>(c - '0') < 10;
    dots += c == '.';
    ats += c == '@';
  }
  s.at = ats > 0;
  s.dots = dots;
#ifdef RLAIF_REDACTOR_SSE2
  s.long_token = HasLongTokenRun(t);
#else
  // A run of kMinSecretRun covers exactly one position p with p % kMinSecretRun
  // == kMinSecretRun - 1: only those are probed, and runs measured around hits.
  for (size_t p = kMinSecretRun - 1; p < t.size() && !s.long_token; p += kMinSecretRun) {
    if (!token(p)) continue;
    size_t b = p, e = p + 1;
    while (b > 0 && token(b - 1)) --b;
    while (e < t.size() && token(e)) ++e;
    s.long_token = e - b >= kMinSecretRun;  // else the run ends before the next probe
  }
#endif
  auto ipv6_char = [&](size_t i) { return IsHex(t[i]) || t[i] == ':' || t[i] == '.'; };
  for (size_t c = t.find(':'); c != std::string_view::npos && !s.ipv6_run; c = t.find(':', c + 1)) {
    size_t e = c + 1;
    int colons = 1;
    while (e < t.size() && ipv6_char(e)) colons += t[e++] == ':';
    s.ipv6_run = colons >= 2;
    c = e - 1;
  }
  if (digits >= 4) {
    // Blocks of 32 bytes without a digit end every number (a gap is at most
    // 2 bytes) and are skipped with a vectorizable test; digits are sparse.
    constexpr size_t kBlock = 32;
    int64_t number = 0, gap = 0;
    for (size_t b = 0; b < t.size(); b += kBlock) {
      const size_t e = std::min(t.size(), b + kBlock);
      bool any = false;
#ifdef RLAIF_REDACTOR_SSE2
      if (e - b == kBlock) {
        any = (DigitMask16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + b))) |
               DigitMask16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.data() + b + 16)))) !=
              0;
      } else
#endif
      {
        for (size_t i = b; i < e; ++i) any |= static_cast<unsigned char>(t[i] - '0') < 10;
      }
      if (!any) {
        number = 0;
        gap = 3;
        continue;
      }
      for (size_t i = b; i < e; ++i) {
        const char ch = t[i];
        const bool digit = IsDigit(ch);
        const bool joins =
            ch == ' ' || ch == '-' || ch == '.' || ch == '(' || ch == ')' || ch == '+';
        gap = digit ? 0 : (joins ? gap + 1 : 3);
        number = digit ? number + 1 : (gap > 2 ? 0 : number);
        s.longest_number = std::max(s.longest_number, number);
      }
    }
  }
  return s;
}

std::string Upper(const std::string& s) {
  std::string u = s;
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

}  // namespace

bool LuhnValid(std::string_view digits) {
  int sum = 0, n = 0;
  for (size_t i = digits.size(); i-- > 0;) {
    if (!IsDigit(digits[i])) continue;
    int d = digits[i] - '0';
    if (n % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    ++n;
  }
  return n > 0 && sum % 10 == 0;
}

Result<Redactor> Redactor::Create(const std::vector<RedactPattern>& user_patterns) {
  Redactor r;
  for (const auto& p : user_patterns) {
    if (p.name.empty()) return Status::InvalidArgument("redact pattern without a name");
    try {
      auto re = std::make_shared<const std::regex>(p.regex, std::regex::ECMAScript);
      r.user_.push_back({p.name, Upper(p.name), std::move(re)});
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument("redact pattern \"" + p.name +
                                     "\" does not compile: " + e.what());
    }
  }
  return r;
}

std::string Redactor::Redact(std::string_view text, RedactionScope* scope) const {
  std::string out(text);
  RedactInPlace(&out, scope);
  return out;
}

bool Redactor::RedactInPlace(std::string* in, RedactionScope* scope) const {
  const std::string_view text = *in;
  std::vector<Span> spans;
  if (!user_.empty()) {
    const std::string s(text);
    for (const auto& u : user_) {
      for (auto it = std::sregex_iterator(s.begin(), s.end(), *u.re); it != std::sregex_iterator();
           ++it) {
        if (it->length(0) == 0) continue;
        const size_t b = static_cast<size_t>(it->position(0));
        spans.push_back({b, b + static_cast<size_t>(it->length(0)), 0, u.kind, u.placeholder});
      }
    }
  }
  // One cheap pass decides which scanners can match at all; most text has no
  // PII, and each scanner is a full pass of its own.
  const TextShape shape = Shape(text);
  if (shape.at) FindEmails(text, &spans);
  if (shape.long_token) FindSecrets(text, &spans);
  if (shape.longest_number >= 13) FindCards(text, &spans);
  if (shape.longest_number >= 4 && shape.dots >= 3) FindIpv4(text, &spans);
  if (shape.longest_number >= 10) FindPhones(text, &spans);
  if (shape.ipv6_run) FindIpv6(text, &spans);
  if (spans.empty()) return false;

  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.e - a.b != b.e - b.b) return a.e - a.b > b.e - b.b;
    return a.b < b.b;
  });
  std::vector<const Span*> kept;
  for (const Span& s : spans) {
    bool overlaps = std::any_of(kept.begin(), kept.end(),
                                [&](const Span* k) { return s.b < k->e && k->b < s.e; });
    if (!overlaps) kept.push_back(&s);
  }
  std::sort(kept.begin(), kept.end(), [](const Span* a, const Span* b) { return a->b < b->b; });
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (const Span* s : kept) {
    out.append(text.substr(pos, s->b - pos));
    auto key = std::make_pair(s->prefix, std::string(text.substr(s->b, s->e - s->b)));
    auto it = scope->placeholders.find(key);
    if (it == scope->placeholders.end()) {
      int n = ++scope->next_index[s->prefix];
      it = scope->placeholders.emplace(key, "<" + s->prefix + "_" + std::to_string(n) + ">").first;
    }
    out += it->second;
    ++scope->counts[s->kind];
    pos = s->e;
  }
  out.append(text.substr(pos));
  *in = std::move(out);
  return true;
}

}  // namespace rlaif::daemon
