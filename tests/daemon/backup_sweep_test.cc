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

// backup_keep: the oldest finished backups of this store (by their
// manifest's time, not their names) beyond N go; the one just made stays
// whatever its time; another store's backups on the same volume, backups
// pinned with a KEEP file, and what is not a readable rlaifd manifest with a
// store id are neither counted nor deleted.
TEST(BackupPruneTest, KeepsTheNewestFinishedBackupsOfThisStore) {
  rlaif::testing::TempDir dir;
  const fs::path root = dir.Sub("backups");
  // `source`: the data dir the backup was taken of ("" = this one, written
  // with a trailing '/' as a config may have it).
  auto backup = [&](const fs::path& p, int64_t at, const std::string& store = "store-a",
                    const std::string& source = "") {
    fs::create_directories(p / "store");
    rlaif::testing::WriteFile((p / "store" / "000001.sst").string(), std::string(5000, 'x'));
    rlaif::testing::WriteFile(
        (p / "backup.json").string(),
        "{\"format\": \"rlaifd-backup\", \"created_at_ms\": " + std::to_string(at) +
            (store.empty() ? "" : ", \"store_id\": \"" + store + "\"") +
            ", \"source_data_dir\": \"" + (source.empty() ? dir.path() + "/" : source) + "\"}");
  };
  backup(root / "a-newest-name", 1000);  // the oldest, whatever its name says
  backup(root / "b", 2000);
  backup(root / "2026" / "11" / "27", 3000);
  backup(root / "c", 4000);
  backup(root / "just-made", 500);  // a clock stepped back: still kept
  backup(root / "other-store", 100, "store-b");
  backup(root / "clone", 150, "store-a", dir.Sub("staging"));  // restored elsewhere
  backup(root / "before-store-ids", 200, "");
  backup(root / "pinned", 300);
  rlaif::testing::WriteFile((root / "pinned" / "KEEP").string(), "pre-upgrade\n");
  fs::create_directories(root / "foreign");
  rlaif::testing::WriteFile((root / "foreign" / "backup.json").string(), "{not json");
  fs::create_directories(root / ".x.partial-4194303-1");  // a partial one: the sweep's
  fs::create_symlink(root / "b", root / "link-to-b");
  const std::string just_made = (root / "just-made").string();

  EXPECT_TRUE(PruneBackups("", dir.path(), 0, just_made, "store-a").empty());
  EXPECT_TRUE(PruneBackups("", dir.path(), 3, just_made, "").empty());  // no identity: nothing
  auto deleted = PruneBackups("", dir.path(), 3, just_made, "store-a");
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_EQ(deleted[0].dir, (root / "a-newest-name").string());  // oldest first
  EXPECT_EQ(deleted[0].created_at_ms, 1000);
  EXPECT_GE(deleted[0].bytes, 5000u);
  EXPECT_EQ(deleted[1].dir, (root / "b").string());
  for (const char* kept : {"just-made", "c", "2026/11/27", "other-store", "clone",
                           "before-store-ids", "pinned", "foreign", ".x.partial-4194303-1"}) {
    EXPECT_TRUE(fs::exists(root / kept)) << kept;
  }
  EXPECT_FALSE(fs::exists(root / "a-newest-name"));
  EXPECT_FALSE(fs::exists(root / "b"));
  EXPECT_TRUE(fs::is_symlink(root / "link-to-b"));  // the link itself is not followed
  // Nothing hidden is left behind by the deletions (only the sweep's own).
  int hidden = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    hidden += e.path().filename().string().starts_with(".") ? 1 : 0;
  }
  EXPECT_EQ(hidden, 1);
  // keep 1: only the one just made stays (of this store).
  deleted = PruneBackups("", dir.path(), 1, just_made, "store-a");
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_FALSE(fs::exists(root / "c"));
  EXPECT_FALSE(fs::exists(root / "2026/11/27"));
  EXPECT_TRUE(fs::exists(root / "just-made"));
  EXPECT_TRUE(PruneBackups(dir.Sub("elsewhere"), dir.path(), 1, just_made, "store-a").empty());
}

// A deletion that stopped midway (kill -9 between the rename and the end of
// the removal) leaves a hidden partial directory that the next start's
// sweep removes: never half a backup that looks whole.
TEST(BackupPruneTest, AnInterruptedDeletionIsSweptAtTheNextStart) {
  rlaif::testing::TempDir dir;
  const fs::path root = dir.Sub("backups");
  const fs::path left = root / ".old.partial-4194303-1700000000000";  // as PruneBackups renames
  fs::create_directories(left / "store");
  rlaif::testing::WriteFile((left / "backup.json").string(), "{}");
  auto removed = SweepPartialBackups("", dir.path());
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_FALSE(fs::exists(left));
}

}  // namespace
}  // namespace rlaif::daemon
