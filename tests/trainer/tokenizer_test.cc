#include "rlaif/trainer/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "rlaif/trainer/pairs.h"
#include "test_util.h"

namespace rlaif::trainer {
namespace {

std::vector<std::string> Corpus() {
  return {"The quick brown fox jumps over the lazy dog.",
          "The lazy dog sleeps; the quick fox runs!  Twice, 2024 times.",
          "  leading spaces\tand\ttabs\nnew lines\n\n",
          "unicode: café, naïve, 日本語, emoji 🙂🙂",
          "the the the theme thermal there their",
          "numbers 1234567890 and 3.14159 and 42"};
}

std::vector<std::string_view> Views(const std::vector<std::string>& texts) {
  return {texts.begin(), texts.end()};
}

TEST(SplitChunks, ConcatenatesBackAndAttachesOneLeadingSpace) {
  const std::string text = "Hello,  world!\n\n  42 apples\tcafé ";
  std::string joined;
  for (auto c : SplitChunks(text)) joined += c;
  EXPECT_EQ(joined, text);
  std::vector<std::string> chunks;
  for (auto c : SplitChunks("Hi there,  you 42x")) chunks.emplace_back(c);
  EXPECT_EQ(chunks, (std::vector<std::string>{"Hi", " there", ",", " ", " you", " 42", "x"}));
  // Long runs are cut.
  for (auto c : SplitChunks(std::string(1000, 'a')))
    EXPECT_LE(c.size(), BpeTokenizer::kMaxChunkBytes);
}

TEST(BpeTokenizer, RejectsTooSmallVocab) {
  auto tok = BpeTokenizer::Train({"abc"}, 100);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kInvalidArgument);
}

TEST(BpeTokenizer, LearnsFrequentPairsFirstAndBreaksTiesLexicographically) {
  // (x,y) occurs 4 times; (c,d) and (a,b) tie at 3: "ab" < "cd" goes first.
  auto tok = BpeTokenizer::Train({"cd", "xy", "ab", "cd", "xy", "ab", "xy", "cd", "ab", "xy"},
                                 BpeTokenizer::kFirstMerge + 3);
  ASSERT_TRUE(tok.ok());
  auto id = [](char c) { return BpeTokenizer::kFirstByte + static_cast<unsigned char>(c); };
  ASSERT_EQ(tok->merges().size(), 3u);
  EXPECT_EQ(tok->merges()[0], std::make_pair(id('x'), id('y')));
  EXPECT_EQ(tok->merges()[1], std::make_pair(id('a'), id('b')));
  EXPECT_EQ(tok->merges()[2], std::make_pair(id('c'), id('d')));
  EXPECT_EQ(tok->Encode("xyab"),
            (std::vector<int32_t>{BpeTokenizer::kFirstMerge, BpeTokenizer::kFirstMerge + 1}));
  // Pairs seen once are not learned: training stops early.
  auto small = BpeTokenizer::Train({"ab", "cd"}, 1000);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->vocab_size(), BpeTokenizer::kFirstMerge);
}

// Reference BPE: recounts every pair from scratch before each merge. The
// incremental trainer must learn exactly the same merges.
std::vector<std::pair<int32_t, int32_t>> NaiveMerges(const std::vector<std::string>& texts,
                                                     int vocab_size) {
  std::map<std::string, int64_t> freq;
  for (const auto& t : texts) {
    for (auto c : SplitChunks(t)) ++freq[std::string(c)];
  }
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> counts;
  for (const auto& [w, f] : freq) {
    std::vector<int32_t> s;
    for (unsigned char c : w) s.push_back(BpeTokenizer::kFirstByte + c);
    words.push_back(s);
    counts.push_back(f);
  }
  std::vector<std::string> bytes(BpeTokenizer::kFirstMerge);
  for (int b = 0; b < 256; ++b)
    bytes[BpeTokenizer::kFirstByte + b] = std::string(1, static_cast<char>(b));
  std::vector<std::pair<int32_t, int32_t>> merges;
  while (static_cast<int>(bytes.size()) < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pc;
    for (size_t w = 0; w < words.size(); ++w) {
      for (size_t i = 0; i + 1 < words[w].size(); ++i)
        pc[{words[w][i], words[w][i + 1]}] += counts[w];
    }
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 0;
    for (const auto& [p, c] : pc) {
      const bool better =
          c > best_count ||
          (c == best_count && std::make_pair(bytes[p.first], bytes[p.second]) <
                                  std::make_pair(bytes[best.first], bytes[best.second]));
      if (better) best = p, best_count = c;
    }
    if (best_count < 2) break;
    const int32_t id = static_cast<int32_t>(bytes.size());
    merges.push_back(best);
    bytes.push_back(bytes[best.first] + bytes[best.second]);
    for (auto& s : words) {
      std::vector<int32_t> out;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          out.push_back(id);
          i += 2;
        } else {
          out.push_back(s[i++]);
        }
      }
      s = out;
    }
  }
  return merges;
}

TEST(BpeTokenizer, IncrementalTrainingMatchesTheNaiveAlgorithm) {
  std::vector<std::string> texts = Corpus();
  texts.push_back("aaaa aaaaa aa a aaaaaa abababab ababa");  // overlapping pairs
  std::mt19937_64 rng(5);
  for (int i = 0; i < 50; ++i) {
    std::string s;
    for (int k = 0; k < 40; ++k) s += "abcd ef"[rng() % 7];
    texts.push_back(s);
  }
  auto tok = BpeTokenizer::Train(Views(texts), 600);
  ASSERT_TRUE(tok.ok());
  const auto expected = NaiveMerges(texts, 600);
  EXPECT_GT(expected.size(), 100u);
  EXPECT_EQ(tok->merges(), expected);
}

TEST(BpeTokenizer, TrainingIsDeterministic) {
  const auto texts = Corpus();
  auto a = BpeTokenizer::Train(Views(texts), 400);
  auto b = BpeTokenizer::Train(Views(texts), 400);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT(a->merges().size(), 10u);
  EXPECT_EQ(a->ToJson(), b->ToJson());
}

TEST(BpeTokenizer, RoundTripsArbitraryBytes) {
  const auto texts = Corpus();
  auto tok = BpeTokenizer::Train(Views(texts), 400);
  ASSERT_TRUE(tok.ok());
  std::mt19937_64 rng(3);
  std::vector<std::string> samples = {"",
                                      " ",
                                      "\n",
                                      "the quick fox",
                                      std::string("\0\xff\xfe\x80 x", 6),
                                      "\xc3(",
                                      "unicode: café 🙂",
                                      std::string(500, ' ')};
  for (int i = 0; i < 200; ++i) {
    std::string s(rng() % 300, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xff);
    samples.push_back(s);
  }
  for (const auto& s : samples) {
    auto ids = tok->Encode(s);
    for (int32_t id : ids) {
      ASSERT_GE(id, BpeTokenizer::kFirstByte);
      ASSERT_LT(id, tok->vocab_size());
    }
    ASSERT_EQ(tok->Decode(ids), s);
  }
  // Merges compress text the tokenizer was trained on.
  EXPECT_LT(tok->Encode(texts[0]).size(), texts[0].size() / 2);
}

TEST(BpeTokenizer, SaveLoadGivesTheSameTokenizer) {
  rlaif::testing::TempDir dir;
  const auto texts = Corpus();
  auto tok = BpeTokenizer::Train(Views(texts), 400);
  ASSERT_TRUE(tok.ok());
  ASSERT_TRUE(tok->SaveFile(dir.Sub("tokenizer.json")).ok());
  auto loaded = BpeTokenizer::LoadFile(dir.Sub("tokenizer.json"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->ToJson(), tok->ToJson());
  EXPECT_EQ(loaded->vocab_size(), tok->vocab_size());
  for (const auto& t : texts) EXPECT_EQ(loaded->Encode(t), tok->Encode(t));
}

TEST(BpeTokenizer, RefusesCorruptJson) {
  EXPECT_EQ(BpeTokenizer::FromJson("{").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(BpeTokenizer::FromJson(R"({"format":"something-else"})").status().code(),
            StatusCode::kCorruption);
  auto tok = BpeTokenizer::Train({"aaa bbb aaa bbb"}, 300);
  ASSERT_TRUE(tok.ok());
  auto json = nlohmann::json::parse(tok->ToJson());
  ASSERT_TRUE(json["merges"].is_array());
  // A merge that refers to an id not yet defined.
  auto forward = json;
  forward["merges"] = nlohmann::json::array({{5000, 3}});
  forward.erase("vocab_size");
  EXPECT_EQ(BpeTokenizer::FromJson(forward.dump()).status().code(), StatusCode::kCorruption);
  auto not_pairs = json;
  not_pairs["merges"] = nlohmann::json::array({"ab"});
  EXPECT_EQ(BpeTokenizer::FromJson(not_pairs.dump()).status().code(), StatusCode::kCorruption);
  auto other_layout = json;
  other_layout["special_tokens"]["end"] = 7;
  EXPECT_EQ(BpeTokenizer::FromJson(other_layout.dump()).status().code(),
            StatusCode::kInvalidArgument);
  auto future = json;
  future["format_version"] = 2;
  EXPECT_EQ(BpeTokenizer::FromJson(future.dump()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BpeTokenizer::LoadFile("/nonexistent/tokenizer.json").status().code(),
            StatusCode::kIoError);
}

// Found by tests/fuzz/tokenizer_fuzz.cc: integer fields given as floats out of
// range (1e300, -1.5) were cast by nlohmann's get<int>() (undefined behaviour,
// UBSan float-cast-overflow). They are refused like any other mismatch.
TEST(BpeTokenizer, RefusesNonIntegerFieldsWithoutUndefinedBehaviour) {
  auto tok = BpeTokenizer::Train({"aaa bbb aaa bbb"}, 300);
  ASSERT_TRUE(tok.ok());
  const auto json = nlohmann::json::parse(tok->ToJson());
  for (const char* key : {"format_version", "max_chunk_bytes", "first_byte_id", "vocab_size"}) {
    for (double v : {1e300, -1.5, -1e300}) {
      auto bad = json;
      bad[key] = v;
      EXPECT_FALSE(BpeTokenizer::FromJson(bad.dump()).ok()) << key << " = " << v;
    }
  }
  auto bad = json;
  bad["special_tokens"]["pad"] = 1e300;
  EXPECT_EQ(BpeTokenizer::FromJson(bad.dump()).status().code(), StatusCode::kInvalidArgument);
  bad["special_tokens"] = "not an object";
  EXPECT_FALSE(BpeTokenizer::FromJson(bad.dump()).ok());
  auto integral = json;
  integral["vocab_size"] = static_cast<double>(tok->vocab_size());  // 262.0 is not an integer
  EXPECT_FALSE(BpeTokenizer::FromJson(integral.dump()).ok());
  EXPECT_TRUE(BpeTokenizer::FromJson(json.dump()).ok());
}

TEST(BpeTokenizer, EncodeIsThreadSafe) {
  const auto texts = Corpus();
  auto tok = BpeTokenizer::Train(Views(texts), 400);
  ASSERT_TRUE(tok.ok());
  std::vector<std::vector<int32_t>> expected;
  for (const auto& t : texts) expected.push_back(tok->Encode(t));
  auto fresh = BpeTokenizer::FromJson(tok->ToJson());  // empty cache
  ASSERT_TRUE(fresh.ok());
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        size_t k = (i + t) % texts.size();
        if (fresh->Encode(texts[k]) != expected[k]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(BuildRewardSequence, KeepsTheEndOfThePromptAndTheStartOfTheResponse) {
  std::vector<int32_t> prompt, response;
  for (int i = 0; i < 100; ++i) prompt.push_back(1000 + i);
  for (int i = 0; i < 100; ++i) response.push_back(2000 + i);
  auto seq = BuildRewardSequence(prompt, response, 40);
  ASSERT_EQ(seq.size(), 40u);
  // 3/4 of 40 = 30 response tokens, 8 prompt tokens, SEP, END.
  EXPECT_EQ(seq[0], 1092);
  EXPECT_EQ(seq[7], 1099);
  EXPECT_EQ(seq[8], BpeTokenizer::kSep);
  EXPECT_EQ(seq[9], 2000);
  EXPECT_EQ(seq[38], 2029);
  EXPECT_EQ(seq.back(), BpeTokenizer::kEnd);

  // A short prompt leaves the rest to the response.
  auto short_prompt = BuildRewardSequence({7, 8}, response, 40);
  ASSERT_EQ(short_prompt.size(), 40u);
  EXPECT_EQ(short_prompt[0], 7);
  EXPECT_EQ(short_prompt[3], 2000);
  EXPECT_EQ(short_prompt[38], 2035);

  // Short inputs are kept whole.
  EXPECT_EQ(BuildRewardSequence({7}, {9}, 40),
            (std::vector<int32_t>{7, BpeTokenizer::kSep, 9, BpeTokenizer::kEnd}));
  EXPECT_EQ(BuildRewardSequence({}, {}, 40),
            (std::vector<int32_t>{BpeTokenizer::kSep, BpeTokenizer::kEnd}));

  // A begin-of-text id first, within the same bound.
  EXPECT_EQ(BuildRewardSequence({7}, {9}, 40, 500),
            (std::vector<int32_t>{500, 7, BpeTokenizer::kSep, 9, BpeTokenizer::kEnd}));
  auto with_bos = BuildRewardSequence(prompt, response, 40, 500);
  EXPECT_EQ(with_bos.size(), 40u);
  EXPECT_EQ(with_bos.front(), 500);
  EXPECT_EQ(with_bos.back(), BpeTokenizer::kEnd);
  EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()),
            BuildRewardSequence(prompt, response, 39));
}

TEST(BpeTokenizer, Trains4kVocabOnTheHhFileQuickly) {
  auto pairs = LoadPairsJsonl(rlaif::testing::SourceDir() + "/data/hh-harmless-dev.jsonl");
  ASSERT_TRUE(pairs.ok());
  std::vector<std::string_view> texts;
  size_t bytes = 0;
  for (const auto& p : *pairs) {
    for (const std::string* s : {&p.prompt, &p.chosen, &p.rejected}) {
      texts.push_back(*s);
      bytes += s->size();
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tok = BpeTokenizer::Train(texts, 4096);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(tok->vocab_size(), 4096);
  std::cout << "[ info     ] BPE 4096 ids on " << bytes / 1000 << " kB in " << secs << " s\n";
  EXPECT_LT(secs, 30.0);  // ~1 s on an idle 2-core machine; generous for a shared one
  size_t tokens = 0;
  for (auto t : texts) tokens += tok->Encode(t).size();
  EXPECT_LT(static_cast<double>(tokens) / bytes, 0.35);  // ~4 bytes per token on English
}

}  // namespace
}  // namespace rlaif::trainer
