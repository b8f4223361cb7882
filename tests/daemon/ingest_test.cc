#include "rlaif/daemon/ingest.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "test_util.h"

namespace rlaif::daemon {
namespace {

using rlaif::testing::AppendFile;
using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

std::string Line(const std::string& prompt) { return "{\"prompt\": \"" + prompt + "\"}\n"; }

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("logs"));
    log_ = dir_.Sub("logs/app.jsonl");
    OpenStore();
    source_.path = dir_.Sub("logs/*.jsonl");
  }

  void OpenStore() {
    store_.reset();
    auto s = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  IngestPassStats Poll() {
    Ingestor ing({source_}, sampling_, *store_, metrics_);
    auto st = ing.PollOnce();
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : IngestPassStats{};
  }

  std::vector<std::string> StoredPrompts() {
    std::vector<std::string> out;
    EXPECT_TRUE(store_
                    ->ForEachPrompt([&](const storage::PromptRecord& p) {
                      out.push_back(p.text);
                      return true;
                    })
                    .ok());
    std::sort(out.begin(), out.end());
    return out;
  }

  TempDir dir_;
  std::string log_;
  SourceConfig source_;
  SamplingConfig sampling_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
};

TEST(ParseSimpleLineTest, AcceptsAndRejects) {
  std::string p, r;
  ASSERT_TRUE(ParseSimpleLine(R"({"prompt":"hi","response":"yo","x":1})", &p, &r).ok());
  EXPECT_EQ(p, "hi");
  EXPECT_EQ(r, "yo");
  ASSERT_TRUE(ParseSimpleLine(R"({"prompt":"hi"})", &p, &r).ok());
  EXPECT_EQ(r, "");
  auto reason = [&](const std::string& line) {
    Status st = ParseSimpleLine(line, &p, &r);
    EXPECT_FALSE(st.ok()) << line;
    return st.message().substr(0, st.message().find(':'));
  };
  EXPECT_EQ(reason("{not json"), "bad_json");
  EXPECT_EQ(reason("[1]"), "not_object");
  EXPECT_EQ(reason(R"({"response":"x"})"), "missing_prompt");
  EXPECT_EQ(reason(R"({"prompt":3})"), "bad_prompt_type");
  EXPECT_EQ(reason(R"({"prompt":"  "})"), "empty_prompt");
  EXPECT_EQ(reason(R"({"prompt":"a","response":[1]})"), "bad_response_type");
  EXPECT_EQ(reason("{\"prompt\":\"\xff\xfe\"}"), "invalid_utf8");
}

TEST_F(IngestTest, PartialLineWaitsForItsNewline) {
  WriteFile(log_, Line("one") + Line("two") + "{\"prompt\": \"thr");
  auto s1 = Poll();
  EXPECT_EQ(s1.lines, 2);
  EXPECT_EQ(s1.stored, 2);
  AppendFile(log_, "ee\"}\n");
  auto s2 = Poll();
  EXPECT_EQ(s2.lines, 1);
  EXPECT_EQ(s2.stored, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"one", "three", "two"}));
  auto cp = store_->GetSource(log_);
  ASSERT_TRUE(cp.ok() && cp->has_value());
  EXPECT_EQ((*cp)->offset, std::filesystem::file_size(log_));
  EXPECT_EQ((*cp)->lines, 3u);
}

TEST_F(IngestTest, RestartResumesAtCommittedOffsetWithoutDuplicates) {
  WriteFile(log_, Line("a") + Line("b"));
  Poll();
  OpenStore();  // a restart: new store handle, new ingestor
  AppendFile(log_, Line("c"));
  auto s = Poll();
  EXPECT_EQ(s.lines, 1);
  EXPECT_EQ(s.duplicates, 0);
  EXPECT_EQ(store_->Counts().prompts, 3);
  EXPECT_EQ(store_->Counts().queue_generate, 3);
}

TEST_F(IngestTest, BadLinesAreDeadLetteredAndIngestContinues) {
  WriteFile(log_, Line("ok1") + "garbage\n" + "{\"prompt\": 5}\n" + "\n" + Line("ok2"));
  auto s = Poll();
  EXPECT_EQ(s.lines, 5);
  EXPECT_EQ(s.stored, 2);
  EXPECT_EQ(s.rejected, 2);
  std::vector<std::string> reasons;
  ASSERT_TRUE(store_
                  ->ForEachDeadLetter([&](const storage::DeadLetter& d) {
                    reasons.push_back(d.reason);
                    EXPECT_EQ(d.stage, "ingest");
                    EXPECT_NE(d.ref.find(log_ + ":"), std::string::npos);
                    return true;
                  })
                  .ok());
  std::sort(reasons.begin(), reasons.end());
  EXPECT_EQ(reasons, (std::vector<std::string>{"bad_json", "bad_prompt_type"}));
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_rejected_total{reason=\"bad_json\"} 1"),
            std::string::npos);
}

TEST_F(IngestTest, OverLongLineIsCutOffAndTheRestContinues) {
  source_.max_line_bytes = 100;
  WriteFile(log_, Line("before") + Line(std::string(500, 'x')) + Line("after"));
  auto s = Poll();
  EXPECT_EQ(s.rejected, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"after", "before"}));
  // An over-long line still unterminated waits; once terminated it is rejected.
  AppendFile(log_, "{\"prompt\": \"" + std::string(300, 'y'));
  Poll();
  AppendFile(log_, "\"}\n" + Line("tail"));
  auto s2 = Poll();
  EXPECT_EQ(s2.rejected, 1);
  EXPECT_EQ(s2.stored, 1);
}

TEST_F(IngestTest, TruncationRestartsFromZero) {
  WriteFile(log_, Line("old1") + Line("old2") + Line("old3"));
  Poll();
  // Truncate in place (same inode) and write less than before.
  { FILE* f = std::fopen(log_.c_str(), "w"); std::fclose(f); }
  AppendFile(log_, Line("new1"));
  auto s = Poll();
  EXPECT_EQ(s.stored, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"new1", "old1", "old2", "old3"}));
}

TEST_F(IngestTest, RenameAndCreateRotationReadsTheNewFileFromItsStart) {
  WriteFile(log_, Line("first"));
  Poll();
  std::filesystem::rename(log_, log_ + ".1");
  WriteFile(log_, Line("second") + Line("third"));
  auto s = Poll();
  EXPECT_EQ(s.stored, 2);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"first", "second", "third"}));
}

TEST_F(IngestTest, StartAtEndSkipsExistingContentOfNewFiles) {
  source_.start_at = "end";
  WriteFile(log_, Line("history1") + Line("history2"));
  EXPECT_EQ(Poll().stored, 0);
  AppendFile(log_, Line("live"));
  EXPECT_EQ(Poll().stored, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"live"}));
}

TEST_F(IngestTest, DedupeOnAndOff) {
  WriteFile(log_, Line("same") + Line("same"));
  auto s = Poll();
  EXPECT_EQ(s.stored, 1);
  EXPECT_EQ(s.duplicates, 1);

  sampling_.dedupe = false;
  AppendFile(log_, Line("same") + Line("same"));
  auto s2 = Poll();
  EXPECT_EQ(s2.stored, 2);
  EXPECT_EQ(store_->Counts().prompts, 3);
}

TEST_F(IngestTest, SamplingRateZeroStoresNothingButConsumesLines) {
  sampling_.rate = 0.0;
  WriteFile(log_, Line("a") + Line("b"));
  auto s = Poll();
  EXPECT_EQ(s.lines, 2);
  EXPECT_EQ(s.stored, 0);
  EXPECT_EQ(s.sampled_out, 2);
}

TEST_F(IngestTest, SamplingIsDeterministicByPrompt) {
  sampling_.rate = 0.5;
  std::string content;
  for (int i = 0; i < 200; ++i) content += Line("prompt " + std::to_string(i));
  WriteFile(log_, content);
  auto s = Poll();
  EXPECT_GT(s.stored, 60);
  EXPECT_LT(s.stored, 140);
  // The same prompts in another file are sampled the same way (all duplicates).
  WriteFile(dir_.Sub("logs/other.jsonl"), content);
  auto s2 = Poll();
  EXPECT_EQ(s2.stored, 0);
  EXPECT_EQ(s2.duplicates, s.stored);
}

}  // namespace
}  // namespace rlaif::daemon
