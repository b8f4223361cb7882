// SweepPartialBackups: the hidden directories of backups killed midway are
// removed at start, unless their writer still holds their lock (any PID
// namespace or host on the volume) or, for those without a lock file, their
// process still runs; finished backups and what is inside them are left alone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "rlaif/daemon/backup.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

namespace fs = std::filesystem;

TEST(BackupSweepTest, RemovesPartialBackupsOfDeadProcessesOnly) {
  rlaif::testing::TempDir dir;
  const fs::path root = dir.Sub("backups");
  const std::string dead = "4194303";  // above any pid this machine hands out
  const std::string self = std::to_string(::getpid());
  for (const fs::path& p :
       {root / (".nightly.partial-" + dead + "-1"), root / (".mine.partial-" + self + "-2"),
        root / ".init.partial-1-3", root / "2026" / "11" / (".deep.partial-" + dead + "-4"),
        root / "done" / (".inside.partial-" + dead + "-5"), root / "keep"}) {
    fs::create_directories(p / "store");
    rlaif::testing::WriteFile((p / "store" / "000001.sst").string(), "x");
  }
  rlaif::testing::WriteFile((root / "done" / "backup.json").string(), "{}");
  // With lock files: one held by a writer (its PID looks dead here: another
  // namespace), one left by a writer that died (its PID, 1, runs here).
  const fs::path held = root / (".other-host.partial-" + dead + "-6");
  const fs::path stale = root / ".crashed.partial-1-7";
  for (const fs::path& p : {held, stale}) {
    fs::create_directories(p / "store");
    rlaif::testing::WriteFile((p / ".writing").string(), "");
  }
  const int lock = ::open((held / ".writing").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(lock, 0);
  ASSERT_EQ(::flock(lock, LOCK_EX), 0);

  auto removed = SweepPartialBackups("", dir.path());
  EXPECT_EQ(removed.size(), 4u);
  EXPECT_TRUE(fs::exists(held));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(root / (".nightly.partial-" + dead + "-1")));
  EXPECT_FALSE(fs::exists(root / (".mine.partial-" + self + "-2")));  // a restarted PID 1
  EXPECT_FALSE(fs::exists(root / "2026" / "11" / (".deep.partial-" + dead + "-4")));
  EXPECT_TRUE(fs::exists(root / ".init.partial-1-3"));  // pid 1 runs: maybe a backup in progress
  EXPECT_TRUE(fs::exists(root / "done" / (".inside.partial-" + dead + "-5")));  // a finished backup
  EXPECT_TRUE(fs::exists(root / "keep"));
  EXPECT_TRUE(SweepPartialBackups("", dir.path()).empty());
  ::close(lock);  // its writer ends without finishing: the next sweep takes it
  EXPECT_EQ(SweepPartialBackups("", dir.path()).size(), 1u);
}

// backup_keep: the oldest finished backups (by their manifest's time, not
// their names) beyond N go; the one just made stays whatever its time; what
// is not a readable rlaifd manifest is neither counted nor deleted; a
// deletion that stops midway leaves a hidden partial the sweep removes.
TEST(BackupPruneTest, KeepsTheNewestFinishedBackups) {
  rlaif::testing::TempDir dir;
  const fs::path root = dir.Sub("backups");
  auto backup = [&](const fs::path& p, int64_t at) {
    fs::create_directories(p / "store");
    rlaif::testing::WriteFile((p / "store" / "000001.sst").string(), std::string(5000, 'x'));
    rlaif::testing::WriteFile(
        (p / "backup.json").string(),
        "{\"format\": \"rlaifd-backup\", \"created_at_ms\": " + std::to_string(at) + "}");
  };
  backup(root / "a-newest-name", 1000);  // the oldest, whatever its name says
  backup(root / "b", 2000);
  backup(root / "2026" / "11" / "27", 3000);
  backup(root / "c", 4000);
  backup(root / "just-made", 500);  // a clock stepped back: still kept
  fs::create_directories(root / "foreign");
  rlaif::testing::WriteFile((root / "foreign" / "backup.json").string(), "{not json");
  fs::create_directories(root / ".x.partial-4194303-1");  // a partial one: the sweep's

  EXPECT_TRUE(PruneBackups("", dir.path(), 0, (root / "just-made").string()).empty());
  auto deleted = PruneBackups("", dir.path(), 3, (root / "just-made").string());
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_EQ(deleted[0].dir, (root / "a-newest-name").string());  // oldest first
  EXPECT_EQ(deleted[0].created_at_ms, 1000);
  EXPECT_GE(deleted[0].bytes, 5000u);
  EXPECT_EQ(deleted[1].dir, (root / "b").string());
  for (const char* kept : {"just-made", "c", "2026/11/27", "foreign", ".x.partial-4194303-1"}) {
    EXPECT_TRUE(fs::exists(root / kept)) << kept;
  }
  EXPECT_FALSE(fs::exists(root / "a-newest-name"));
  EXPECT_FALSE(fs::exists(root / "b"));
  // Nothing hidden is left behind by the deletions (only the sweep's own).
  int hidden = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    hidden += e.path().filename().string().starts_with(".") ? 1 : 0;
  }
  EXPECT_EQ(hidden, 1);
  EXPECT_TRUE(PruneBackups(dir.Sub("elsewhere"), dir.path(), 1, "").empty());  // no root yet
}

}  // namespace
}  // namespace rlaif::daemon
