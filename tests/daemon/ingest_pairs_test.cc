// Logged pairs (`rewrite`, `ab`) and backpressure (sampling.max_pending),
// through the Ingestor into a real store.
#include <gtest/gtest.h>

#include <filesystem>

#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/line_parser.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using rlaif::testing::AppendFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

LineParser Make(const std::string& format) {
  SourceConfig s;
  s.format = format;
  auto p = LineParser::Create(s);
  EXPECT_TRUE(p.ok());
  return std::move(*p);
}

std::string Reason(const LineParser& p, std::string_view line) {
  ParsedLine pl;
  Status st = p.Parse(line, &pl);
  return st.ok() ? "ok" : RejectReason(st);
}

TEST(LoggedPairParseTest, RewriteAndAbFields) {
  auto p = Make("simple");
  ParsedLine pl;
  ASSERT_TRUE(p.Parse(R"({"prompt":"q","response":"old","rewrite":"new"})", &pl).ok());
  EXPECT_EQ(pl.pair.kind, LoggedPair::Kind::kRewrite);
  EXPECT_EQ(pl.pair.a, "old");
  EXPECT_EQ(pl.pair.b, "new");
  EXPECT_EQ(pl.pair.preferred, "b");
  EXPECT_EQ(pl.pair.dimension, "");
  ASSERT_TRUE(
      p.Parse(R"({"prompt":"q","response":"old","rewrite":{"response":"new2","dimension":"tone"}})",
              &pl)
          .ok());
  EXPECT_EQ(pl.pair.b, "new2");
  EXPECT_EQ(pl.pair.dimension, "tone");
  ASSERT_TRUE(p.Parse(R"({"prompt":"q","ab":{"a":"x","b":"y","preferred":"a"}})", &pl).ok());
  EXPECT_EQ(pl.pair.kind, LoggedPair::Kind::kAb);
  EXPECT_EQ(pl.pair.a, "x");
  EXPECT_EQ(pl.pair.b, "y");
  EXPECT_EQ(pl.pair.preferred, "a");
  ASSERT_TRUE(p.Parse(R"({"prompt":"q","ab":{"a":"x","b":"y"}})", &pl).ok());
  EXPECT_EQ(pl.pair.preferred, "");
  // A parser reused for a line without a pair forgets the previous one.
  ASSERT_TRUE(p.Parse(R"({"prompt":"q","rewrite":null})", &pl).ok());
  EXPECT_EQ(pl.pair.kind, LoggedPair::Kind::kNone);
  // openai-chat: the rewrite rewrites choices[0].
  auto chat = Make("openai-chat");
  ASSERT_TRUE(chat.Parse(R"({"request":{"messages":[{"role":"user","content":"hi"}]},)"
                         R"("response":{"choices":[{"message":{"content":"yo"}}]},"rewrite":"hello!"})",
                         &pl)
                  .ok());
  EXPECT_EQ(pl.pair.a, "yo");
  EXPECT_EQ(pl.pair.b, "hello!");
}

TEST(LoggedPairParseTest, MalformedPairsAreRejectedAsBadPair) {
  auto p = Make("simple");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","rewrite":"new"})"), "bad_pair");  // nothing to rewrite
  EXPECT_EQ(Reason(p, R"({"prompt":"q","response":"r","rewrite":5})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","response":"r","rewrite":" "})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","response":"r","rewrite":{"text":"x"}})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":[1,2]})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":{"a":"x"}})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":{"a":"x","b":""}})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":{"a":"x","b":"y","preferred":"c"}})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":{"a":"x","b":"y","dimension":3}})"), "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","response":"r","rewrite":"n","ab":{"a":"x","b":"y"}})"),
            "bad_pair");
  EXPECT_EQ(Reason(p, R"({"prompt":"q","ab":{"a":"x\u0000","b":"y"}})"), "nul_byte");
}

class IngestPairsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("logs"));
    log_ = dir_.Sub("logs/app.jsonl");
    auto s = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    source_.path = dir_.Sub("logs/*.jsonl");
  }

  IngestPassStats Poll() {
    Ingestor ing({source_}, sampling_, *store_, metrics_);
    auto st = ing.PollOnce();
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : IngestPassStats{};
  }

  std::vector<storage::LabelledPair> Labelled() {
    std::vector<storage::LabelledPair> out;
    EXPECT_TRUE(store_
                    ->ForEachLabelledPair([&](const storage::LabelledPair& lp) {
                      out.push_back(lp);
                      return true;
                    })
                    .ok());
    return out;
  }

  TempDir dir_;
  std::string log_;
  SourceConfig source_;
  SamplingConfig sampling_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(IngestPairsTest, LoggedPairsAreStoredWithTheirLabelsAndSkipGeneration) {
  WriteFile(log_,
            R"({"prompt":"Fix my email a@b.io","response":"no","rewrite":"Sure, a@b.io fixed."})"
            "\n"
            R"({"prompt":"ab preferred","ab":{"a":"left","b":"right","preferred":"a","dimension":"tone"}})"
            "\n"
            R"({"prompt":"ab tie","ab":{"a":"l","b":"r","preferred":"tie"}})"
            "\n"
            R"({"prompt":"ab unlabelled","ab":{"a":"l2","b":"r2"}})"
            "\n"
            R"({"prompt":"plain"})"
            "\n"
            R"({"prompt":"broken","ab":{"a":"only"}})"
            "\n");
  auto s = Poll();
  EXPECT_EQ(s.lines, 6);
  EXPECT_EQ(s.logged_pairs, 4);
  EXPECT_EQ(s.logged_labels, 3);
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(s.stored, 5);  // the prompts of all but the broken line
  auto counts = store_->Counts();
  EXPECT_EQ(counts.queue_generate, 1);  // only "plain" needs generation
  EXPECT_EQ(counts.queue_judge, 1);     // the unlabelled ab pair is judged
  EXPECT_EQ(counts.pairs, 4);
  EXPECT_EQ(counts.labels, 3);

  auto labelled = Labelled();
  ASSERT_EQ(labelled.size(), 3u);
  int seen = 0;
  for (const auto& lp : labelled) {
    EXPECT_EQ(lp.label.source, "log");
    if (lp.pair.generator == "log:rewrite") {
      ++seen;
      // Redacted, with the same placeholder in the prompt and both responses.
      EXPECT_EQ(lp.pair.prompt, "Fix my email <EMAIL_1>");
      EXPECT_EQ(lp.pair.a.text, "no");
      EXPECT_EQ(lp.pair.b.text, "Sure, <EMAIL_1> fixed.");
      EXPECT_EQ(lp.label.p_a, 0.0);  // the rewrite (b) wins
      EXPECT_FALSE(lp.label.tie);
      EXPECT_EQ(lp.label.dimension, kLoggedPairDimension);
    } else if (lp.pair.prompt == "ab preferred") {
      ++seen;
      EXPECT_EQ(lp.label.p_a, 1.0);
      EXPECT_EQ(lp.label.dimension, "tone");
      EXPECT_EQ(lp.label.verdict_ab, "A");
    } else {
      ++seen;
      EXPECT_EQ(lp.pair.prompt, "ab tie");
      EXPECT_TRUE(lp.label.tie);
    }
  }
  EXPECT_EQ(seen, 3);
  auto queued = store_->PeekQueue(storage::Stage::kJudge, 10);
  ASSERT_TRUE(queued.ok());
  ASSERT_EQ(queued->size(), 1u);
  auto pair = store_->GetPair((*queued)[0].id);
  ASSERT_TRUE(pair.ok() && pair->has_value());
  EXPECT_EQ((*pair)->prompt, "ab unlabelled");
  const std::string m = metrics_.Render();
  EXPECT_NE(m.find("rlaif_ingest_logged_pairs_total 4"), std::string::npos) << m;
  EXPECT_NE(m.find("rlaif_ingest_logged_labels_total 3"), std::string::npos);
  EXPECT_NE(m.find("rlaif_ingest_rejected_total{reason=\"bad_pair\"} 1"), std::string::npos);

  // Re-reading the same lines (a truncation, a second file) stores nothing twice.
  WriteFile(dir_.Sub("logs/copy.jsonl"), rlaif::testing::ReadFile(log_));
  auto s2 = Poll();
  EXPECT_EQ(s2.logged_pairs, 0);
  EXPECT_EQ(s2.logged_labels, 0);
  EXPECT_EQ(store_->Counts().pairs, 4);
  EXPECT_EQ(store_->Counts().labels, 3);
}

TEST_F(IngestPairsTest, LoggedPairsBypassTheSamplingRate) {
  sampling_.rate = 0.0;
  WriteFile(log_, R"({"prompt":"q","ab":{"a":"x","b":"y","preferred":"b"}})"
                  "\n"
                  R"({"prompt":"plain"})"
                  "\n");
  auto s = Poll();
  EXPECT_EQ(s.sampled_out, 1);
  EXPECT_EQ(s.logged_pairs, 1);
  EXPECT_EQ(s.logged_labels, 1);
}

TEST_F(IngestPairsTest, LineSamplingKeepsLoggedPairsWhateverTheRate) {
  sampling_.rate = 0.0;  // sampling.key "line": decided before parsing
  WriteFile(log_, R"({"prompt":"q1","response":"r","rewrite":"better"})"
                  "\n"
                  R"({"prompt":"q2","ab":{"a":"x","b":"y"}})"
                  "\n"
                  // A key spelled with an escape is still a logged pair.
                  R"({"prompt":"q3","\u0061b":{"a":"x","b":"y","preferred":"a"}})"
                  "\n"
                  // "ab" as a value, not a key: parsed, then sampled out.
                  R"({"prompt":"ab","response":"rewrite"})"
                  "\n"
                  R"({"prompt":"plain"})"
                  "\n");
  auto s = Poll();
  EXPECT_EQ(s.lines, 5);
  EXPECT_EQ(s.logged_pairs, 3);
  EXPECT_EQ(s.logged_labels, 2);
  EXPECT_EQ(s.sampled_out, 2);
  EXPECT_EQ(store_->Counts().queue_generate, 0);
}

TEST_F(IngestPairsTest, PromptKeyKeepsLoggedPairsToo) {
  sampling_.key = "prompt";
  sampling_.rate = 0.0;
  WriteFile(log_, R"({"prompt":"q","ab":{"a":"x","b":"y","preferred":"b"}})"
                  "\n"
                  R"({"prompt":"plain"})"
                  "\n");
  auto s = Poll();
  EXPECT_EQ(s.sampled_out, 1);
  EXPECT_EQ(s.logged_pairs, 1);
}

std::string Lines(int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i) out += "{\"prompt\": \"prompt " + std::to_string(i) + "\"}\n";
  return out;
}

TEST_F(IngestPairsTest, PausePolicyStopsSamplingWhileThePoolIsFull) {
  sampling_.max_pending = 5;
  sampling_.pending_policy = "pause";
  WriteFile(log_, Lines(0, 20));
  auto s = Poll();
  EXPECT_EQ(s.lines, 20);  // every line is read and committed...
  EXPECT_EQ(s.stored, 5);  // ...but only 5 prompts are admitted
  EXPECT_EQ(s.backpressured, 15);
  EXPECT_EQ(store_->Counts().queue_generate, 5);
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_backpressure_total{policy=\"pause\"} 15"),
            std::string::npos);
  // Downstream catches up (two items done): sampling resumes for two.
  auto items = store_->PeekQueue(storage::Stage::kGenerate, 2);
  ASSERT_TRUE(items.ok());
  for (const auto& it : *items) ASSERT_TRUE(store_->CommitPairs(it, {}).ok());
  AppendFile(log_, Lines(20, 30));
  auto s2 = Poll();
  EXPECT_EQ(s2.stored, 2);
  EXPECT_EQ(s2.backpressured, 8);
  EXPECT_EQ(store_->Counts().queue_generate, 5);
}

TEST_F(IngestPairsTest, KeepNewestDropsTheOldestQueuedPromptsAndStaysBounded) {
  sampling_.max_pending = 5;
  sampling_.pending_policy = "keep_newest";
  WriteFile(log_, Lines(0, 3));
  EXPECT_EQ(Poll().stored, 3);
  // Many polls, many batches: the queue never exceeds the bound.
  for (int round = 0; round < 6; ++round) {
    AppendFile(log_, Lines(3 + round * 40, 3 + (round + 1) * 40));
    auto s = Poll();
    EXPECT_EQ(s.stored, 40);
    EXPECT_EQ(store_->Counts().queue_generate, 5);
  }
  EXPECT_EQ(store_->Counts().prompts, 243);  // dropped from the queue, not from the store
  auto items = store_->PeekQueue(storage::Stage::kGenerate, 10);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 5u);
  std::vector<std::string> queued;
  for (const auto& it : *items) {
    auto p = store_->GetPrompt(it.id);
    ASSERT_TRUE(p.ok() && p->has_value());
    queued.push_back((*p)->text);
  }
  std::sort(queued.begin(), queued.end());
  EXPECT_EQ(queued, (std::vector<std::string>{"prompt 238", "prompt 239", "prompt 240",
                                              "prompt 241", "prompt 242"}));
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_backpressure_total{policy=\"keep_newest\"} 238"),
            std::string::npos)
      << metrics_.Render();
}

}  // namespace
}  // namespace rlaif::daemon
