// The byte-level BPE tokenizer (trainer/src/tokenizer.cc, no LibTorch).
// First byte even: the rest is text for a tokenizer trained once on fixed
// text; checks that Encode/Decode round-trips any bytes, that SplitChunks
// concatenates back to the text, and that BuildRewardSequence respects its
// bound and ends with END. First byte odd: the rest is a tokenizer.json
// (FromJson, as read from a checkpoint); when it loads, the same round trip
// must hold for its own serialisation and a fixed text.
#include <algorithm>

#include "fuzz_target.h"
#include "rlaif/trainer/tokenizer.h"

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

void CheckRoundTrip(const BpeTokenizer& tok, std::string_view text) {
  const std::vector<int32_t> ids = tok.Encode(text);
  for (int32_t id : ids) FUZZ_CHECK(id >= BpeTokenizer::kFirstByte && id < tok.vocab_size());
  FUZZ_CHECK(tok.Decode(ids) == text);
  std::string joined;
  for (std::string_view c : rlaif::trainer::SplitChunks(text)) {
    FUZZ_CHECK(!c.empty());
    joined.append(c);
  }
  FUZZ_CHECK(joined == text);
  for (int max_len : {4, 7, 64}) {
    const size_t half = ids.size() / 2;
    std::vector<int32_t> prompt(ids.begin(), ids.begin() + half), response(ids.begin() + half, ids.end());
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
    return 0;
  }
  auto tok = BpeTokenizer::FromJson(rest);
  if (!tok.ok()) return 0;
  auto again = BpeTokenizer::FromJson(tok->ToJson());
  FUZZ_CHECK(again.ok() && again->merges() == tok->merges());
  CheckRoundTrip(*tok, "Human: hello there, the quick brown fox 42\n\nAssistant: hi \xff\xfe");
  return 0;
}
