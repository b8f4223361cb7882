#include "rlaif/daemon/line_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace rlaif::daemon {
namespace {

LineParser Make(const std::string& format, FieldPointers fields = {}) {
  SourceConfig s;
  s.format = format;
  s.fields = fields;
  auto p = LineParser::Create(s);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(*p);
}

std::string Reason(const LineParser& p, std::string_view line) {
  ParsedLine pl;
  Status st = p.Parse(line, &pl);
  if (st.ok()) return "ok";
  const std::string reason = RejectReason(st);
  // Every reason is in the list the ingest metrics are pre-registered from.
  const auto& known = ParseRejectReasons();
  EXPECT_NE(std::find(known.begin(), known.end(), reason), known.end()) << reason;
  return reason;
}

TEST(LineParserTest, SimpleReadsPromptResponseModelAndMetadata) {
  auto p = Make("simple");
  ParsedLine pl;
  ASSERT_TRUE(p.Parse(R"({"prompt":"hi","response":"yo","model":"m1","timestamp":17,)"
                      R"("metadata":{"route":"/chat","n":3,"nested":{"x":1}}})",
                      &pl)
                  .ok());
  EXPECT_EQ(pl.prompt, "hi");
  EXPECT_EQ(pl.response, "yo");
  EXPECT_EQ(pl.model, "m1");
  EXPECT_EQ(pl.timestamp, "17");
  using KV = std::pair<std::string, std::string>;
  EXPECT_EQ(pl.metadata, (std::vector<KV>{{"n", "3"}, {"route", "/chat"}}));
}

TEST(LineParserTest, IntegersBeyond64BitsAreReadAsNumbersNotRejectedAsBadJson) {
  auto p = Make("simple");
  ParsedLine pl;
  // Valid JSON that simdjson alone refuses (BIGINT_ERROR): the line is kept.
  ASSERT_TRUE(p.Parse(R"({"prompt":"big \"1234567890123456789012345\" text","metadata":)"
                      R"({"big":123456789012345678901234567890,"neg":-92233720368547758090,)"
                      R"("ok":7}})",
                      &pl)
                  .ok());
  EXPECT_EQ(pl.prompt, "big \"1234567890123456789012345\" text");  // strings untouched
  EXPECT_EQ(Reason(p, R"({"prompt":123456789012345678901234567890123456789})"), "bad_prompt_type");
  EXPECT_EQ(Reason(p, R"({"prompt":1e999999})"), "bad_json");
}

TEST(LineParserTest, OpenAiChatSingleTurnIsTheUserContentVerbatim) {
  auto p = Make("openai-chat");
  ParsedLine pl;
  ASSERT_TRUE(
      p.Parse(
           R"({"request":{"model":"gpt-x","messages":[{"role":"user","content":"Hello?"}]},)"
           R"("response":{"created":1700000000,"choices":[{"message":{"role":"assistant","content":"Hi!"}}]}})",
           &pl)
          .ok());
  EXPECT_EQ(pl.prompt, "Hello?");
  EXPECT_EQ(pl.response, "Hi!");
  EXPECT_EQ(pl.model, "gpt-x");
  EXPECT_EQ(pl.timestamp, "1700000000");
}

TEST(LineParserTest, OpenAiChatMultiTurnRendersUpToTheLastUserTurn) {
  auto p = Make("openai-chat");
  ParsedLine pl;
  ASSERT_TRUE(
      p.Parse(
           R"({"request":{"model":"m","messages":[)"
           R"({"role":"system","content":"Be brief."},)"
           R"({"role":"user","content":"Capital of France?"},)"
           R"({"role":"assistant","content":"Paris."},)"
           R"({"role":"user","content":[{"type":"text","text":"And of"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"Spain?"}]},)"
           R"({"role":"assistant","content":null,"tool_calls":[]}]},)"
           R"("response":{"model":"m-2024","choices":[{"message":{"content":"Madrid."}}]}})",
           &pl)
          .ok());
  EXPECT_EQ(
      pl.prompt,
      "system: Be brief.\n\nuser: Capital of France?\n\nassistant: Paris.\n\nuser: And of\nSpain?");
  EXPECT_EQ(pl.response, "Madrid.");
  EXPECT_EQ(pl.model, "m");  // the request's model wins
}

TEST(LineParserTest, OpenAiChatWithoutResponseOrChoicesHasEmptyResponse) {
  auto p = Make("openai-chat");
  ParsedLine pl;
  ASSERT_TRUE(p.Parse(R"({"request":{"messages":[{"role":"user","content":"q"}]}})", &pl).ok());
  EXPECT_EQ(pl.response, "");
  EXPECT_EQ(pl.model, "");
  ASSERT_TRUE(
      p.Parse(
           R"({"request":{"messages":[{"role":"user","content":"q"}]},"response":{"model":"r","choices":[]}})",
           &pl)
          .ok());
  EXPECT_EQ(pl.model, "r");
}

TEST(LineParserTest, OpenAiChatRejections) {
  auto p = Make("openai-chat");
  EXPECT_EQ(Reason(p, R"({"prompt":"x"})"), "missing_prompt");
  EXPECT_EQ(Reason(p, R"({"request":[]})"), "bad_prompt_type");
  EXPECT_EQ(Reason(p, R"({"request":{}})"), "missing_prompt");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":{}}})"), "bad_messages");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"content":"x"}]}})"), "bad_messages");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"system","content":"x"}]}})"),
            "no_user_turn");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":5}]}})"), "bad_messages");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":" "}]}})"),
            "empty_prompt");
  // Earlier turns do not make an empty last question a prompt.
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"system","content":"sys"},)"
                      R"({"role":"user","content":""}]}})"),
            "empty_prompt");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":"hi"},)"
                      R"({"role":"assistant","content":"hello"},{"role":"user","content":[]}]}})"),
            "empty_prompt");
  // Unicode spaces are blank too (no-break space, ideographic space, BOM).
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":" 　﻿"}]}})"),
            "empty_prompt");
  EXPECT_EQ(Reason(Make("simple"), "{\"prompt\":\"\u00a0\"}"), "empty_prompt");
  EXPECT_EQ(Reason(Make("simple"), "{\"prompt\":\"\u00a0x\"}"), "ok");
  EXPECT_EQ(Reason(p, R"({"request":{"model":3,"messages":[{"role":"user","content":"q"}]}})"),
            "bad_model_type");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":"q"}]},"response":"x"})"),
            "bad_response_type");
  EXPECT_EQ(Reason(p, R"({"request":{"messages":[{"role":"user","content":"q"}]},)"
                      R"("response":{"choices":[{"message":{"content":{"a":1}}}]}})"),
            "bad_response_type");
}

TEST(LineParserTest, CustomFollowsJsonPointers) {
  auto p = Make("custom", {.prompt = "/in/text",
                           .response = "/out/0/text",
                           .model = "/meta/model",
                           .timestamp = "/ts",
                           .metadata = "/meta"});
  ParsedLine pl;
  ASSERT_TRUE(p.Parse(R"({"in":{"text":"q?"},"out":[{"text":"a."}],"ts":"2026-11-27T10:00:00Z",)"
                      R"("meta":{"model":"llama","tenant":"acme"}})",
                      &pl)
                  .ok());
  EXPECT_EQ(pl.prompt, "q?");
  EXPECT_EQ(pl.response, "a.");
  EXPECT_EQ(pl.model, "llama");
  EXPECT_EQ(pl.timestamp, "2026-11-27T10:00:00Z");
  ASSERT_EQ(pl.metadata.size(), 2u);
  EXPECT_EQ(pl.metadata[1], (std::pair<std::string, std::string>{"tenant", "acme"}));
  // Optional fields may be absent; the prompt may be a message array.
  auto chat = Make("custom", {.prompt = "/msgs"});
  ASSERT_TRUE(chat.Parse(R"({"msgs":[{"role":"user","content":"one"}]})", &pl).ok());
  EXPECT_EQ(pl.prompt, "one");
  EXPECT_EQ(Reason(p, R"({"in":{}})"), "missing_prompt");
  EXPECT_EQ(Reason(p, R"({"in":{"text":["x"]}})"), "bad_messages");
  EXPECT_EQ(Reason(p, R"({"in":{"text":7}})"), "bad_prompt_type");
  EXPECT_EQ(Reason(p, R"({"in":{"text":"q"},"out":[{"text":1}]})"), "bad_response_type");
  EXPECT_EQ(Reason(p, R"({"in":{"text":"q"},"meta":{"model":false}})"), "bad_model_type");
}

TEST(LineParserTest, CreateRejectsBadFormatsAndPointers) {
  SourceConfig s;
  s.format = "xml";
  EXPECT_FALSE(LineParser::Create(s).ok());
  s.format = "custom";
  EXPECT_FALSE(LineParser::Create(s).ok());  // no prompt pointer
  s.fields.prompt = "no-slash";
  EXPECT_FALSE(LineParser::Create(s).ok());
  s.fields.prompt = "/p";
  EXPECT_TRUE(LineParser::Create(s).ok());
}

TEST(LineParserTest, BadBytesAreRejectedByReason) {
  auto p = Make("simple");
  EXPECT_EQ(Reason(p, std::string_view("{\"prompt\":\"a\0b\"}", 16)), "nul_byte");
  EXPECT_EQ(Reason(p, R"({"prompt":"a\u0000b"})"), "nul_byte");  // escaped NUL
  EXPECT_EQ(Reason(p, "{\"prompt\":\"\xff\"}"), "invalid_utf8");
  EXPECT_EQ(Reason(p, "{\"prompt\":\"\xc3\"}"), "invalid_utf8");          // truncated sequence
  EXPECT_EQ(Reason(p, "{\"prompt\":\"\xed\xa0\x80\"}"), "invalid_utf8");  // UTF-16 surrogate
  EXPECT_EQ(Reason(p, "{\"prompt\":\"\xc0\xaf\"}"), "invalid_utf8");      // overlong
  EXPECT_EQ(Reason(p, "{\"prompt\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}"), "ok");
  EXPECT_EQ(Reason(p, R"({"prompt":"x")"), "bad_json");
  EXPECT_EQ(Reason(p, R"("just a string")"), "not_object");
  // Nesting: 64 levels are fine, 65 are not; brackets inside strings do not count.
  std::string ok = R"({"prompt":"[[[{{{","m":)" + std::string(62, '[') + std::string(62, ']') + "}";
  EXPECT_EQ(Reason(p, ok), "ok");
  std::string deep = R"({"prompt":"x","m":)" + std::string(64, '[') + std::string(64, ']') + "}";
  EXPECT_EQ(Reason(p, deep), "too_deep");
  std::string very_deep = std::string(100000, '[');
  EXPECT_EQ(Reason(p, very_deep), "too_deep");
  EXPECT_EQ(Reason(p, R"({"prompt":"x\"[[[["})"), "ok");  // escaped quote inside a string
}

TEST(LineSampleHashTest, StableAndSensitiveToEveryByte) {
  // Golden values: changing the hash changes which lines sampling keeps.
  EXPECT_EQ(LineSampleHash(""), LineSampleHash(""));
  const std::string line =
      R"({"request":{"model":"m","messages":[{"role":"user","content":"hello there, how are you?"}]}})";
  const uint64_t h = LineSampleHash(line);
  EXPECT_EQ(h, LineSampleHash(std::string(line)));
  std::set<uint64_t> seen{h};
  for (size_t i = 0; i < line.size(); ++i) {
    std::string c = line;
    c[i] ^= 1;
    seen.insert(LineSampleHash(c));
  }
  for (size_t n = 0; n < line.size(); ++n) seen.insert(LineSampleHash(line.substr(0, n)));
  EXPECT_EQ(seen.size(), 2 * line.size() + 1);  // every flipped byte and every prefix differs
  std::set<uint64_t> zeros;
  for (size_t n = 0; n < 70; ++n) zeros.insert(LineSampleHash(std::string(n, '\0')));
  EXPECT_EQ(zeros.size(), 70u);
}

TEST(LineSampleHashTest, GoldenValues) {
  EXPECT_EQ(LineSampleHash("{\"prompt\":\"a\"}"), 0xb2805adcc0d3dcd4ULL);
  EXPECT_EQ(LineSampleHash(std::string(100, 'x')), 0x628639210b4395c1ULL);
}

TEST(MayCarryLoggedPairTest, FindsKeysAtEveryPositionAndLength) {
  for (const std::string pat : {"\"ab\"", "\"rewrite\"", "\\u0061", "\\u0072"}) {
    for (size_t len = pat.size(); len < 100; ++len) {
      for (size_t at = 0; at + pat.size() <= len; ++at) {
        std::string s(len, 'x');
        s.replace(at, pat.size(), pat);
        EXPECT_TRUE(MayCarryLoggedPair(s)) << pat << " at " << at << " of " << len;
      }
    }
  }
  // Near misses: no pattern anywhere.
  for (size_t len = 0; len < 100; ++len) {
    std::string s;
    while (s.size() < len) s += "\"a\"\"ab \"rewrit\"re\"rew \\u0041\\u00e9\"abc\" ab ";
    s.resize(len);
    EXPECT_FALSE(MayCarryLoggedPair(s)) << s;
  }
  EXPECT_FALSE(MayCarryLoggedPair(
      R"({"request":{"model":"m","messages":[{"role":"assistant","content":"about abc"}]},)"
      R"("response":{"choices":[{"message":{"content":"ok"}}]}})"));
  EXPECT_TRUE(MayCarryLoggedPair(R"({"prompt":"q","response":"r","rewrite":"better"})"));
  EXPECT_TRUE(MayCarryLoggedPair(R"({"prompt":"q","ab":{"a":"x","b":"y"}})"));
}

}  // namespace
}  // namespace rlaif::daemon
