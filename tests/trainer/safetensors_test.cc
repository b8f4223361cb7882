// The safetensors reader (trainer/src/safetensors.h): what a well-formed file
// gives, the dtype conversions, and the clear refusal of every malformed
// header. Files are built byte by byte here; the GPT-2 fixture
// (tests/trainer/data/gpt2_tiny/) is a file written by an independent writer.
#include "safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace rlaif::trainer {
namespace {

using json = nlohmann::json;

// 8-byte little-endian header length, the header, the data.
std::string Build(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>(n >> (8 * i) & 0xff);
  return out + header + data;
}

std::string Le32(const std::vector<float>& v) {
  std::string out;
  for (float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    for (int i = 0; i < 4; ++i) out += static_cast<char>(bits >> (8 * i) & 0xff);
  }
  return out;
}

std::string Le16(const std::vector<uint16_t>& v) {
  std::string out;
  for (uint16_t h : v) out += static_cast<char>(h & 0xff), out += static_cast<char>(h >> 8);
  return out;
}

TEST(SafeTensors, ParsesTensorsAndMetadata) {
  const std::string data = Le32({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f}) + Le16({0x3c00, 0xc000});
  const json header = {
      {"__metadata__", {{"format", "pt"}}},
      {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
      {"b", {{"dtype", "F16"}, {"shape", {2}}, {"data_offsets", {24, 28}}}},
      {"empty", {{"dtype", "F32"}, {"shape", {0, 4}}, {"data_offsets", {28, 28}}}}};
  auto f = SafeTensorsFile::Parse(Build(header.dump(), data));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 3u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafeTensor* a = f->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->numel, 6);
  auto av = f->ToFloat32(*a);
  ASSERT_TRUE(av.ok());
  EXPECT_EQ(*av, (std::vector<float>{1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.5f}));
  auto bv = f->ToFloat32(*f->Find("b"));
  ASSERT_TRUE(bv.ok());
  EXPECT_EQ(*bv, (std::vector<float>{1.0f, -2.0f}));
  EXPECT_TRUE(f->ToFloat32(*f->Find("empty"))->empty());
  EXPECT_EQ(f->Find("missing"), nullptr);
  EXPECT_EQ(f->header_bytes(), header.dump().size());
}

TEST(SafeTensors, ConvertsHalfBfloatAndDouble) {
  // F16: 1, -2, 65504 (max), the smallest subnormal, -0, inf, NaN.
  const std::vector<uint16_t> half = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x7e00};
  // BF16: 1, -3, the top half of pi's float bits.
  const std::vector<uint16_t> bf = {0x3f80, 0xc040, 0x4049};
  double dv[2] = {0.1, -1e300};
  std::string f64(reinterpret_cast<const char*>(dv), sizeof dv);  // little-endian host
  const std::string data = Le16(half) + Le16(bf) + f64;
  const json header = {{"h", {{"dtype", "F16"}, {"shape", {7}}, {"data_offsets", {0, 14}}}},
                       {"b", {{"dtype", "BF16"}, {"shape", {3}}, {"data_offsets", {14, 20}}}},
                       {"d", {{"dtype", "F64"}, {"shape", {2}}, {"data_offsets", {20, 36}}}},
                       {"i", {{"dtype", "I64"}, {"shape", {1}}, {"data_offsets", {36, 44}}}}};
  auto f = SafeTensorsFile::Parse(Build(header.dump(), data + std::string(8, '\0')));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  auto h = f->ToFloat32(*f->Find("h"));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ((*h)[0], 1.0f);
  EXPECT_EQ((*h)[1], -2.0f);
  EXPECT_EQ((*h)[2], 65504.0f);
  EXPECT_EQ((*h)[3], std::ldexp(1.0f, -24));
  EXPECT_EQ((*h)[4], 0.0f);
  EXPECT_TRUE(std::signbit((*h)[4]));
  EXPECT_TRUE(std::isinf((*h)[5]));
  EXPECT_TRUE(std::isnan((*h)[6]));
  auto b = f->ToFloat32(*f->Find("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0], 1.0f);
  EXPECT_EQ((*b)[1], -3.0f);
  EXPECT_NEAR((*b)[2], 3.140625f, 1e-7);
  auto d = f->ToFloat32(*f->Find("d"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)[0], 0.1f);
  EXPECT_TRUE(std::isinf((*d)[1]));
  auto i = f->ToFloat32(*f->Find("i"));
  ASSERT_FALSE(i.ok());
  EXPECT_EQ(i.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(i.status().message().find("I64"), std::string::npos);
}

// Each malformed file is refused as corrupt, and the message says what.
TEST(SafeTensors, RefusesMalformedHeaders) {
  const std::string data = Le32({1, 2, 3, 4});
  auto entry = [](const json& shape, uint64_t b, uint64_t e, const std::string& dtype = "F32") {
    return json{{"dtype", dtype}, {"shape", shape}, {"data_offsets", {b, e}}};
  };
  const std::pair<std::string, std::string> cases[] = {
      {"", "shorter than"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "implausible"},
      {Build("{", ""), "header is not a JSON object"},
      {std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "runs past the end"},
      {Build("[1, 2]", data), "not a JSON object"},
      {Build(json{{"t", 5}}.dump(), data), "entry is not an object"},
      {Build(json{{"t", entry({4}, 0, 16, "F17")}}.dump(), data), "unknown dtype"},
      {Build(json{{"t", entry({-4}, 0, 16)}}.dump(), data), "negative"},
      {Build(json{{"t", entry({4}, 0, 20)}}.dump(), data), "outside the data section"},
      {Build(json{{"t", entry({4}, 8, 4)}}.dump(), data), "outside the data section"},
      {Build(json{{"t", entry({3}, 0, 16)}}.dump(), data), "16 bytes for 3 elements"},
      {Build(json{{"t", entry({1u << 20, 1u << 20}, 0, 16)}}.dump(), data), "more elements"},
      {Build(json{{"t", entry({uint64_t{1} << 62, 8}, 0, 16)}}.dump(), data), "overflows"},
      {Build(json{{"s", entry({2}, 0, 8)}, {"t", entry({3}, 4, 16)}}.dump(), data), "overlaps"},
      {Build(json{{"t", {{"dtype", "F32"}, {"shape", {4}}}}}.dump(), data), "data_offsets"},
      {Build(json{{"__metadata__", {{"k", 1}}}}.dump(), data), "__metadata__.k"},
      {Build(std::string(20, '[') + std::string(20, ']'), data), "nests deeper than 8"},
      {Build("{\"t\": \"[[[[[[[[[[[[\", \"u\": [[[[[[[[[[]]]]]]]]]]}", data), "nests deeper"},
  };
  for (const auto& [bytes, why] : cases) {
    auto f = SafeTensorsFile::Parse(bytes);
    ASSERT_FALSE(f.ok()) << why;
    EXPECT_EQ(f.status().code(), StatusCode::kCorruption) << why;
    EXPECT_NE(f.status().message().find(why), std::string::npos)
        << "want \"" << why << "\" in: " << f.status().message();
  }
}

TEST(SafeTensors, OpensFilesAndReportsMissingOnes) {
  rlaif::testing::TempDir tmp;
  const std::string dir = tmp.path();
  const std::string path = dir + "/w.safetensors";
  rlaif::testing::WriteFile(
      path, Build(json{{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}}.dump(),
                  Le32({0.5f, 4.0f})));
  auto f = SafeTensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*f->ToFloat32(*f->Find("w")), (std::vector<float>{0.5f, 4.0f}));
  auto moved = std::move(*f);  // the mapping moves with the object
  EXPECT_EQ(*moved.ToFloat32(*moved.Find("w")), (std::vector<float>{0.5f, 4.0f}));
  EXPECT_EQ(SafeTensorsFile::Open(dir + "/none.safetensors").status().code(),
            StatusCode::kNotFound);
  // Neither a directory nor a FIFO (whose open would block) is read.
  EXPECT_EQ(SafeTensorsFile::Open(dir).status().code(), StatusCode::kIoError);
  ASSERT_EQ(mkfifo((dir + "/fifo.safetensors").c_str(), 0600), 0);
  EXPECT_EQ(SafeTensorsFile::Open(dir + "/fifo.safetensors").status().code(),
            StatusCode::kIoError);
  rlaif::testing::WriteFile(dir + "/empty.safetensors", "");
  EXPECT_EQ(SafeTensorsFile::Open(dir + "/empty.safetensors").status().code(),
            StatusCode::kCorruption);
}

// The fixture written by tests/trainer/data/gpt2_tiny/make_fixture.py (an
// independent writer, padded header as Hugging Face's writer pads it).
TEST(SafeTensors, ReadsTheGpt2Fixture) {
  auto f = SafeTensorsFile::Open(rlaif::testing::SourceDir() +
                                 "/tests/trainer/data/gpt2_tiny/model.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 2u + 2u * 12u + 2u);
  const SafeTensor* wte = f->Find("wte.weight");
  ASSERT_NE(wte, nullptr);
  EXPECT_EQ(wte->shape, (std::vector<int64_t>{3258, 32}));
  EXPECT_EQ((8 + f->header_bytes()) % 8, 0u);
}

}  // namespace
}  // namespace rlaif::trainer
