// The store on a full disk: a size-limited tmpfs mounted by the test (root
// only; skipped with the reason otherwise). Writes fail with kIoError and a
// message naming the cause, reads keep working, nothing committed is lost,
// and writes resume once space returns — in the same process and after a
// reopen.
#include <sys/mount.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <chrono>
#include <vector>

#include "rlaif/storage/store.h"
#include "test_util.h"

namespace rlaif::storage {
namespace {

using rlaif::testing::TempDir;

// Mounts a tmpfs of `mib` MiB at `dir`; "" on success, else why not.
std::string MountTmpfs(const std::string& dir, int mib) {
  std::string opts = "size=" + std::to_string(mib) + "m";
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
    return std::string("mount -t tmpfs: ") + std::strerror(errno);
  }
  return "";
}

// Writes `path` until ENOSPC.
void Fill(const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  std::string chunk(64 << 10, 'x');
  while (out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()))) {
  }
  out.close();
  // Top up the last partial block.
  std::ofstream more(path, std::ios::binary | std::ios::app);
  while (more.put('x')) {
  }
}

std::vector<PromptRecord> Prompts(int from, int n) {
  std::vector<PromptRecord> out;
  for (int i = from; i < from + n; ++i) {
    PromptRecord p;
    p.id = "p" + std::to_string(i);
    p.text = "prompt number " + std::to_string(i) + std::string(2000, 'x');
    p.source_path = "/logs/a.jsonl";
    p.source_offset = static_cast<uint64_t>(i);
    p.ingested_at_ms = 1000;
    out.push_back(p);
  }
  return out;
}

SourceCheckpoint Cp(uint64_t offset) {
  SourceCheckpoint c;
  c.path = "/logs/a.jsonl";
  c.offset = offset;
  return c;
}

class StoreDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mnt_ = dir_.Sub("fs");
    std::filesystem::create_directories(mnt_);
    // RocksDB clears a no-space error it met itself only once a memtable's
    // worth (write_buffer_size, 64 MiB) is free beyond what its WAL holds.
    std::string why = MountTmpfs(mnt_, 192);
    if (!why.empty()) GTEST_SKIP() << "cannot make a small filesystem here: " << why;
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) umount2(mnt_.c_str(), MNT_DETACH);
  }

  TempDir dir_;
  std::string mnt_;
  bool mounted_ = false;
};

TEST_F(StoreDiskFullTest, RefusesWritesWhileFullAndResumes) {
  const std::string path = mnt_ + "/store";
  {
    auto store = Store::Open({.path = path});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->CommitIngest(Cp(100), Prompts(0, 100), {}, nullptr).ok());
    EXPECT_TRUE((*store)->FreeSpaceStatus().ok());

    Fill(mnt_ + "/filler");
    // Said before any write meets it (what /v1/status reports while paused).
    Status space = (*store)->FreeSpaceStatus();
    EXPECT_EQ(space.code(), StatusCode::kIoError);
    EXPECT_NE(space.message().find("below the reserve"), std::string::npos) << space.message();
    for (int attempt = 0; attempt < 5; ++attempt) {
      Status st = (*store)->CommitIngest(Cp(200), Prompts(100, 100), {}, nullptr);
      ASSERT_FALSE(st.ok());
      EXPECT_EQ(st.code(), StatusCode::kIoError);
      EXPECT_NE(st.message().find("no space left"), std::string::npos) << st.message();
      EXPECT_FALSE((*store)->CheckWritable().ok());
    }
    // Reads keep working and see exactly what was committed.
    EXPECT_EQ((*store)->Counts().prompts, 100);
    auto p = (*store)->GetPrompt("p99");
    ASSERT_TRUE(p.ok() && p->has_value());
    auto none = (*store)->GetPrompt("p100");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    auto src = (*store)->GetSource("/logs/a.jsonl");
    ASSERT_TRUE(src.ok() && src->has_value());
    EXPECT_EQ((*src)->offset, 100u);

    std::filesystem::remove(mnt_ + "/filler");
    EXPECT_TRUE((*store)->FreeSpaceStatus().ok());
    EXPECT_TRUE((*store)->CheckWritable().ok());
    ASSERT_TRUE((*store)->CommitIngest(Cp(200), Prompts(100, 100), {}, nullptr).ok());
    EXPECT_EQ((*store)->Counts().prompts, 200);
  }
  auto store = Store::Open({.path = path});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ((*store)->Counts().prompts, 200);
  int n = 0;
  ASSERT_TRUE((*store)->ForEachPrompt([&](const PromptRecord&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 200);
}

// Without the free-space guard RocksDB meets ENOSPC itself (the case of a
// disk filled by another process between the check and the write). Before
// RocksDB's log went to spdlog this aborted the process (RocksDB 7.8 asserts
// when writing its LOG file again after a failed write).
TEST_F(StoreDiskFullTest, RocksDbOwnNoSpaceErrorIsSurvived) {
  const std::string path = mnt_ + "/store";
  auto store = Store::Open({.path = path, .sync = false, .min_free_bytes = 0});
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->CommitIngest(Cp(10), Prompts(0, 10), {}, nullptr).ok());
  Fill(mnt_ + "/filler");
  int failed = 0;
  // The WAL has preallocated space: write until RocksDB runs out, then on.
  for (int i = 0; i < 2000 && failed < 20; ++i) {
    Status st = (*store)->CommitIngest(Cp(20 + i), Prompts(10 + i * 50, 50), {}, nullptr);
    if (!st.ok()) {
      ++failed;
      // kUnavailable while RocksDB's own recovery is in progress.
      EXPECT_TRUE(st.code() == StatusCode::kIoError || st.code() == StatusCode::kUnavailable)
          << st.ToString();
    }
  }
  EXPECT_GT(failed, 0);
  std::filesystem::remove(mnt_ + "/filler");
  Status st;
  for (int i = 0; i < 300; ++i) {  // RocksDB retries its own recovery every 5 s
    st = (*store)->CheckWritable();
    if (st.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE((*store)->CommitIngest(Cp(5000), Prompts(5000, 10), {}, nullptr).ok());
  auto p = (*store)->GetPrompt("p5009");
  ASSERT_TRUE(p.ok() && p->has_value());
  EXPECT_TRUE((*store)->GetPrompt("p9").ok());
}

}  // namespace
}  // namespace rlaif::storage
