// The byte-level BPE tokenizer (trainer/src/tokenizer.cc, no LibTorch).
// First byte even: the rest is text for a tokenizer trained once on fixed
// text; checks that Encode/Decode round-trips any bytes, that SplitChunks
// concatenates back to the text, and that BuildRewardSequence respects its
// bound and ends with END. First byte odd: the rest is a tokenizer.json
// (FromJson, as read from a checkpoint); when it loads, the same round trip
// must hold for its own serialisation and a fixed text (a Hugging Face
// tokenizer.json is one: FromJson reads both). Text is also encoded by two
// small Hugging Face byte-level BPE tokenizers (GPT-2 and Llama 3
// pre-tokenization): the same round trip, and the pre-tokens concatenate back
// to the text, none empty or longer than hf::kMaxPretokenBytes; and by a
// SentencePiece-style one (Llama 2's form, byte fallback, a non-special added
// token), which decodes to the text behind its "▁"s.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "fuzz_target.h"
#include "hf_tokenizer.h"
#include "rlaif/trainer/tokenizer.h"
#include "unicode_nfc.h"

namespace {

using rlaif::trainer::BpeTokenizer;

const BpeTokenizer& Trained() {
  static const BpeTokenizer tok = [] {
    std::vector<std::string_view> texts = {
        "Human: How do I bake bread?\n\nAssistant: Mix flour, water, salt and yeast.",
        "the quick brown fox jumps over the lazy dog 12345 67890 !!! ???",
        "  indented   text\twith\ttabs\r\nand CRLF, ünïcödé, 日本語, emoji 🙂🙂",
        "the the the then there their them these those"};
    auto t = BpeTokenizer::Train(texts, 400);
    if (!t.ok()) std::abort();
    return std::move(*t);
  }();
  return tok;
}

// A tokenizer.json: GPT-2's 256 byte symbols, a few merges, and GPT-2's or
// Llama 3's pre-tokenizer.
const BpeTokenizer& HuggingFace(bool llama3) {
  static const auto make = [](bool l3) {
    std::vector<std::string> sym(256);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      const int cp = printable ? b : 256 + extra++;
      sym[b] = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                         : std::string{static_cast<char>(0xc0 | (cp >> 6)),
                                       static_cast<char>(0x80 | (cp & 0x3f))};
    }
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[sym[b]] = b;
    const std::string sp = sym[' '];
    const std::vector<std::pair<std::string, std::string>> merges = {
        {"t", "h"}, {sp, "th"}, {"e", "r"}, {sp + "th", "e"}, {"i", "n"}, {sym['\n'], sym['\n']}};
    nlohmann::json m = nlohmann::json::array();
    for (const auto& [a, b] : merges) {
      if (!vocab.contains(a + b)) vocab[a + b] = static_cast<int>(vocab.size());
      m.push_back(a + " " + b);
    }
    nlohmann::json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    if (l3) {
      pre = {{"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"},
                {"pattern",
                 {{"Regex",
                   "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                {"behavior", "Isolated"},
                {"invert", false}},
               {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    }
    nlohmann::json j = {{"normalizer", nullptr},
                        {"pre_tokenizer", pre},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
    auto tok = BpeTokenizer::FromJson(j.dump());
    if (!tok.ok()) std::abort();
    return std::move(*tok);
  };
  static const BpeTokenizer gpt2 = make(false), l3 = make(true);
  return llama3 ? l3 : gpt2;
}

// Llama 2's form: "▁" + text with spaces as "▁", byte fallback for every byte,
// a few merges and the non-special added token "<t>".
const BpeTokenizer& SentencePiece() {
  static const BpeTokenizer tok = [] {
    const std::string meta = "\xe2\x96\x81";
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    char name[8];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      vocab[name] = static_cast<int>(vocab.size());
    }
    for (char c = '!'; c <= '~'; ++c) vocab[std::string(1, c)] = static_cast<int>(vocab.size());
    vocab[meta] = static_cast<int>(vocab.size());
    const std::vector<std::pair<std::string, std::string>> merges = {
        {meta, "t"}, {"h", "e"}, {meta + "t", "he"}, {"i", "n"}, {meta, meta}};
    nlohmann::json m = nlohmann::json::array();
    for (const auto& [a, b] : merges) {
      if (!vocab.contains(a + b)) vocab[a + b] = static_cast<int>(vocab.size());
      m.push_back(a + " " + b);
    }
    const nlohmann::json replace = {
        {"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", meta}};
    nlohmann::json j = {
        {"normalizer",
         {{"type", "Sequence"},
          {"normalizers", {{{"type", "Prepend"}, {"prepend", meta}}, replace}}}},
        {"pre_tokenizer", nullptr},
        {"added_tokens", {{{"content", "<t>"}, {"special", false}, {"normalized", false}}}},
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges", m},
          {"byte_fallback", true},
          {"unk_token", "<unk>"}}}};
    auto t = BpeTokenizer::FromJson(j.dump());
    if (!t.ok()) std::abort();
    return std::move(*t);
  }();
  return tok;
}

void CheckPretokens(const std::vector<std::string_view>& pieces, std::string_view text) {
  std::string joined;
  for (std::string_view p : pieces) {
    FUZZ_CHECK(!p.empty() && p.size() <= rlaif::trainer::hf::kMaxPretokenBytes);
    joined.append(p);
  }
  FUZZ_CHECK(joined == text);
}

void CheckRoundTrip(const BpeTokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.Encode(text);
  for (int32_t id : ids) FUZZ_CHECK(id >= BpeTokenizer::kFirstByte && id < tok.vocab_size());
  // A SentencePiece-style tokenizer from the fuzzer may lack byte tokens
  // (<unk> loses the text) and decodes "▁" as a space: ids in range only.
  if (tok.description().find("SentencePiece") != std::string::npos) return;
  // GPT-2's add_prefix_space puts a space before text that lacks one.
  const std::string decoded = tok.Decode(ids);
  FUZZ_CHECK(decoded == text || (tok.is_hugging_face() && !text.empty() && text[0] != ' ' &&
                                 decoded.size() == text.size() + 1 && decoded[0] == ' ' &&
                                 decoded.compare(1, std::string::npos, text) == 0));
  std::string joined;
  for (std::string_view c : rlaif::trainer::SplitChunks(text)) {
    FUZZ_CHECK(!c.empty());
    joined.append(c);
  }
  FUZZ_CHECK(joined == text);
  for (int max_len : {4, 7, 64}) {
    const size_t half = ids.size() / 2;
    std::vector<int32_t> prompt(ids.begin(), ids.begin() + half),
        response(ids.begin() + half, ids.end());
    auto seq = rlaif::trainer::BuildRewardSequence(prompt, response, max_len);
    FUZZ_CHECK(static_cast<int>(seq.size()) <= max_len);
    FUZZ_CHECK(!seq.empty() && seq.back() == BpeTokenizer::kEnd);
  }
}

}  // namespace

RLAIF_FUZZ_TARGET(tokenizer) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    CheckRoundTrip(Trained(), rest);
    for (bool llama3 : {false, true}) {
      const BpeTokenizer& hf = HuggingFace(llama3);
      const std::vector<int32_t> ids = hf.Encode(rest);
      for (int32_t id : ids) FUZZ_CHECK(id >= BpeTokenizer::kFirstByte && id < hf.vocab_size());
      FUZZ_CHECK(hf.Decode(ids) == rest);
    }
    {
      const BpeTokenizer& sp = SentencePiece();
      const std::vector<int32_t> ids = sp.Encode(rest);
      for (int32_t id : ids) FUZZ_CHECK(id >= BpeTokenizer::kFirstByte && id < sp.vocab_size());
      // Each stretch of text between the added tokens gets its own "▁".
      std::string want;
      size_t start = 0;
      for (size_t p = rest.find("<t>"); p != std::string::npos; p = rest.find("<t>", start)) {
        if (p > start) want += " " + rest.substr(start, p - start);
        want += "<t>";
        start = p + 3;
      }
      if (start < rest.size()) want += " " + rest.substr(start);
      for (size_t p = want.find("\xe2\x96\x81"); p != std::string::npos;
           p = want.find("\xe2\x96\x81", p + 1)) {
        want.replace(p, 3, " ");
      }
      FUZZ_CHECK(sp.Decode(ids) == want);
      std::string joined;  // the characters concatenate back to the text
      for (std::string_view c : rlaif::trainer::hf::SplitCharacters(rest)) {
        FUZZ_CHECK(!c.empty() && c.size() <= 4);
        joined.append(c);
      }
      FUZZ_CHECK(joined == rest);
    }
    CheckPretokens(rlaif::trainer::hf::SplitGpt2(rest), rest);
    CheckPretokens(rlaif::trainer::hf::SplitLlama3(rest, 3), rest);
    // NFC (Qwen2's normalizer) is idempotent on any bytes.
    const std::string nfc = rlaif::trainer::NfcNormalize(rest);
    FUZZ_CHECK(rlaif::trainer::NfcNormalize(nfc) == nfc);
    return 0;
  }
  auto tok = BpeTokenizer::FromJson(rest);
  if (!tok.ok()) return 0;
  auto again = BpeTokenizer::FromJson(tok->ToJson());
  FUZZ_CHECK(again.ok() && again->merges() == tok->merges());
  CheckRoundTrip(*tok, "Human: hello there, the quick brown fox 42\n\nAssistant: hi \xff\xfe");
  return 0;
}
