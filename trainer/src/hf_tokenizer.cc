#include "hf_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <unordered_map>
#include <unordered_set>

namespace rlaif::trainer::hf {

namespace {

using nlohmann::json;

struct CodePointRange {
  char32_t lo, hi;
};
#include "unicode_classes.inc"

template <size_t N>
bool InRanges(const CodePointRange (&ranges)[N], char32_t cp) {
  const auto* it = std::upper_bound(std::begin(ranges), std::end(ranges), cp,
                                    [](char32_t c, const CodePointRange& r) { return c < r.lo; });
  return it != std::begin(ranges) && cp <= (it - 1)->hi;
}

bool IsWhiteSpace(char32_t cp) {
  return (cp >= 0x9 && cp <= 0xd) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
         cp == 0x205f || cp == 0x3000;
}

// One character of the text: its bytes and class. An invalid UTF-8 byte is
// a character of its own, class kOther.
struct Char {
  uint32_t offset;
  uint32_t cp;
  CharClass cls;
};

// The characters of `text`, plus a sentinel at text.size() (class kOther,
// cp 0) so that lookahead never runs off the end.
std::vector<Char> Decode(std::string_view text) {
  std::vector<Char> out;
  out.reserve(text.size() + 1);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = s[i];
    char32_t cp = b;
    size_t len = 1;
    bool valid = b < 0x80;
    if (b >= 0xc2 && b <= 0xf4) {
      len = b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
      if (i + len <= n) {
        cp = b & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
        valid = true;
        for (size_t k = 1; k < len && valid; ++k) {
          valid = (s[i + k] & 0xc0) == 0x80;
          cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        // Overlong forms, surrogates and code points past U+10FFFF.
        if (valid && ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
                      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)) {
          valid = false;
        }
      }
      if (!valid) len = 1, cp = b;
    }
    out.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(cp),
                   valid ? ClassOf(cp) : CharClass::kOther});
    i += len;
  }
  out.push_back({static_cast<uint32_t>(n), 0, CharClass::kOther});
  return out;
}

bool IsNewline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

constexpr std::string_view kMetaspace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// Case folding for the contractions: ASCII, and U+017F (long s), which
// Unicode folds to "s".
char32_t AsciiLower(uint32_t cp) {
  if (cp == 0x17f) return 's';
  return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

// Length in characters of the contraction 's 't 're 've 'm 'll 'd at `k`
// (0 if none); case-insensitive for Llama 3's (?i:...).
size_t Contraction(const std::vector<Char>& c, size_t k, size_t n, bool fold) {
  if (c[k].cp != '\'' || k + 1 >= n) return 0;
  auto at = [&](size_t j) { return j < n ? (fold ? AsciiLower(c[j].cp) : c[j].cp) : 0; };
  const char32_t a = at(k + 1), b = at(k + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// End of the run of class `cls` starting at `k` (at most `max` characters).
size_t RunEnd(const std::vector<Char>& c, size_t k, size_t n, CharClass cls,
              size_t max = SIZE_MAX) {
  size_t j = k;
  while (j < n && c[j].cls == cls && j - k < max) ++j;
  return j;
}

// \s+(?!\S) then \s+, at a space character `k`: the whitespace run, less its
// last character when a non-space follows (that one leads the next word).
size_t SpaceRun(const std::vector<Char>& c, size_t k, size_t n) {
  const size_t j = RunEnd(c, k, n, CharClass::kSpace);
  return j < n && j - k > 1 ? j - 1 : j;
}

// Emits the pre-tokens [c[k], c[end]) as views of `text`, cutting ones
// longer than kMaxPretokenBytes at character boundaries.
void Emit(std::string_view text, const std::vector<Char>& c, size_t k, size_t end,
          std::vector<std::string_view>& out) {
  size_t from = c[k].offset;
  for (size_t j = k + 1; j <= end; ++j) {
    if (c[j].offset - from > kMaxPretokenBytes && c[j - 1].offset > from) {
      out.push_back(text.substr(from, c[j - 1].offset - from));
      from = c[j - 1].offset;
    }
  }
  out.push_back(text.substr(from, c[end].offset - from));
}

}  // namespace

CharClass ClassOf(char32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::kLetter;
    if (cp >= '0' && cp <= '9') return CharClass::kNumber;
    return IsWhiteSpace(cp) ? CharClass::kSpace : CharClass::kOther;
  }
  if (IsWhiteSpace(cp)) return CharClass::kSpace;
  if (InRanges(kLetterRanges, cp)) return CharClass::kLetter;
  if (InRanges(kNumberRanges, cp)) return CharClass::kNumber;
  return CharClass::kOther;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::string_view> SplitGpt2(std::string_view text) {
  const std::vector<Char> c = Decode(text);
  const size_t n = c.size() - 1;
  std::vector<std::string_view> out;
  size_t k = 0;
  while (k < n) {
    size_t end;
    if (const size_t len = Contraction(c, k, n, /*fold=*/false)) {
      end = k + len;
    } else {
      // " ?X+" for X = letter, number, other: an optional space, then a run.
      const size_t start =
          c[k].cp == ' ' && c[k + 1].cls != CharClass::kSpace && k + 1 < n ? k + 1 : k;
      end =
          c[start].cls == CharClass::kSpace ? SpaceRun(c, k, n) : RunEnd(c, start, n, c[start].cls);
    }
    Emit(text, c, k, end, out);
    k = end;
  }
  return out;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
std::vector<std::string_view> SplitLlama3(std::string_view text, int max_digits) {
  const std::vector<Char> c = Decode(text);
  const size_t n = c.size() - 1;
  std::vector<std::string_view> out;
  size_t k = 0;
  while (k < n) {
    const CharClass cls = c[k].cls;
    size_t end = k;
    if (const size_t len = Contraction(c, k, n, /*fold=*/true)) {
      end = k + len;
    } else if (cls == CharClass::kLetter) {
      end = RunEnd(c, k, n, CharClass::kLetter);
    } else if (cls != CharClass::kNumber && !IsNewline(c[k].cp) && k + 1 < n &&
               c[k + 1].cls == CharClass::kLetter) {
      end = RunEnd(c, k + 1, n, CharClass::kLetter);  // one leading non-letter
    } else if (cls == CharClass::kNumber) {
      end = RunEnd(c, k, n, CharClass::kNumber, static_cast<size_t>(max_digits));
    } else if (cls == CharClass::kOther ||
               (c[k].cp == ' ' && k + 1 < n && c[k + 1].cls == CharClass::kOther)) {
      end = RunEnd(c, cls == CharClass::kOther ? k : k + 1, n, CharClass::kOther);
      while (end < n && IsNewline(c[end].cp)) ++end;
    } else {  // whitespace
      const size_t run = RunEnd(c, k, n, CharClass::kSpace);
      size_t last_newline = run;
      for (size_t j = run; j > k; --j) {
        if (IsNewline(c[j - 1].cp)) {
          last_newline = j - 1;
          break;
        }
      }
      end = last_newline < run ? last_newline + 1 : SpaceRun(c, k, n);
    }
    Emit(text, c, k, end, out);
    k = end;
  }
  return out;
}

// ---------------------------------------------------------------------------
// tokenizer.json

namespace {

constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kSingleDigitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Larger vocabularies than this are refused (the embedding alone would not fit).
// (with this project's 3 special ids: 2^20, the trainer's largest vocabulary).
constexpr int64_t kMaxIds = (int64_t{1} << 20) - 3;

// GPT-2's byte -> printable code point table (bytes_to_unicode).
std::vector<char32_t> ByteToCodePoint() {
  std::vector<char32_t> table(256, 0);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    table[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
  }
  return table;
}

// The bytes a byte-level token string stands for; false if it has a
// character outside the 256-symbol alphabet (or is not valid UTF-8).
bool TokenBytes(const std::string& token, const std::unordered_map<char32_t, int>& byte_of,
                std::string* bytes) {
  bytes->clear();
  const std::vector<Char> c = Decode(token);
  for (size_t k = 0; k + 1 < c.size(); ++k) {
    const size_t len = c[k + 1].offset - c[k].offset;
    auto it = byte_of.find(c[k].cp);
    // An invalid byte decodes as its own value with length 1; only a real
    // (valid) character counts as a symbol.
    if (it == byte_of.end() || (c[k].cp >= 0x80 && len == 1)) return false;
    bytes->push_back(static_cast<char>(it->second));
  }
  return true;
}

std::string EncodeUtf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    s += static_cast<char>(0xe0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

// obj[key], or null when obj is not an object or lacks it (no copy).
const json& At(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

// A short description of a JSON value for an error message: scalars as they
// are (strings cut at 100 bytes), containers by kind (and "type", if any).
std::string Brief(const json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    return json(s.size() > 100 ? s.substr(0, 100) + "..." : s).dump();
  }
  if (v.is_object()) {
    const json& type = At(v, "type");
    return type.is_string() ? "{\"type\": " + Brief(type) + ", ...}" : std::string("an object");
  }
  if (v.is_array()) return "a list of " + std::to_string(v.size());
  return v.dump();
}

bool IsNullOrEmpty(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() || (it->is_string() && it->get<std::string>().empty());
}

// The ByteLevel pre-tokenizer's settings; false if `p` is not one.
bool ByteLevel(const json& p, bool* use_regex, bool* add_prefix_space) {
  if (!p.is_object() || p.value("type", std::string()) != "ByteLevel") return false;
  const json use = p.value("use_regex", json(true));
  const json prefix = p.value("add_prefix_space", json(false));
  if (!use.is_boolean() || !prefix.is_boolean()) return false;
  *use_regex = use.get<bool>();
  *add_prefix_space = prefix.get<bool>();
  return true;
}

Status Unsupported(const std::string& what) {
  return Status::InvalidArgument(
      "tokenizer.json: " + what +
      " is not supported (this build reads byte-level BPE "
      "tokenizers with GPT-2 or cl100k / Llama 3 pre-tokenization and no "
      "normalizer but NFC)");
}

// The id a tokenizer.json's post-processor puts before every single
// sequence (encode(text, add_special_tokens=True)): the first piece of a
// TemplateProcessing "single" template when it is a special token (Llama 3.1's
// <|begin_of_text|>), also inside a Sequence; -1 when it adds none (GPT-2,
// Qwen2, SmolLM2, the first Llama 3 release) or cannot be read.
int TemplateBosId(const json& tokenizer) {
  if (!tokenizer.is_object()) return -1;
  const json post = tokenizer.value("post_processor", json());
  std::vector<json> processors;
  if (post.is_object() && post.value("type", json()) == "Sequence" &&
      post.value("processors", json()).is_array()) {
    for (const auto& p : post["processors"]) processors.push_back(p);
  } else {
    processors.push_back(post);
  }
  for (const auto& p : processors) {
    if (!p.is_object() || p.value("type", json()) != "TemplateProcessing") continue;
    const json single = p.value("single", json());
    if (!single.is_array() || single.empty() || !single[0].is_object()) return -1;
    const json special = single[0].value("SpecialToken", json());
    if (!special.is_object() || !special.value("id", json()).is_string()) return -1;
    const json entry =
        p.value("special_tokens", json()).value(special["id"].get<std::string>(), json());
    const json ids = entry.is_object() ? entry.value("ids", json()) : json();
    if (!ids.is_array() || ids.size() != 1 || !ids[0].is_number_integer() ||
        ids[0].get<int64_t>() < 0 || ids[0].get<int64_t>() > (1 << 24)) {
      return -1;
    }
    return ids[0].get<int>();
  }
  return -1;
}

}  // namespace

bool IsTokenizerJson(const json& j) { return j.is_object() && j.contains("model"); }

std::vector<std::string_view> SplitCharacters(std::string_view text) {
  const std::vector<Char> c = Decode(text);
  std::vector<std::string_view> out;
  out.reserve(c.size() - 1);
  for (size_t k = 0; k + 1 < c.size(); ++k) {
    out.push_back(text.substr(c[k].offset, c[k + 1].offset - c[k].offset));
  }
  return out;
}

Result<BpeModel> ParseTokenizerJson(const json& j) {
  try {
    if (!IsTokenizerJson(j)) return Status::Corruption("tokenizer.json has no \"model\"");
    bool nfc = false;
    // SentencePiece-style normalizers: Replace " " -> "▁" (Gemma), after
    // Prepend "▁" (Llama 2).
    auto is_replace = [](const json& n) {
      return At(n, "type") == "Replace" && At(At(n, "pattern"), "String") == " " &&
             At(n, "content") == std::string(kMetaspace);
    };
    bool sp_normalizer = false;
    SpPrepend sp_prepend = SpPrepend::kNever;
    if (!IsNullOrEmpty(j, "normalizer")) {
      const json& n = j["normalizer"];
      const json& type = At(n, "type");
      const json& seq = At(n, "normalizers");
      if (type.is_string() && type.get_ref<const std::string&>() == "NFC") {
        nfc = true;  // unicode_nfc.h: canonical composition, as Qwen2's tokenizer normalizes
      } else if (is_replace(n)) {
        sp_normalizer = true;
      } else if (type == "Sequence" && seq.is_array() && seq.size() == 2 &&
                 At(seq[0], "type") == "Prepend" &&
                 At(seq[0], "prepend") == std::string(kMetaspace) && is_replace(seq[1])) {
        sp_normalizer = true;
        sp_prepend = SpPrepend::kNonEmpty;
      } else {
        return Unsupported("normalizer " + (type.is_string()
                                                ? type.get_ref<const std::string&>().substr(0, 100)
                                                : Brief(j["normalizer"])));
      }
    }
    const json& m = j["model"];
    if (!m.is_object() || m.value("type", std::string()) != "BPE") {
      return Unsupported("model type " +
                         (At(m, "type").is_string()
                              ? At(m, "type").get_ref<const std::string&>().substr(0, 100)
                              : Brief(m)));
    }
    const json& bf = At(m, "byte_fallback");
    if (!bf.is_null() && !bf.is_boolean()) {
      return Status::Corruption("tokenizer.json: model.byte_fallback is not a boolean");
    }
    const bool byte_fallback = bf.is_boolean() && bf.get<bool>();
    if (!IsNullOrEmpty(m, "continuing_subword_prefix") || !IsNullOrEmpty(m, "end_of_word_suffix")) {
      return Unsupported("a subword prefix or suffix");
    }
    if (m.contains("dropout") && !m["dropout"].is_null() &&
        !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0)) {
      return Unsupported("BPE dropout");
    }

    BpeModel out;
    const json& ignore = At(m, "ignore_merges");
    if (!ignore.is_null() && !ignore.is_boolean()) {
      return Status::Corruption("tokenizer.json: model.ignore_merges is not a boolean");
    }
    out.ignore_merges = ignore.is_boolean() && ignore.get<bool>();

    // Pre-tokenizer.
    const json& pre = At(j, "pre_tokenizer");
    bool use_regex = false;
    if (sp_normalizer) {
      // Nothing, or Gemma's Split on " ", which finds none once the
      // normalizer has replaced them: the whole text is one word.
      if (!pre.is_null() &&
          !(At(pre, "type") == "Split" && At(At(pre, "pattern"), "String") == " ")) {
        return Unsupported("pre-tokenizer " + Brief(pre) + " after a \"▁\" normalizer");
      }
      out.pretokenizer = Pretokenizer::kSentencePiece;
      out.sp_prepend = sp_prepend;
    } else if (At(pre, "type") == "Metaspace" && !nfc) {
      if (At(pre, "replacement") != std::string(kMetaspace)) {
        return Unsupported("Metaspace replacement " + Brief(At(pre, "replacement")));
      }
      // prepend_scheme (tokenizers >= 0.19) or the older add_prefix_space.
      const json& scheme = At(pre, "prepend_scheme");
      const json& legacy = At(pre, "add_prefix_space");
      if (scheme == "first" || scheme == "always" || (scheme.is_null() && legacy == true)) {
        out.sp_prepend = SpPrepend::kIfMissing;
        out.sp_prepend_first_only = scheme == "first";
      } else if (scheme == "never" || (scheme.is_null() && legacy == false)) {
        out.sp_prepend = SpPrepend::kNever;
      } else {
        return Unsupported("Metaspace prepend_scheme " + Brief(scheme));
      }
      const json& split = At(pre, "split");
      if (!split.is_null() && !split.is_boolean()) {
        return Status::Corruption("tokenizer.json: Metaspace split is not a boolean");
      }
      out.sp_split = !split.is_boolean() || split.get<bool>();  // true unless said
      out.pretokenizer = Pretokenizer::kSentencePiece;
    } else if (ByteLevel(pre, &use_regex, &out.add_prefix_space) && use_regex) {
      out.pretokenizer = Pretokenizer::kGpt2;
    } else if (pre.is_object() && pre.value("type", std::string()) == "Sequence" &&
               pre.value("pretokenizers", json()).is_array() && pre["pretokenizers"].size() == 2) {
      const json& split = pre["pretokenizers"][0];
      const json& pattern = At(split, "pattern");
      const json& regex_json = At(pattern, "Regex");
      const std::string regex = regex_json.is_string() ? regex_json.get<std::string>() : "";
      // "Isolated" keeps each match as a pre-token; "Removed" with invert (as
      // converted from tiktoken) keeps the matches and drops what lies between
      // them, which is nothing for these patterns (they match every character).
      const json& behavior_json = At(split, "behavior");
      const std::string behavior =
          behavior_json.is_string() ? behavior_json.get<std::string>() : "";
      const bool invert = At(split, "invert").is_boolean() && At(split, "invert").get<bool>();
      if (At(split, "type") != "Split" ||
          !((behavior == "Isolated" && !invert) || (behavior == "Removed" && invert))) {
        return Unsupported("pre-tokenizer " + Brief(pre));
      }
      if (regex == kLlama3Pattern) {
        out.max_digits = 3;
      } else if (regex == kSingleDigitPattern) {
        out.max_digits = 1;
      } else {
        return Unsupported("split pattern " + Brief(regex_json.is_null() ? pattern : regex_json));
      }
      if (!ByteLevel(pre["pretokenizers"][1], &use_regex, &out.add_prefix_space) || use_regex ||
          out.add_prefix_space) {
        return Unsupported("pre-tokenizer " + Brief(pre));
      }
      out.pretokenizer = Pretokenizer::kLlama3;
    } else {
      return Unsupported("pre-tokenizer " + Brief(pre));
    }
    const bool sp = out.pretokenizer == Pretokenizer::kSentencePiece;
    if (byte_fallback != sp) {
      return Unsupported(sp ? "SentencePiece-style BPE without byte_fallback"
                            : "byte_fallback without SentencePiece-style \"▁\" spaces");
    }
    if (sp && out.ignore_merges) return Unsupported("ignore_merges with SentencePiece-style BPE");

    // Vocabulary, then added tokens (which may extend it).
    const json& vocab = At(m, "vocab");
    if (!vocab.is_object() || vocab.empty()) {
      return Status::Corruption("tokenizer.json: model.vocab is not a non-empty object");
    }
    const std::vector<char32_t> cp_of = ByteToCodePoint();
    std::unordered_map<char32_t, int> byte_of;
    for (int b = 0; b < 256; ++b) byte_of[cp_of[b]] = b;

    std::unordered_map<std::string, int32_t> id_of;
    id_of.reserve(vocab.size());
    std::vector<bool> used;
    auto claim = [&](const json& id, const std::string& what) -> Result<int32_t> {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= kMaxIds) {
        return Status::Corruption("tokenizer.json: " + what + " has id " + Brief(id) +
                                  " outside [0, " + std::to_string(kMaxIds) + ")");
      }
      const auto i = static_cast<size_t>(id.get<int64_t>());
      if (i >= used.size()) used.resize(i + 1, false);
      if (used[i]) return Status::Corruption("tokenizer.json: id " + Brief(id) + " is used twice");
      used[i] = true;
      return static_cast<int32_t>(i);
    };
    std::string bytes;
    for (const auto& [token, id] : vocab.items()) {
      auto i = claim(id, "token " + Brief(json(token)));
      if (!i.ok()) return i.status();
      id_of.emplace(token, *i);
      if (out.token_bytes.size() <= static_cast<size_t>(*i)) out.token_bytes.resize(*i + 1);
      if (sp) {
        // Its text with "▁" as a space, or the byte of "<0xHH>".
        unsigned byte = 0;
        char tail = 0;
        if (token.size() == 6 && std::sscanf(token.c_str(), "<0x%2X%c", &byte, &tail) == 2 &&
            tail == '>') {
          out.token_bytes[*i] = std::string(1, static_cast<char>(byte));
        } else {
          std::string text;
          for (size_t p = 0; p < token.size();) {
            if (token.compare(p, kMetaspace.size(), kMetaspace) == 0) {
              text += ' ', p += kMetaspace.size();
            } else {
              text += token[p++];
            }
          }
          out.token_bytes[*i] = std::move(text);
          if (SplitCharacters(token).size() == 1) out.char_tokens.emplace_back(token, *i);
        }
      } else if (TokenBytes(token, byte_of, &bytes)) {
        out.token_bytes[*i] = bytes;
      }
    }
    const json& added = At(j, "added_tokens");
    if (!added.is_null() && !added.is_array())
      return Status::Corruption("tokenizer.json: added_tokens is not a list");
    // Added tokens not in the vocabulary take the ids after it, in order, as
    // Hugging Face numbers them (it ignores their "id" field). They are never
    // produced from text here (their bytes stay "") and only size the
    // embedding.
    int64_t next_added = static_cast<int64_t>(vocab.size());
    std::unordered_set<std::string> added_seen;
    for (const json& t : added.is_array() ? added : json::array()) {
      const json& content = At(t, "content");
      if (!content.is_string()) {
        return Status::Corruption("tokenizer.json: an added token lacks its content");
      }
      const std::string& text = content.get_ref<const std::string&>();
      const json& special = At(t, "special");
      if (!special.is_null() && !special.is_boolean()) {
        return Status::Corruption("tokenizer.json: added token " + Brief(content) +
                                  ": \"special\" is not a boolean");
      }
      const bool in_text = special == false && !text.empty();
      if (in_text &&
          (At(t, "single_word") == true || At(t, "lstrip") == true || At(t, "rstrip") == true)) {
        return Unsupported("added token " + Brief(content) + " with single_word, lstrip or rstrip");
      }
      // Hugging Face matches a "normalized" one in the normalized text (after
      // NFC, or with spaces as "▁"); found in the raw text here, so only
      // where there is no normalizer (the default for add_tokens is true).
      if (in_text && At(t, "normalized") != false && (nfc || sp_normalizer)) {
        return Unsupported("added token " + Brief(content) +
                           " with \"normalized\" under a normalizer");
      }
      if (!added_seen.insert(text).second) continue;
      int64_t id = 0;
      if (auto it = id_of.find(text); it != id_of.end()) {
        id = it->second;
      } else {
        if (next_added >= kMaxIds) {
          return Status::Corruption("tokenizer.json: more than " + std::to_string(kMaxIds) +
                                    " ids with the added tokens");
        }
        id = next_added++;
        if (out.token_bytes.size() <= static_cast<size_t>(id)) out.token_bytes.resize(id + 1);
        if (in_text) out.token_bytes[id] = text;
      }
      if (in_text) out.text_added_tokens.emplace_back(text, static_cast<int32_t>(id));
    }

    bool missing_byte = false;
    for (int b = 0; b < 256 && sp; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      auto it = id_of.find(name);
      out.byte_ids[b] = out.fallback_ids[b] = it == id_of.end() ? -1 : it->second;
      missing_byte = missing_byte || it == id_of.end();
    }
    for (const auto& [token, id] : out.char_tokens) {  // ASCII characters with a token
      if (token.size() == 1) out.byte_ids[static_cast<unsigned char>(token[0])] = id;
    }
    if (sp) {
      const json& unk = At(m, "unk_token");
      if (unk.is_string()) {
        auto it = id_of.find(unk.get<std::string>());
        if (it == id_of.end()) {
          return Status::Corruption("tokenizer.json: unk_token " + Brief(unk) +
                                    " is not in the vocabulary");
        }
        out.unk_id = it->second;
      } else if (missing_byte) {
        return Unsupported("byte_fallback without every \"<0xHH>\" token and no unk_token");
      }
      out.fuse_unk = At(m, "fuse_unk") == true;
    }
    for (int b = 0; b < 256 && !sp; ++b) {
      auto it = id_of.find(EncodeUtf8(cp_of[b]));
      if (it == id_of.end()) {
        return Unsupported("a vocabulary without the byte-level symbol of byte " +
                           std::to_string(b) + " (not a byte-level BPE)");
      }
      out.byte_ids[b] = it->second;
    }

    // Merges: "a b" (older files) or ["a", "b"].
    const json& merges = At(m, "merges");
    if (!merges.is_array()) return Status::Corruption("tokenizer.json: model.merges is not a list");
    out.merges.reserve(merges.size());
    out.merge_ids.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& mg = merges[r];
      std::string a, b;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return Status::Corruption("tokenizer.json: merge " + std::to_string(r) + " " + Brief(mg) +
                                    " is not two tokens");
        }
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
        a = mg[0].get<std::string>(), b = mg[1].get<std::string>();
      } else {
        return Status::Corruption("tokenizer.json: merge " + std::to_string(r) + " " + Brief(mg) +
                                  " is not two tokens");
      }
      auto ia = id_of.find(a), ib = id_of.find(b), iab = id_of.find(a + b);
      if (ia == id_of.end() || ib == id_of.end() || iab == id_of.end()) {
        return Status::Corruption("tokenizer.json: merge " + std::to_string(r) + " " + Brief(mg) +
                                  " uses a token not in the vocabulary");
      }
      out.merges.emplace_back(ia->second, ib->second);
      out.merge_ids.push_back(iab->second);
    }

    out.description =
        std::string(sp ? "Hugging Face SentencePiece-style BPE ("
                       : "Hugging Face byte-level BPE (") +
        (sp ? (out.sp_split ? "Metaspace words" : "whole text") +
                  std::string(out.sp_prepend == SpPrepend::kNever ? ", no \"▁\" prefix"
                              : out.sp_prepend == SpPrepend::kNonEmpty
                                  ? ", \"▁\" prefix"
                                  : ", \"▁\" prefix unless one") +
                  ", byte fallback"
         : out.pretokenizer == Pretokenizer::kGpt2 ? "GPT-2 pre-tokenizer"
         : out.max_digits == 3                     ? "cl100k / Llama 3 pre-tokenizer"
                               : "cl100k / Llama 3 pre-tokenizer, single digits") +
        ", " + std::to_string(out.token_bytes.size()) + " tokens, " +
        std::to_string(out.merges.size()) + " merges" + (nfc ? ", NFC" : "") + ")";
    out.nfc = nfc;
    out.template_bos = TemplateBosId(j);
    return out;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("tokenizer.json is malformed: ") + e.what());
  }
}

}  // namespace rlaif::trainer::hf
