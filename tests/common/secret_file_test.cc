#include "rlaif/common/secret_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "test_util.h"

namespace rlaif {
namespace {

using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

constexpr const char* kKey = "sk-proj-AbC_dEf-0123456789";

// What a Secret volume, `echo > file` or an editor leave around a key.
TEST(SecretFileTest, ReadsTheKeyWithoutWhatSurroundsIt) {
  TempDir dir;
  for (const std::string& text :
       {std::string(kKey), std::string(kKey) + "\n", std::string(kKey) + "\r\n",
        "  " + std::string(kKey) + " \n\n", "\xEF\xBB\xBF" + std::string(kKey) + "\n"}) {
    WriteFile(dir.Sub("key"), text);
    auto key = ReadSecretFile(dir.Sub("key"), "judge.api_key_file");
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(*key, kKey);
  }
}

// Each refusal names the config key and why, never the content or the
// path (a key pasted in as the path must not reach a log), and returns at
// once: a FIFO with no writer must not hang the daemon's loop.
TEST(SecretFileTest, RefusesWhatIsNotOneKeyAndNeverQuotesIt) {
  TempDir dir;
  const std::string secret_path = dir.Sub("sk-proj-pasted/in-as-a-path");
  struct Case {
    std::string name;
    std::string content;  // written unless empty and `make` is set
    std::string why;
  };
  WriteFile(dir.Sub("empty"), "");
  WriteFile(dir.Sub("blank"), " \n\r\n");
  WriteFile(dir.Sub("two-lines"), std::string(kKey) + "\n" + kKey + "\n");
  WriteFile(dir.Sub("control"), std::string(kKey) + "\x01");
  WriteFile(dir.Sub("non-ascii"), std::string(kKey) + "\xC3\xA9");
  WriteFile(dir.Sub("huge"), std::string(17 * 1024, 'k'));
  std::filesystem::create_directories(dir.Sub("a-directory"));
  ASSERT_EQ(mkfifo(dir.Sub("fifo").c_str(), 0600), 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir.Sub("empty"), "is empty"},
      {dir.Sub("blank"), "is empty"},
      {dir.Sub("two-lines"), "more than one line"},
      {dir.Sub("control"), "control characters"},
      {dir.Sub("non-ascii"), "non-ASCII"},
      {dir.Sub("huge"), "over 16 KiB"},
      {dir.Sub("a-directory"), "not a regular file"},
      {dir.Sub("fifo"), "not a regular file"},
      {secret_path, "cannot open the file: No such file or directory"},
  };
  for (const auto& [path, why] : cases) {
    SCOPED_TRACE(path);
    auto key = ReadSecretFile(path, "judge.api_key_file");
    ASSERT_FALSE(key.ok());
    const std::string m = key.status().message();
    EXPECT_EQ(m.rfind("judge.api_key_file: ", 0), 0u) << m;
    EXPECT_NE(m.find(why), std::string::npos) << m;
    EXPECT_EQ(m.find("sk-"), std::string::npos) << m;
    EXPECT_EQ(m.find(dir.path()), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace rlaif
