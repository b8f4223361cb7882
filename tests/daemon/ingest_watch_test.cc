// New files matching a source glob: noticed through inotify at once, or by
// the next poll with watch "poll".
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "rlaif/daemon/ingest.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

class IngestWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("logs"));
    auto s = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    source_.path = dir_.Sub("logs/*.jsonl");
  }

  TempDir dir_;
  SourceConfig source_;
  SamplingConfig sampling_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(IngestWatchTest, InotifyWakesUpForANewMatchingFileOnly) {
  Ingestor ing({source_}, sampling_, *store_, metrics_);
  if (ing.WatchMode() != "inotify") GTEST_SKIP() << "inotify is not available here";
  ASSERT_TRUE(ing.PollOnce().ok());  // sets up the watches

  // A file that does not match the glob does not end the wait.
  auto t0 = std::chrono::steady_clock::now();
  std::thread other([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    WriteFile(dir_.Sub("logs/notes.txt"), "x\n");
  });
  EXPECT_FALSE(ing.WaitForNewFiles(0.5));
  other.join();
  EXPECT_GE(SecondsSince(t0), 0.45);

  // A matching one ends it at once, long before the 20 s timeout.
  t0 = std::chrono::steady_clock::now();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    WriteFile(dir_.Sub("logs/new.jsonl.tmp"), "{\"prompt\": \"fresh\"}\n");
    std::filesystem::rename(dir_.Sub("logs/new.jsonl.tmp"), dir_.Sub("logs/new.jsonl"));
  });
  EXPECT_TRUE(ing.WaitForNewFiles(20.0));
  writer.join();
  EXPECT_LT(SecondsSince(t0), 5.0);
  auto s = ing.PollOnce();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->stored, 1);
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_inotify_wakeups_total 1"), std::string::npos);
}

TEST_F(IngestWatchTest, PollModeWaitsTheFullIntervalAndTheNextPollFindsTheFile) {
  source_.watch = "poll";
  Ingestor ing({source_}, sampling_, *store_, metrics_);
  EXPECT_EQ(ing.WatchMode(), "poll");
  ASSERT_TRUE(ing.PollOnce().ok());
  auto t0 = std::chrono::steady_clock::now();
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    WriteFile(dir_.Sub("logs/new.jsonl"), "{\"prompt\": \"fresh\"}\n");
  });
  EXPECT_FALSE(ing.WaitForNewFiles(0.4));
  writer.join();
  EXPECT_GE(SecondsSince(t0), 0.35);
  auto s = ing.PollOnce();
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->stored, 1);
}

TEST_F(IngestWatchTest, WakeEndsAWaitPromptly) {
  Ingestor ing({source_}, sampling_, *store_, metrics_);
  ASSERT_TRUE(ing.PollOnce().ok());
  auto t0 = std::chrono::steady_clock::now();
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ing.Wake();
  });
  EXPECT_FALSE(ing.WaitForNewFiles(20.0));
  waker.join();
  EXPECT_LT(SecondsSince(t0), 5.0);
}

}  // namespace
}  // namespace rlaif::daemon
