// ParseBaseUrl: what the HTTP client accepts, and what config validation
// therefore refuses up front (without quoting a secret).
#include "rlaif/common/base_url.h"

#include <gtest/gtest.h>

namespace rlaif {
namespace {

TEST(BaseUrlTest, AcceptsHostPortAndPath) {
  auto a = ParseBaseUrl("http://127.0.0.1:8000/v1/");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_FALSE(a->https);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8000);
  EXPECT_EQ(a->path, "/v1");
  auto b = ParseBaseUrl("HTTPS://api.example.com");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(b->https);
  EXPECT_EQ(b->port, 443);
  EXPECT_EQ(b->path, "");
  auto c = ParseBaseUrl("http://[::1]:9/v1");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 9);
}

TEST(BaseUrlTest, RefusesWhatTheClientCannotUseWithoutQuotingSecrets) {
  for (const char* url : {"ftp://x/v1", "127.0.0.1:8000/v1", "http://:80/v1", "http://h:99999/v1",
                          "http://h:/v1", "http://h:8x/v1", "http://[::1/v1", "http://[::1]x/v1"}) {
    auto r = ParseBaseUrl(url);
    EXPECT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << url;
  }
  for (const char* url : {"http://user:S3CRET@h/v1", "http://h/v1?api-key=S3CRET",
                          "http://h?key=S3CRET", "https://h/v1#S3CRET"}) {
    auto r = ParseBaseUrl(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().message().find("S3CRET"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("api_key_env"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace rlaif
