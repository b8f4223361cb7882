#include "rlaif/common/disk.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>

#include "rlaif/common/process_stats.h"
#include "test_util.h"

namespace rlaif {
namespace {

TEST(DiskTest, DirectoryBytesCountsTheSpaceFilesTakeAndNeverThrows) {
  rlaif::testing::TempDir dir;
  std::filesystem::create_directories(dir.Sub("a/b"));
  // Random bytes: a compressing filesystem would store repeated ones in less.
  std::mt19937 rng(1);
  auto noise = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  };
  rlaif::testing::WriteFile(dir.Sub("a/one"), noise(100000));
  rlaif::testing::WriteFile(dir.Sub("a/b/two"), noise(23000));
  std::filesystem::create_symlink(dir.Sub("a/one"), dir.Sub("a/link"));  // not counted twice
  const uint64_t all = DirectoryBytes(dir.Sub("a"));
  EXPECT_GE(all, 123000u);
  EXPECT_LT(all, 123000u + 2 * 65536);  // blocks, not the symlink's target again
  const uint64_t one = DirectoryBytes(dir.Sub("a")) - DirectoryBytes(dir.Sub("a/b"));
  EXPECT_GE(one, 100000u);
  EXPECT_EQ(DirectoryBytes(dir.Sub("missing")), 0u);
  // A subdirectory that cannot be read is skipped, not an exception
  // (root reads everything, so only the no-throw part is checked then).
  ASSERT_EQ(chmod(dir.Sub("a/b").c_str(), 0), 0);
  const uint64_t readable = DirectoryBytes(dir.Sub("a"));
  if (geteuid() != 0) EXPECT_EQ(readable, one);
  ASSERT_EQ(chmod(dir.Sub("a/b").c_str(), 0755), 0);
  // Hard-linked files (a backup's store files and the live store's) count
  // in both trees, and in neither when only unshared space is asked for.
  std::filesystem::create_hard_link(dir.Sub("a/one"), dir.Sub("a/b/one-again"));
  EXPECT_GE(DirectoryBytes(dir.Sub("a/b")), 123000u);
  EXPECT_GE(DirectoryBytes(dir.Sub("a/b"), true), 23000u);
  EXPECT_LT(DirectoryBytes(dir.Sub("a/b"), true), 23000u + 65536);  // a/one is outside a/b
  // Both links inside a/: deleting a/ frees the file once.
  EXPECT_GE(DirectoryBytes(dir.Sub("a"), true), 123000u);
  EXPECT_LT(DirectoryBytes(dir.Sub("a"), true), 123000u + 2 * 65536);
}

TEST(DiskTest, ProcessStatsReadThisProcess) {
  const ProcessStats ps = ReadProcessStats();
  EXPECT_GT(ps.resident_bytes, 1u << 20);
  EXPECT_GE(ps.virtual_bytes, ps.resident_bytes);
  EXPECT_GT(ps.open_fds, 2);  // stdin, stdout, stderr at least
  EXPECT_GE(ps.max_fds, ps.open_fds);
  EXPECT_GE(ps.threads, 1);
  EXPECT_GE(ps.cpu_seconds, 0);
  ReleaseFreeMemory();  // no effect to check beyond not failing
}

TEST(DiskTest, SpaceOfAFilesystem) {
  rlaif::testing::TempDir dir;
  const FilesystemSpace space = SpaceOf(dir.path());
  ASSERT_TRUE(space.known);
  EXPECT_GT(space.capacity, 0u);
  EXPECT_LE(space.free, space.capacity);
  EXPECT_FALSE(SpaceOf(dir.Sub("no/such/dir")).known);
}

}  // namespace
}  // namespace rlaif
