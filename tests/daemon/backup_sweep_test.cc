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

}  // namespace
}  // namespace rlaif::daemon
