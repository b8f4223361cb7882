#include "rlaif/daemon/redactor.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace rlaif::daemon {
namespace {

std::string Redact(const std::string& text, RedactionScope* scope = nullptr) {
  static const Redactor r = std::move(*Redactor::Create({}));
  RedactionScope local;
  return r.Redact(text, scope ? scope : &local);
}

TEST(RedactorTest, Emails) {
  EXPECT_EQ(Redact("mail jane.doe+x@mail.example.co.uk, or bob@ex.org."),
            "mail <EMAIL_1>, or <EMAIL_2>.");
  EXPECT_EQ(Redact("not an email: a@b, @home, x@y.z1"), "not an email: a@b, @home, x@y.z1");
}

TEST(RedactorTest, CardsNeedTheLuhnCheck) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_EQ(Redact("card 4111 1111 1111 1111 exp 12/27"), "card <CARD_1> exp 12/27");
  EXPECT_EQ(Redact("card 5500-0000-0000-0004."), "card <CARD_1>.");
  EXPECT_EQ(Redact("order 4111111111111112 shipped"), "order 4111111111111112 shipped");
}

TEST(RedactorTest, PhoneNumbersButNotDatesOrBareNumbers) {
  EXPECT_EQ(Redact("call +1 (555) 123-4567 now"), "call <PHONE_1> now");
  EXPECT_EQ(Redact("call 555-123-4567 or 555.987.6543"), "call <PHONE_1> or <PHONE_2>");
  EXPECT_EQ(Redact("intl +442079460958"), "intl <PHONE_1>");
  for (const char* keep : {"at 2026-11-27 10:45:00 UTC", "ts 1732700000123", "id 12345",
                           "version 10.0.19041.1", "pi is 3.14159265358979"}) {
    EXPECT_EQ(Redact(keep), keep);
  }
}

TEST(RedactorTest, SecretsAndTokens) {
  EXPECT_EQ(Redact("key sk-proj-abcdefghijklmnopqrstuvwxyz0123"), "key <SECRET_1>");
  EXPECT_EQ(Redact("aws AKIAIOSFODNN7EXAMPLE ok"), "aws <SECRET_1> ok");
  EXPECT_EQ(Redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc"),
            "Authorization: Bearer <SECRET_1>");
  EXPECT_EQ(Redact("sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
            "sha <SECRET_1>");
  EXPECT_EQ(Redact("b64 QWxhZGRpbjpvcGVuIHNlc2FtZQ0xQWxhZGRpbjpvcGVuIHNlc2FtZQ0x"),
            "b64 <SECRET_1>");
  EXPECT_EQ(
      Redact("uuid 550e8400-e29b-41d4-a716-446655440000 and a_very_long_identifier_name_in_code"),
      "uuid 550e8400-e29b-41d4-a716-446655440000 and a_very_long_identifier_name_in_code");
}

TEST(RedactorTest, SecretLengthTokensAreFoundAtEveryOffset) {
  // The pre-check looks for runs of >= 16 token characters 64 bytes at a
  // time: a run may start anywhere and straddle block boundaries.
  for (size_t at = 0; at < 150; ++at) {
    const std::string pad(at, ' ');
    EXPECT_EQ(Redact(pad + "Bearer abcdefgh.ijklmn_ and more"),
              pad + "Bearer <SECRET_1> and more")
        << at;
    EXPECT_EQ(Redact(pad + "Bearer abcdefgh.ijklm_ and more"),
              pad + "Bearer abcdefgh.ijklm_ and more")  // 15: too short
        << at;
    const std::string word_pad = std::string(at % 7, 'w') + " " + pad;
    EXPECT_EQ(Redact(word_pad + "Bearer ~+/=-_.0123456789ab"), word_pad + "Bearer <SECRET_1>")
        << at;
  }
}

TEST(RedactorTest, IpAddresses) {
  EXPECT_EQ(Redact("from 192.168.1.20 and 10.0.0.1:8080"), "from <IP_1> and <IP_2>:8080");
  EXPECT_EQ(Redact("v6 2001:db8::8a2e:370:7334 and fe80::1"), "v6 <IP_1> and <IP_2>");
  for (const char* keep : {"std::vector<int>", "at 12:30:45", "1.2.3.4.5", "999.1.1.1", "a::b"}) {
    EXPECT_EQ(Redact(keep), keep);
  }
}

TEST(RedactorTest, SameEntitySamePlaceholderAcrossPromptAndResponse) {
  RedactionScope scope;
  EXPECT_EQ(Redact("I am ann@x.io, not bob@x.io; ann@x.io!", &scope),
            "I am <EMAIL_1>, not <EMAIL_2>; <EMAIL_1>!");
  EXPECT_EQ(Redact("Hello ann@x.io from 8.8.8.8", &scope), "Hello <EMAIL_1> from <IP_1>");
  EXPECT_EQ(scope.counts["email"], 4);
  EXPECT_EQ(scope.counts["ipv4"], 1);
}

TEST(RedactorTest, UserPatternsRunFirst) {
  auto r = Redactor::Create({{"employee_id", "EMP-[0-9]{6}"}});
  ASSERT_TRUE(r.ok());
  RedactionScope scope;
  EXPECT_EQ(r->Redact("EMP-123456 wrote to hr@corp.com about EMP-123456", &scope),
            "<EMPLOYEE_ID_1> wrote to <EMAIL_1> about <EMPLOYEE_ID_1>");
  EXPECT_EQ(scope.counts["employee_id"], 2);
  EXPECT_FALSE(Redactor::Create({{"bad", "("}}).ok());
}

// The repo's sample logs (HH prompts) hold no PII: redaction must leave them
// untouched (the walking-skeleton e2e test compares them byte for byte).
TEST(RedactorTest, LeavesTheSampleLogsAlone) {
  std::ifstream f(rlaif::testing::SourceDir() + "/data/sample-logs/app.jsonl");
  ASSERT_TRUE(f.good());
  std::string line;
  int n = 0;
  while (std::getline(f, line) && n < 200) {
    std::string prompt = nlohmann::json::parse(line)["prompt"].get<std::string>();
    EXPECT_EQ(Redact(prompt), prompt) << "line " << n;
    ++n;
  }
  EXPECT_EQ(n, 200);
}

}  // namespace
}  // namespace rlaif::daemon
