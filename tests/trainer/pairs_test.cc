#include "rlaif/trainer/pairs.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "rlaif/common/hash.h"
#include "test_util.h"

namespace rlaif::trainer {
namespace {

using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

TEST(LoadPairsJsonl, ReadsTrlStyleWithSoftLabelsAndDimension) {
  TempDir dir;
  WriteFile(
      dir.Sub("p.jsonl"),
      R"({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."})"
      "\n"
      R"({"prompt": "2+2?", "chosen": "4", "rejected": "5", "p_chosen": 0.75, "dimension": "helpfulness"})"
      "\r\n\n");
  LoadPairsStats stats;
  auto pairs = LoadPairsJsonl(dir.Sub("p.jsonl"), &stats);
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0].prompt, "Hi?");
  EXPECT_EQ((*pairs)[0].chosen, "Hello!");
  EXPECT_EQ((*pairs)[0].rejected, "Go away.");
  EXPECT_DOUBLE_EQ((*pairs)[0].p_chosen, 1.0);
  EXPECT_EQ((*pairs)[0].dimension, "");
  EXPECT_DOUBLE_EQ((*pairs)[1].p_chosen, 0.75);
  EXPECT_EQ((*pairs)[1].dimension, "helpfulness");
  EXPECT_EQ(stats.lines, 2);
  EXPECT_EQ(stats.loaded, 2);
  EXPECT_EQ(stats.skipped, 0);
}

TEST(LoadPairsJsonl, SoftLabelBelowHalfSwapsTheResponses) {
  TempDir dir;
  WriteFile(dir.Sub("p.jsonl"),
            R"({"prompt": "P", "chosen": "A", "rejected": "B", "p_chosen": 0.2})");
  auto pairs = LoadPairsJsonl(dir.Sub("p.jsonl"));
  ASSERT_TRUE(pairs.ok());
  EXPECT_EQ((*pairs)[0].chosen, "B");
  EXPECT_EQ((*pairs)[0].rejected, "A");
  EXPECT_DOUBLE_EQ((*pairs)[0].p_chosen, 0.8);
}

TEST(LoadPairsJsonl, SplitsRawHhTranscriptsLikeTheirTrlConversion) {
  TempDir dir;
  nlohmann::json line = {{"chosen",
                          "\n\nHuman: How do I boil an egg?\n\nAssistant: Put it in "
                          "water.\n\nHuman: Then?\n\nAssistant: "
                          "Boil it for 8 minutes."},
                         {"rejected",
                          "\n\nHuman: How do I boil an egg?\n\nAssistant: Put it in "
                          "water.\n\nHuman: Then?\n\nAssistant: "
                          "Eat it raw."}};
  WriteFile(dir.Sub("hh.jsonl"), line.dump() + "\n");
  auto pairs = LoadPairsJsonl(dir.Sub("hh.jsonl"));
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 1u);
  EXPECT_EQ(
      (*pairs)[0].prompt,
      "Human: How do I boil an egg?\n\nAssistant: Put it in water.\n\nHuman: Then?\n\nAssistant:");
  EXPECT_EQ((*pairs)[0].chosen, "Boil it for 8 minutes.");
  EXPECT_EQ((*pairs)[0].rejected, "Eat it raw.");
}

TEST(SplitHhTranscripts, UsesTheLastSharedAssistantTurn) {
  // The transcripts diverge inside the second assistant turn.
  auto pair =
      SplitHhTranscripts("Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: same start, then X",
                         "Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: same start, then Y");
  ASSERT_TRUE(pair.ok());
  EXPECT_EQ(pair->prompt, "Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:");
  EXPECT_EQ(pair->chosen, "same start, then X");
  EXPECT_EQ(pair->rejected, "same start, then Y");

  auto none = SplitHhTranscripts("Human: a\n\nAssistant: x", "Human: b\n\nAssistant: y");
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
}

TEST(LoadPairsJsonl, SkipsAndCountsMalformedLines) {
  TempDir dir;
  WriteFile(dir.Sub("p.jsonl"),
            "{\"prompt\": \"ok\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
            "not json at all\n"
            "[1, 2]\n"
            "{\"prompt\": \"p\", \"chosen\": \"a\"}\n"
            "{\"prompt\": 3, \"chosen\": \"a\", \"rejected\": \"b\"}\n"
            "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"p_chosen\": 1.5}\n"
            "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"p_chosen\": \"high\"}\n"
            "{\"chosen\": \"no marker here\", \"rejected\": \"none here\"}\n"
            "{\"prompt\": \"bad utf8 \xff\xfe\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
            "{\"prompt\": \"trunc\", \"chosen\": \"a\", \"rej\n"
            "{\"prompt\": \"ok2\", \"chosen\": \"c\", \"rejected\": \"d\"}\n");
  LoadPairsStats stats;
  auto pairs = LoadPairsJsonl(dir.Sub("p.jsonl"), &stats);
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[1].prompt, "ok2");
  EXPECT_EQ(stats.lines, 11);
  EXPECT_EQ(stats.loaded, 2);
  EXPECT_EQ(stats.skipped, 9);
  ASSERT_FALSE(stats.errors.empty());
  EXPECT_LE(stats.errors.size(), 9u);
  EXPECT_EQ(stats.errors[0].rfind("line 2:", 0), 0u) << stats.errors[0];
}

TEST(LoadPairsJsonl, ErrorsWhenNothingUsableOrUnreadable) {
  TempDir dir;
  WriteFile(dir.Sub("bad.jsonl"), "garbage\n{}\n");
  auto bad = LoadPairsJsonl(dir.Sub("bad.jsonl"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("line 1"), std::string::npos) << bad.status().message();

  auto missing = LoadPairsJsonl(dir.Sub("nope.jsonl"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
}

TEST(LoadPairsJsonl, ReadsTheBundledHhFile) {
  LoadPairsStats stats;
  auto pairs = LoadPairsJsonl(rlaif::testing::SourceDir() + "/data/hh-harmless-dev.jsonl", &stats);
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  EXPECT_EQ(pairs->size(), 1467u);
  EXPECT_EQ(stats.skipped, 0);
  for (const auto& p : *pairs) {
    ASSERT_FALSE(p.prompt.empty());
    ASSERT_EQ(p.prompt.substr(p.prompt.size() - 10), "Assistant:");
  }
}

constexpr double kHelloUnit = 0.7186445704831135;  // FNV-1a + splitmix64, see common/hash.cc

TEST(InHoldout, IsAStableFunctionOfThePrompt) {
  // Pinned: changing the split would move prompts between train and holdout
  // for every stored model.
  EXPECT_EQ(InHoldout("hello", 0.5), HashToUnit(Hash64("hello")) < 0.5);
  EXPECT_NEAR(HashToUnit(Hash64("hello")), kHelloUnit, 1e-12);
  int in = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::string prompt = "prompt number " + std::to_string(i);
    const bool first = InHoldout(prompt, 0.1);
    ASSERT_EQ(first, InHoldout(prompt, 0.1));
    // Monotone in the fraction: a held-out prompt stays held out for larger fractions.
    if (first) {
      ASSERT_TRUE(InHoldout(prompt, 0.2));
    }
    in += first;
  }
  EXPECT_NEAR(static_cast<double>(in) / n, 0.1, 0.01);
  EXPECT_FALSE(InHoldout("anything", 0.0));
  EXPECT_TRUE(InHoldout("anything", 1.0));
}

}  // namespace
}  // namespace rlaif::trainer
