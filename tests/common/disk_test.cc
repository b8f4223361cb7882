#include "rlaif/common/disk.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "test_util.h"

namespace rlaif {
namespace {

TEST(DiskTest, DirectoryBytesCountsRegularFilesAndNeverThrows) {
  rlaif::testing::TempDir dir;
  std::filesystem::create_directories(dir.Sub("a/b"));
  rlaif::testing::WriteFile(dir.Sub("a/one"), std::string(100, 'x'));
  rlaif::testing::WriteFile(dir.Sub("a/b/two"), std::string(23, 'y'));
  std::filesystem::create_symlink(dir.Sub("a/one"), dir.Sub("a/link"));  // not counted twice
  EXPECT_EQ(DirectoryBytes(dir.Sub("a")), 123u);
  EXPECT_EQ(DirectoryBytes(dir.Sub("missing")), 0u);
  // A subdirectory that cannot be read is skipped, not an exception
  // (root reads everything, so only the no-throw part is checked then).
  ASSERT_EQ(chmod(dir.Sub("a/b").c_str(), 0), 0);
  const uint64_t bytes = DirectoryBytes(dir.Sub("a"));
  if (geteuid() != 0) EXPECT_EQ(bytes, 100u);
  ASSERT_EQ(chmod(dir.Sub("a/b").c_str(), 0755), 0);
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
