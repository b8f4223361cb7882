#include "rlaif/daemon/line_parser.h"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define RLAIF_X86_SIMD 1
#endif

namespace rlaif::daemon {

namespace {

// simdjson's DOM parser validates the whole line (UTF-8, structure, nesting)
// at several hundred MB/s to GB/s; nlohmann only checks JSON pointer syntax
// in Create. Elements are views into the parser's buffers, valid until the
// next parse on the same parser.
using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

// One parser per thread: its buffers grow to the longest line parsed and are
// reused, so parsing allocates nothing in the steady state while Parse stays
// const and thread-safe. Nesting beyond kMaxJsonDepth fails with DEPTH_ERROR
// (the outermost object is level 1).
simdjson::dom::parser& ThreadParser() {
  thread_local simdjson::dom::parser parser = [] {
    simdjson::dom::parser p;
    // Longer lines grow the buffers later; the depth limit stays.
    if (p.allocate(1 << 16, kMaxJsonDepth) != simdjson::SUCCESS) {
      // Out of memory now: Parse retries the allocation (and reports bad_json if it fails).
    }
    return p;
  }();
  return parser;
}

Status Reject(const char* reason, const std::string& detail) {
  return Status::InvalidArgument(std::string(reason) + ": " + detail);
}

// Nothing but whitespace: ASCII, and the Unicode spaces a chat UI sends
// (no-break, en/em/thin, zero-width, line/paragraph separators, ideographic,
// the byte-order mark). Valid UTF-8 is checked before this is asked.
bool IsBlank(std::string_view s) {
  static constexpr std::string_view kSpaces[] = {
      "\xc2\xa0",     "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83",
      "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88",
      "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\x8b", "\xe2\x80\xa8", "\xe2\x80\xa9",
      "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80", "\xef\xbb\xbf"};
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f') {
      ++i;
      continue;
    }
    bool space = false;
    for (std::string_view sp : kSpaces) {
      if (s.substr(i, sp.size()) == sp) {
        i += sp.size();
        space = true;
        break;
      }
    }
    if (!space) return false;
  }
  return true;
}

bool IsString(const element& e) { return e.type() == element_type::STRING; }
bool IsObject(const element& e) { return e.type() == element_type::OBJECT; }
bool IsArray(const element& e) { return e.type() == element_type::ARRAY; }
std::string_view Str(const element& e) { return std::string_view(e.get_string().value_unsafe()); }

// The member `key` of `obj` if `obj` is an object that has it.
std::optional<element> Child(const element& obj, std::string_view key) {
  if (!IsObject(obj)) return std::nullopt;
  element out;
  if (obj.get_object().value_unsafe().at_key(key).get(out) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  return out;
}

// Appends the text of a chat message's content: a string, null (""), or an
// array of parts whose "text" parts are kept, joined by "\n".
bool AppendContentText(const element& content, std::string* out) {
  if (content.is_null()) return true;
  if (IsString(content)) {
    out->append(Str(content));
    return true;
  }
  if (!IsArray(content)) return false;
  bool first = true;
  const array parts = content.get_array().value_unsafe();  // a copy: a view of the tape
  for (element part : parts) {
    if (!IsObject(part)) return false;
    auto t = Child(part, "text");
    if (!t) continue;  // image/audio parts carry no text
    if (!IsString(*t)) return false;
    if (!first) out->push_back('\n');
    out->append(Str(*t));
    first = false;
  }
  return true;
}

// Renders the conversation up to the last user turn (see line_parser.h).
Status RenderChatPrompt(const element& messages, std::string* prompt) {
  if (!IsArray(messages)) return Reject("bad_messages", "messages is not an array");
  const array msgs = messages.get_array().value_unsafe();
  int last_user = -1;
  int i = 0;
  for (element m : msgs) {
    if (!IsObject(m)) {
      return Reject("bad_messages", "message " + std::to_string(i) + " is not an object");
    }
    auto role = Child(m, "role");
    if (!role || !IsString(*role)) {
      return Reject("bad_messages", "message " + std::to_string(i) + " has no string \"role\"");
    }
    if (Str(*role) == "user") last_user = i;
    ++i;
  }
  if (last_user < 0) return Reject("no_user_turn", "the conversation has no user turn");
  prompt->clear();
  if (last_user == 0) {
    auto c = Child(*msgs.begin(), "content");
    if (!c || !AppendContentText(*c, prompt)) {
      return Reject("bad_messages", "message 0 has no text content");
    }
    return Status::Ok();
  }
  i = 0;
  size_t last_turn_text = 0;  // where the last user turn's text starts
  for (element m : msgs) {
    if (i > last_user) break;
    if (i > 0) prompt->append("\n\n");
    prompt->append(Str(*Child(m, "role")));
    prompt->append(": ");
    last_turn_text = prompt->size();
    if (auto c = Child(m, "content"); c && !AppendContentText(*c, prompt)) {
      return Reject("bad_messages", "message " + std::to_string(i) + " has bad content");
    }
    ++i;
  }
  // The earlier turns are context; the prompt is what the user asked last.
  if (IsBlank(std::string_view(*prompt).substr(last_turn_text))) {
    return Reject("empty_prompt", "the last user turn is empty");
  }
  return Status::Ok();
}

Status OptionalString(const std::optional<element>& v, const char* reason, const std::string& what,
                      std::string* out) {
  out->clear();
  if (!v || v->is_null()) return Status::Ok();
  if (!IsString(*v)) return Reject(reason, what + " is not a string");
  out->assign(Str(*v));
  return Status::Ok();
}

// A scalar as JSON text: integers in decimal, other numbers and booleans as
// simdjson writes them.
std::string ScalarText(const element& v) {
  switch (v.type()) {
    case element_type::INT64:
      return std::to_string(v.get_int64().value_unsafe());
    case element_type::UINT64:
      return std::to_string(v.get_uint64().value_unsafe());
    case element_type::BOOL:
      return v.get_bool().value_unsafe() ? "true" : "false";
    default:
      return simdjson::to_string(v);
  }
}

void ReadMetadata(const std::optional<element>& v, ParsedLine* out) {
  out->metadata.clear();
  if (!v || !IsObject(*v)) return;
  const object obj = v->get_object().value_unsafe();  // a copy: a view of the tape
  for (auto [key, value] : obj) {
    const element_type t = value.type();
    if (t == element_type::STRING) {
      out->metadata.emplace_back(std::string(key), std::string(Str(value)));
    } else if (t != element_type::OBJECT && t != element_type::ARRAY &&
               t != element_type::NULL_VALUE) {
      out->metadata.emplace_back(std::string(key), ScalarText(value));
    }
  }
  // Sorted by key; of repeated keys the last one wins (as JSON readers do).
  std::stable_sort(out->metadata.begin(), out->metadata.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  auto last = std::unique(out->metadata.rbegin(), out->metadata.rend(),
                          [](const auto& a, const auto& b) { return a.first == b.first; });
  out->metadata.erase(out->metadata.begin(), last.base());
}

void ReadTimestamp(const std::optional<element>& v, ParsedLine* out) {
  if (!v) return;
  if (IsString(*v)) {
    out->timestamp.assign(Str(*v));
  } else if (v->is_number()) {
    out->timestamp = ScalarText(*v);
  }
}

std::optional<element> AtPointer(const element& root, const std::string& ptr) {
  if (ptr.empty()) return std::nullopt;
  element out;
  if (root.at_pointer(ptr).get(out) != simdjson::SUCCESS) return std::nullopt;
  return out;
}

Status ParseSimple(const element& j, ParsedLine* out) {
  auto p = Child(j, "prompt");
  if (!p) return Reject("missing_prompt", "no \"prompt\" field");
  if (!IsString(*p)) return Reject("bad_prompt_type", "\"prompt\" is not a string");
  out->prompt.assign(Str(*p));
  RLAIF_RETURN_IF_ERROR(
      OptionalString(Child(j, "response"), "bad_response_type", "\"response\"", &out->response));
  RLAIF_RETURN_IF_ERROR(
      OptionalString(Child(j, "model"), "bad_model_type", "\"model\"", &out->model));
  ReadTimestamp(Child(j, "timestamp"), out);
  ReadMetadata(Child(j, "metadata"), out);
  return Status::Ok();
}

Status ParseOpenAiChat(const element& j, ParsedLine* out) {
  auto req = Child(j, "request");
  if (!req) return Reject("missing_prompt", "no \"request\" object");
  if (!IsObject(*req)) return Reject("bad_prompt_type", "\"request\" is not an object");
  auto messages = Child(*req, "messages");
  if (!messages) return Reject("missing_prompt", "no \"request.messages\"");
  RLAIF_RETURN_IF_ERROR(RenderChatPrompt(*messages, &out->prompt));
  RLAIF_RETURN_IF_ERROR(
      OptionalString(Child(*req, "model"), "bad_model_type", "\"request.model\"", &out->model));
  out->response.clear();
  if (auto resp = Child(j, "response"); resp && !resp->is_null()) {
    if (!IsObject(*resp)) return Reject("bad_response_type", "\"response\" is not an object");
    if (out->model.empty()) {
      RLAIF_RETURN_IF_ERROR(OptionalString(Child(*resp, "model"), "bad_model_type",
                                           "\"response.model\"", &out->model));
    }
    ReadTimestamp(Child(*resp, "created"), out);
    if (auto choices = Child(*resp, "choices")) {
      if (!IsArray(*choices)) return Reject("bad_response_type", "\"choices\" is not an array");
      const array arr = choices->get_array().value_unsafe();
      if (arr.size() > 0) {
        auto msg = Child(*arr.begin(), "message");
        auto content = msg ? Child(*msg, "content") : std::nullopt;
        if (content && !AppendContentText(*content, &out->response)) {
          return Reject("bad_response_type", "choices[0].message.content is not text");
        }
      }
    }
  }
  ReadTimestamp(Child(j, "timestamp"), out);
  ReadMetadata(Child(j, "metadata"), out);
  return Status::Ok();
}

Status ParseCustom(const element& j, const FieldPointers& f, ParsedLine* out) {
  auto p = AtPointer(j, f.prompt);
  if (!p) return Reject("missing_prompt", "nothing at " + f.prompt);
  if (IsArray(*p)) {
    RLAIF_RETURN_IF_ERROR(RenderChatPrompt(*p, &out->prompt));
  } else if (IsString(*p)) {
    out->prompt.assign(Str(*p));
  } else {
    return Reject("bad_prompt_type", f.prompt + " is neither a string nor a message array");
  }
  RLAIF_RETURN_IF_ERROR(
      OptionalString(AtPointer(j, f.response), "bad_response_type", f.response, &out->response));
  RLAIF_RETURN_IF_ERROR(
      OptionalString(AtPointer(j, f.model), "bad_model_type", f.model, &out->model));
  ReadTimestamp(AtPointer(j, f.timestamp), out);
  ReadMetadata(AtPointer(j, f.metadata), out);
  return Status::Ok();
}

// The optional `rewrite` / `ab` fields (see line_parser.h, "Logged pairs").
Status ParseLoggedPair(const element& j, ParsedLine* out) {
  out->pair = LoggedPair{};
  auto rw = Child(j, "rewrite");
  auto ab = Child(j, "ab");
  if (rw && rw->is_null()) rw.reset();
  if (ab && ab->is_null()) ab.reset();
  if (!rw && !ab) return Status::Ok();
  if (rw && ab) return Reject("bad_pair", "a line carries either \"rewrite\" or \"ab\", not both");
  auto dimension = [&](const element& obj) -> Status {
    auto d = Child(obj, "dimension");
    if (!d || d->is_null()) return Status::Ok();
    if (!IsString(*d) || IsBlank(Str(*d))) {
      return Reject("bad_pair", "\"dimension\" is not a non-empty string");
    }
    out->pair.dimension.assign(Str(*d));
    return Status::Ok();
  };
  if (rw) {
    std::optional<element> text = rw;
    if (IsObject(*rw)) {
      text = Child(*rw, "response");
      RLAIF_RETURN_IF_ERROR(dimension(*rw));
    }
    if (!text || !IsString(*text) || IsBlank(Str(*text))) {
      return Reject("bad_pair",
                    "\"rewrite\" is neither a non-empty string nor {\"response\": string}");
    }
    if (IsBlank(out->response)) {
      return Reject("bad_pair", "\"rewrite\" needs the logged response it rewrites");
    }
    out->pair.kind = LoggedPair::Kind::kRewrite;
    out->pair.a = out->response;
    out->pair.b.assign(Str(*text));
    out->pair.preferred = "b";  // a human rewrite is the better response by construction
    return Status::Ok();
  }
  if (!IsObject(*ab)) return Reject("bad_pair", "\"ab\" is not an object");
  auto a = Child(*ab, "a");
  auto b = Child(*ab, "b");
  if (!a || !b || !IsString(*a) || !IsString(*b) || IsBlank(Str(*a)) || IsBlank(Str(*b))) {
    return Reject("bad_pair", "\"ab\" needs non-empty string responses \"a\" and \"b\"");
  }
  out->pair.kind = LoggedPair::Kind::kAb;
  out->pair.a.assign(Str(*a));
  out->pair.b.assign(Str(*b));
  if (auto pref = Child(*ab, "preferred"); pref && !pref->is_null()) {
    std::string_view v = IsString(*pref) ? Str(*pref) : std::string_view();
    if (v != "a" && v != "b" && v != "tie") {
      return Reject("bad_pair", "\"ab.preferred\" must be \"a\", \"b\" or \"tie\"");
    }
    out->pair.preferred.assign(v);
  }
  return dimension(*ab);
}

}  // namespace

std::string PrecheckLine(std::string_view line) {
  const auto* s = reinterpret_cast<const unsigned char*>(line.data());
  const size_t n = line.size();
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c == 0) return "nul_byte";
      if (in_string) {
        if (c == '\\') {
          i += 2;  // skip the escaped character (an escape is ASCII when valid)
          continue;
        }
        if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        if (++depth > kMaxJsonDepth) return "too_deep";
      } else if (c == '}' || c == ']') {
        --depth;
      }
      ++i;
      continue;
    }
    // Multi-byte UTF-8: reject overlongs, surrogates and code points > U+10FFFF.
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return "invalid_utf8";
    }
    if (i + len > n) return "invalid_utf8";
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return "invalid_utf8";
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return "invalid_utf8";
    }
    i += len;
  }
  return "";
}

namespace {

uint64_t LoadLe64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = __builtin_bswap64(w);
#endif
  return w;
}

uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Whether one of MayCarryLoggedPair's patterns starts at t[0].
bool PairPatternAt(std::string_view t) {
  if (t.starts_with("\"ab\"") || t.starts_with("\"rewrite\"")) return true;
  return t.size() >= 5 && t.starts_with("\\u00") && (t[4] == '6' || t[4] == '7');
}

bool PairScanScalar(std::string_view t, size_t from) {
  for (size_t i = from; i < t.size(); ++i) {
    if ((t[i] == '"' || t[i] == '\\') && PairPatternAt(t.substr(i))) return true;
  }
  return false;
}

#ifdef RLAIF_X86_SIMD
// Candidates: `"ab"`, `"rew`, `\u00` at each of 16 (SSE2) or 32 (AVX2)
// positions per step, from four overlapping loads; the rare hits are checked
// in full by PairPatternAt.
bool PairScanSse2(std::string_view t) {
  const char* s = t.data();
  const size_t n = t.size();
  const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), a = _mm_set1_epi8('a'),
                b = _mm_set1_epi8('b'), r = _mm_set1_epi8('r'), e = _mm_set1_epi8('e'),
                w = _mm_set1_epi8('w'), u = _mm_set1_epi8('u'), z = _mm_set1_epi8('0');
  size_t i = 0;
  for (; i + 19 <= n; i += 16) {
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 1));
    const __m128i v2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 2));
    const __m128i v3 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 3));
    const __m128i quote = _mm_cmpeq_epi8(v0, q);
    const __m128i ab = _mm_and_si128(_mm_and_si128(_mm_cmpeq_epi8(v1, a), _mm_cmpeq_epi8(v2, b)),
                                     _mm_cmpeq_epi8(v3, q));
    const __m128i rw = _mm_and_si128(_mm_and_si128(_mm_cmpeq_epi8(v1, r), _mm_cmpeq_epi8(v2, e)),
                                     _mm_cmpeq_epi8(v3, w));
    const __m128i es = _mm_and_si128(
        _mm_and_si128(_mm_cmpeq_epi8(v0, bs), _mm_cmpeq_epi8(v1, u)),
        _mm_and_si128(_mm_cmpeq_epi8(v2, z), _mm_cmpeq_epi8(v3, z)));
    unsigned m = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_and_si128(quote, _mm_or_si128(ab, rw)), es)));
    for (; m != 0; m &= m - 1) {
      if (PairPatternAt(t.substr(i + static_cast<size_t>(__builtin_ctz(m))))) return true;
    }
  }
  return PairScanScalar(t, i);
}

__attribute__((target("avx2"))) bool PairScanAvx2(std::string_view t) {
  const char* s = t.data();
  const size_t n = t.size();
  const __m256i q = _mm256_set1_epi8('"'), bs = _mm256_set1_epi8('\\'), a = _mm256_set1_epi8('a'),
                b = _mm256_set1_epi8('b'), r = _mm256_set1_epi8('r'), e = _mm256_set1_epi8('e'),
                w = _mm256_set1_epi8('w'), u = _mm256_set1_epi8('u'), z = _mm256_set1_epi8('0');
  size_t i = 0;
  for (; i + 35 <= n; i += 32) {
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 1));
    const __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 2));
    const __m256i v3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 3));
    const __m256i quote = _mm256_cmpeq_epi8(v0, q);
    const __m256i ab = _mm256_and_si256(
        _mm256_and_si256(_mm256_cmpeq_epi8(v1, a), _mm256_cmpeq_epi8(v2, b)),
        _mm256_cmpeq_epi8(v3, q));
    const __m256i rw = _mm256_and_si256(
        _mm256_and_si256(_mm256_cmpeq_epi8(v1, r), _mm256_cmpeq_epi8(v2, e)),
        _mm256_cmpeq_epi8(v3, w));
    const __m256i es = _mm256_and_si256(
        _mm256_and_si256(_mm256_cmpeq_epi8(v0, bs), _mm256_cmpeq_epi8(v1, u)),
        _mm256_and_si256(_mm256_cmpeq_epi8(v2, z), _mm256_cmpeq_epi8(v3, z)));
    unsigned m = static_cast<unsigned>(_mm256_movemask_epi8(
        _mm256_or_si256(_mm256_and_si256(quote, _mm256_or_si256(ab, rw)), es)));
    for (; m != 0; m &= m - 1) {
      if (PairPatternAt(t.substr(i + static_cast<size_t>(__builtin_ctz(m))))) return true;
    }
  }
  return PairScanScalar(t, i);
}
#endif

}  // namespace

uint64_t LineSampleHash(std::string_view line) {
  constexpr uint64_t kMul = 0x9e3779b97f4a7c15ULL, kMul2 = 0xbf58476d1ce4e5b9ULL;
  const auto* p = reinterpret_cast<const unsigned char*>(line.data());
  size_t n = line.size();
  // Four lanes, one multiply per 8 bytes each: independent dependency chains.
  uint64_t h0 = 0x243f6a8885a308d3ULL ^ n, h1 = 0x13198a2e03707344ULL, h2 = 0xa4093822299f31d0ULL,
           h3 = 0x082efa98ec4e6c89ULL;
  auto step = [](uint64_t h, uint64_t w) { return Rotl(h ^ w, 29) * kMul; };
  for (; n >= 32; p += 32, n -= 32) {
    h0 = step(h0, LoadLe64(p));
    h1 = step(h1, LoadLe64(p + 8));
    h2 = step(h2, LoadLe64(p + 16));
    h3 = step(h3, LoadLe64(p + 24));
  }
  for (; n >= 8; p += 8, n -= 8) h0 = step(h0, LoadLe64(p));
  if (n > 0) {
    uint64_t w = 0;
    for (size_t i = 0; i < n; ++i) w |= static_cast<uint64_t>(p[i]) << (8 * i);
    h1 = step(h1, w ^ (uint64_t{n} << 56));
  }
  uint64_t h = h0;
  h = Rotl(h ^ (h1 * kMul2), 31) * kMul;
  h = Rotl(h ^ (h2 * kMul2), 31) * kMul;
  h = Rotl(h ^ (h3 * kMul2), 31) * kMul;
  // splitmix64's finalizer.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

bool MayCarryLoggedPair(std::string_view line) {
#ifdef RLAIF_X86_SIMD
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? PairScanAvx2(line) : PairScanSse2(line);
#else
  return PairScanScalar(line, 0);
#endif
}

std::string RejectReason(const Status& status) {
  const std::string& m = status.message();
  return m.substr(0, m.find(':'));
}

const std::vector<std::string>& ParseRejectReasons() {
  static const std::vector<std::string> kReasons = {
      "nul_byte",       "invalid_utf8",    "too_deep",     "bad_json",          "not_object",
      "missing_prompt", "bad_prompt_type", "empty_prompt", "bad_response_type", "bad_model_type",
      "bad_messages",   "no_user_turn",    "bad_pair"};
  return kReasons;
}

Result<LineParser> LineParser::Create(const SourceConfig& source) {
  if (source.format != "simple" && source.format != "openai-chat" && source.format != "custom") {
    return Status::InvalidArgument("unknown log format \"" + source.format + "\"");
  }
  if (source.format == "custom") {
    if (source.fields.prompt.empty()) {
      return Status::InvalidArgument("format custom needs fields.prompt");
    }
    for (const std::string* p :
         {&source.fields.prompt, &source.fields.response, &source.fields.model,
          &source.fields.timestamp, &source.fields.metadata}) {
      if (p->empty()) continue;
      try {
        nlohmann::json::json_pointer jp(*p);
      } catch (const nlohmann::json::exception& e) {
        return Status::InvalidArgument("bad JSON pointer \"" + *p + "\": " + e.what());
      }
    }
  }
  LineParser parser;
  parser.format_ = source.format;
  parser.fields_ = source.fields;
  return parser;
}

// simdjson refuses integers beyond 64 bits (NUMBER_ERROR) although they are
// valid JSON; JSON parsers commonly read them as doubles. Returns `line` with
// ".0" appended to every integer literal (outside strings) too long for 64
// bits, so that it parses as a double, as nlohmann::json would read it.
std::string WidenBigIntegers(std::string_view line) {
  std::string out;
  out.reserve(line.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < line.size()) {
        out.push_back(line[i + 1]);
        i += 2;
        continue;
      }
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out.push_back(c);
      ++i;
      continue;
    }
    if ((c >= '0' && c <= '9') || c == '-') {
      size_t j = i + (c == '-' ? 1 : 0);
      const size_t digits_at = j;
      while (j < line.size() && line[j] >= '0' && line[j] <= '9') ++j;
      out.append(line.substr(i, j - i));
      const bool integral = j >= line.size() || (line[j] != '.' && line[j] != 'e' && line[j] != 'E');
      if (integral && j - digits_at > 18) out.append(".0");
      i = j;
      continue;
    }
    out.push_back(c);
    ++i;
  }
  return out;
}

static_assert(kLineParsePadding >= simdjson::SIMDJSON_PADDING);

Status LineParser::Parse(std::string_view line, ParsedLine* out, size_t readable_after) const {
  // NUL bytes are never valid JSON text; naming them is worth one memchr.
  if (line.find('\0') != std::string_view::npos) {
    return Reject("nul_byte", "the line contains a NUL byte");
  }
  element root;
  const bool in_place = readable_after >= kLineParsePadding;
  auto err = ThreadParser().parse(line.data(), line.size(), !in_place).get(root);
  std::string widened;  // keeps the re-parsed text alive while `root` is used
  if (err == simdjson::NUMBER_ERROR) {  // also what 3.0 reports for integers beyond 64 bits
    widened = WidenBigIntegers(line);
    err = ThreadParser().parse(widened.data(), widened.size()).get(root);
  }
  if (err) {
    // Rare: classify with the byte-level checks so the reason is specific.
    std::string pre = PrecheckLine(line);
    if (err == simdjson::DEPTH_ERROR || pre == "too_deep") {
      return Reject("too_deep", "JSON nesting deeper than " + std::to_string(kMaxJsonDepth));
    }
    if (err == simdjson::UTF8_ERROR || !pre.empty()) {
      return Reject("invalid_utf8", "the line is not valid UTF-8 text");
    }
    return Reject("bad_json", simdjson::error_message(err));
  }
  if (!IsObject(root)) return Reject("not_object", "line is not a JSON object");
  out->timestamp.clear();
  Status st;
  if (format_ == "openai-chat") {
    st = ParseOpenAiChat(root, out);
  } else if (format_ == "custom") {
    st = ParseCustom(root, fields_, out);
  } else {
    st = ParseSimple(root, out);
  }
  if (!st.ok()) return st;
  if (IsBlank(out->prompt)) return Reject("empty_prompt", "the prompt is empty");
  if (out->prompt.find('\0') != std::string::npos ||
      out->response.find('\0') != std::string::npos) {
    return Reject("nul_byte", "the prompt or response contains U+0000");
  }
  RLAIF_RETURN_IF_ERROR(ParseLoggedPair(root, out));
  if (out->pair.a.find('\0') != std::string::npos ||
      out->pair.b.find('\0') != std::string::npos) {
    return Reject("nul_byte", "a logged pair response contains U+0000");
  }
  return Status::Ok();
}

}  // namespace rlaif::daemon
