#include "rlaif/daemon/ingest.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

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

// A source whose glob matches no file is reported (Globs: the operator's
// "is my path right?"), from the first poll until a file appears.
TEST_F(IngestTest, ASourceMatchingNoFileIsReportedUntilOneAppears) {
  SourceConfig missing;
  missing.path = dir_.Sub("gone/*.jsonl");  // the directory does not exist
  Ingestor ing({source_, missing}, sampling_, *store_, metrics_);
  EXPECT_TRUE(ing.Globs().empty());  // before the first poll: not known
  WriteFile(log_, Line("a"));
  ASSERT_TRUE(ing.PollOnce().ok());
  auto globs = ing.Globs();
  ASSERT_EQ(globs.size(), 2u);
  EXPECT_EQ(globs[0].glob, source_.path);
  EXPECT_EQ(globs[0].files, 1);
  EXPECT_LT(globs[0].empty_since_s, 0);
  EXPECT_EQ(globs[1].glob, missing.path);
  EXPECT_EQ(globs[1].files, 0);
  const double since = globs[1].empty_since_s;
  EXPECT_GE(since, 0);
  ASSERT_TRUE(ing.PollOnce().ok());
  EXPECT_EQ(ing.Globs()[1].empty_since_s, since);  // since the first poll that found none
  std::filesystem::create_directories(dir_.Sub("gone"));
  WriteFile(dir_.Sub("gone/b.jsonl"), Line("b"));
  ASSERT_TRUE(ing.PollOnce().ok());
  EXPECT_EQ(ing.Globs()[1].files, 1);
  EXPECT_LT(ing.Globs()[1].empty_since_s, 0);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"a", "b"}));
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

// Rejections are logged without flooding: the first pass's at once (count,
// file:offset, reason and the parser's detail, never the line's text), then
// nothing more within the minute.
TEST_F(IngestTest, RejectedLinesAreLoggedAtMostOnceAMinuteWithoutTheirText) {
  std::ostringstream logs;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(logs)));
  WriteFile(log_, Line("ok1") + "garbage secret-text\n" + "{\"prompt\": 5}\n");
  {
    Ingestor ing({source_}, sampling_, *store_, metrics_);
    ASSERT_TRUE(ing.PollOnce().ok());
    AppendFile(log_, "more garbage\n" + Line("ok2"));
    auto second = ing.PollOnce();
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(second->rejected, 1);
  }
  spdlog::set_default_logger(previous);
  const std::string text = logs.str();
  size_t warnings = 0;
  for (size_t at = text.find("rejected"); at != std::string::npos;
       at = text.find("rejected", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 2u) << text;  // one warning (its text names the counter too)
  EXPECT_NE(text.find("ingest: 2 line(s) rejected, the first at " + log_ + ":" +
                      std::to_string(Line("ok1").size()) + ": bad_json: "),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("secret-text"), std::string::npos) << text;
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

// start_at "end" skips what the files hold when the source is first read;
// a file that appears later (here: while rlaifd is down, each Poll() being a
// restart) is new traffic, read from its start.
TEST_F(IngestTest, StartAtEndSkipsOnlyWhatIsThereWhenTheSourceIsFirstRead) {
  source_.start_at = "end";
  WriteFile(log_, Line("history1") + Line("history2"));
  EXPECT_EQ(Poll().stored, 0);
  AppendFile(log_, Line("live"));
  EXPECT_EQ(Poll().stored, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"live"}));
  WriteFile(dir_.Sub("logs/b.jsonl"), Line("new1") + Line("new2"));
  EXPECT_EQ(Poll().stored, 2);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"live", "new1", "new2"}));
}

// A source added later with start_at "end", in a directory where another
// source already has checkpoints: its own files have none, so their history
// is skipped; the other source's checkpoints do not count for it.
TEST_F(IngestTest, StartAtEndIsDecidedPerSourceNotPerDirectory) {
  source_.path = dir_.Sub("logs/api-*.jsonl");
  WriteFile(dir_.Sub("logs/api-1.jsonl"), Line("api1"));
  EXPECT_EQ(Poll().stored, 1);
  SourceConfig batch;
  batch.path = dir_.Sub("logs/batch-*.jsonl");
  batch.start_at = "end";
  WriteFile(dir_.Sub("logs/batch-1.jsonl"), Line("history1") + Line("history2"));
  {
    Ingestor ing({source_, batch}, sampling_, *store_, metrics_);
    auto st = ing.PollOnce();
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(st->stored, 0);
  }
  AppendFile(dir_.Sub("logs/batch-1.jsonl"), Line("live"));
  Ingestor ing({source_, batch}, sampling_, *store_, metrics_);
  auto st = ing.PollOnce();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->stored, 1);
  EXPECT_EQ(StoredPrompts(), (std::vector<std::string>{"api1", "live"}));
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

// sampling.key "line" (the default): the rate is decided by a hash of the
// raw line, before parsing.
std::string Lines(int from, int to, const std::string& extra = "") {
  std::string out;
  for (int i = from; i < to; ++i) {
    out += "{\"prompt\": \"prompt " + std::to_string(i) + "\"" + extra + "}\n";
  }
  return out;
}

TEST_F(IngestTest, LineSamplingIsDeterministicAcrossRestartsAndReReads) {
  sampling_.rate = 0.3;
  WriteFile(log_, Lines(0, 1000));
  auto s = Poll();
  EXPECT_EQ(s.lines, 1000);
  EXPECT_EQ(s.stored + s.sampled_out, 1000);
  const auto once = StoredPrompts();
  ASSERT_FALSE(once.empty());

  // The same bytes read by another store, in two passes with a restart in
  // between (a new Ingestor resuming at the committed offset), keep the same lines.
  std::filesystem::remove_all(dir_.Sub("store"));
  OpenStore();
  WriteFile(log_, Lines(0, 400));
  Poll();
  AppendFile(log_, Lines(400, 1000));
  Poll();
  EXPECT_EQ(StoredPrompts(), once);

  // Re-read from 0 after a truncation in place: same decisions, nothing new.
  WriteFile(log_, Lines(0, 1000));  // same size and first bytes: not re-read
  EXPECT_EQ(Poll().stored, 0);
  WriteFile(log_, Lines(0, 10));  // smaller: truncated, re-read from 0
  EXPECT_EQ(Poll().stored, 0);
  EXPECT_EQ(StoredPrompts(), once);
}

TEST_F(IngestTest, LineSamplingRateIsAccurateOnALargeSample) {
  for (double rate : {0.01, 0.1, 0.5}) {
    std::filesystem::remove_all(dir_.Sub("logs"));
    std::filesystem::create_directories(dir_.Sub("logs"));
    std::filesystem::remove_all(dir_.Sub("store"));
    OpenStore();
    sampling_.rate = rate;
    const int n = 40000;
    WriteFile(log_, Lines(0, n, ", \"model\": \"m\""));
    auto s = Poll();
    EXPECT_EQ(s.lines, n);
    EXPECT_EQ(s.stored + s.sampled_out, n);
    // Within 5 binomial standard deviations.
    const double expected = rate * n, sd = std::sqrt(n * rate * (1 - rate));
    EXPECT_NEAR(static_cast<double>(s.stored), expected, 5 * sd) << "rate " << rate;
  }
}

TEST_F(IngestTest, LineSamplingDropsMalformedLinesUnparsedAsSampledOut) {
  sampling_.rate = 0.0;
  WriteFile(log_, "{not json\n" + Line("a") + "\xff\xfe\n");
  auto s = Poll();
  EXPECT_EQ(s.lines, 3);
  EXPECT_EQ(s.sampled_out, 3);
  EXPECT_EQ(s.rejected, 0);
  // Over-long lines are still rejected (decided by their length alone).
  source_.max_line_bytes = 10;
  AppendFile(log_, Line("a long prompt here"));
  auto s2 = Poll();
  EXPECT_EQ(s2.rejected, 1);
  EXPECT_EQ(s2.sampled_out, 0);
}

TEST_F(IngestTest, LineSamplingTreatsEachRequestOnItsOwn) {
  // The same prompt logged by different requests (here: different models) is
  // sampled per line, so a popular prompt is neither kept nor dropped wholesale.
  sampling_.rate = 0.5;
  sampling_.dedupe = false;
  WriteFile(log_, Lines(0, 300, ", \"model\": \"a\"") + Lines(0, 300, ", \"model\": \"b\""));
  auto s = Poll();
  std::map<std::string, int> per_prompt;
  for (const auto& p : StoredPrompts()) ++per_prompt[p];
  int once = 0;
  for (const auto& [p, n] : per_prompt) once += n == 1;
  EXPECT_GT(once, 50);  // ~150 expected: kept in one request and not the other
  EXPECT_EQ(s.stored + s.sampled_out, 600);
}

TEST_F(IngestTest, PromptKeySamplesAPromptWholesaleAndStillClassifiesBadLines) {
  sampling_.key = "prompt";
  sampling_.rate = 0.5;
  sampling_.dedupe = false;
  WriteFile(log_, Lines(0, 300, ", \"model\": \"a\"") + Lines(0, 300, ", \"model\": \"b\""));
  auto s = Poll();
  std::map<std::string, int> per_prompt;
  for (const auto& p : StoredPrompts()) ++per_prompt[p];
  EXPECT_GT(per_prompt.size(), 90u);
  EXPECT_LT(per_prompt.size(), 210u);
  for (const auto& [p, n] : per_prompt) EXPECT_EQ(n, 2) << p;  // both requests or neither
  EXPECT_EQ(s.sampled_out, 600 - s.stored);

  sampling_.rate = 0.0;
  AppendFile(log_, "{not json\n" + Line("x"));
  auto s2 = Poll();
  EXPECT_EQ(s2.rejected, 1);  // parsed before sampling: classified by reason
  EXPECT_EQ(s2.sampled_out, 1);
}

}  // namespace
}  // namespace rlaif::daemon
