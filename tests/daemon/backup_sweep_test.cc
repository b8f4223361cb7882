// SweepPartialBackups: the hidden directories of backups killed midway are
// removed at start, unless their process still runs; finished backups and
// what is inside them are left alone.
#include <gtest/gtest.h>
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

  auto removed = SweepPartialBackups("", dir.path());
  EXPECT_EQ(removed.size(), 3u);
  EXPECT_FALSE(fs::exists(root / (".nightly.partial-" + dead + "-1")));
  EXPECT_FALSE(fs::exists(root / (".mine.partial-" + self + "-2")));  // a restarted PID 1
  EXPECT_FALSE(fs::exists(root / "2026" / "11" / (".deep.partial-" + dead + "-4")));
  EXPECT_TRUE(fs::exists(root / ".init.partial-1-3"));  // pid 1 runs: maybe a backup in progress
  EXPECT_TRUE(fs::exists(root / "done" / (".inside.partial-" + dead + "-5")));  // a finished backup
  EXPECT_TRUE(fs::exists(root / "keep"));
  EXPECT_TRUE(SweepPartialBackups("", dir.path()).empty());
}

}  // namespace
}  // namespace rlaif::daemon
