#include "rlaif/judge/generator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "fake_upstream.h"
#include "rlaif/common/hash.h"

namespace rlaif::judge {
namespace {

using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

ChatClientOptions Options(const FakeUpstream& up) {
  ChatClientOptions o;
  o.base_url = up.base_url();
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.02;
  return o;
}

storage::PromptRecord Prompt() {
  storage::PromptRecord p;
  p.id = "00000000000000ab";
  p.text = "  Write a haiku about RocksDB.\n";
  return p;
}

// A config reload's options apply from the next pair: its requests carry
// them, and its id follows the new fingerprint; the model is kept.
TEST(GeneratorTest, ReconfigureAppliesToTheNextPair) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("response " + std::to_string(n)));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .temperature = 0.8, .max_tokens = 77});
  auto first = gen.Generate(Prompt());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::string before = gen.fingerprint();
  gen.Reconfigure({.model = "another", .temperature = 0.3, .max_tokens = 12});
  EXPECT_NE(gen.fingerprint(), before);
  auto second = gen.Generate(Prompt());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  const RecordedRequest last = up.requests().back();
  EXPECT_EQ(last.json["model"], "sft");
  EXPECT_DOUBLE_EQ(last.json["temperature"].get<double>(), 0.3);
  EXPECT_EQ(last.json["max_tokens"], 12);
  EXPECT_EQ(second->generator, gen.fingerprint());
  EXPECT_NE(second->id, first->id);
}

TEST(GeneratorTest, TwoCallsWithOwnSeedsAndVerbatimPrompt) {
  FakeUpstream up([](int n, const RecordedRequest& r, httplib::Response& res) {
    FakeUpstream::Reply(res, 200,
                        FakeUpstream::Completion("response " + std::to_string(n), 20, 5 + n));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .temperature = 0.8, .max_tokens = 77});
  auto pair = gen.Generate(Prompt());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();

  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 2u);
  for (const auto& r : reqs) {
    EXPECT_EQ(r.json["model"], "sft");
    ASSERT_EQ(r.json["messages"].size(), 1u);
    EXPECT_EQ(r.json["messages"][0]["role"], "user");
    EXPECT_EQ(r.json["messages"][0]["content"], Prompt().text);
    EXPECT_DOUBLE_EQ(r.json["temperature"].get<double>(), 0.8);
    EXPECT_EQ(r.json["max_tokens"], 77);
    ASSERT_TRUE(r.json.contains("seed"));
    EXPECT_FALSE(r.json.contains("response_format"));
  }
  EXPECT_NE(reqs[0].json["seed"], reqs[1].json["seed"]);

  EXPECT_EQ(pair->a.text, "response 0");
  EXPECT_EQ(pair->b.text, "response 1");
  EXPECT_EQ(pair->a.seed, reqs[0].json["seed"].get<int64_t>());
  EXPECT_EQ(pair->b.seed, reqs[1].json["seed"].get<int64_t>());
  EXPECT_EQ(pair->a.model, "sft");
  EXPECT_DOUBLE_EQ(pair->a.temperature, 0.8);
  EXPECT_EQ(pair->a.prompt_tokens, 20);
  EXPECT_EQ(pair->b.completion_tokens, 6);
  EXPECT_GT(pair->a.latency_ms, 0);
  EXPECT_EQ(pair->prompt_id, Prompt().id);
  EXPECT_EQ(pair->prompt, Prompt().text);
  EXPECT_EQ(pair->generator, gen.fingerprint());
  EXPECT_EQ(pair->id, HexId(HashFields({Prompt().id, gen.fingerprint(), "0"})));
  EXPECT_GT(pair->created_at_ms, 0);
}

TEST(GeneratorTest, FingerprintDependsOnParameters) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response&) {});
  ChatClient client(Options(up));
  Generator g1(client, {.model = "sft", .temperature = 0.9, .max_tokens = 256});
  Generator g2(client, {.model = "sft", .temperature = 0.9, .max_tokens = 256});
  Generator g3(client, {.model = "sft", .temperature = 0.7, .max_tokens = 256});
  Generator g4(client, {.model = "sft2", .temperature = 0.9, .max_tokens = 256});
  Generator g5(client, {.model = "sft", .temperature = 0.9, .max_tokens = 128});
  EXPECT_EQ(g1.fingerprint(), g2.fingerprint());
  EXPECT_EQ(g1.fingerprint(), HexId(HashFields({"sft", "0.9", "256", "gen-v1"})));
  std::set<std::string> all = {g1.fingerprint(), g3.fingerprint(), g4.fingerprint(),
                               g5.fingerprint()};
  EXPECT_EQ(all.size(), 4u);
}

TEST(GeneratorTest, SameSeedsForSamePrompt) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(std::string("r") + std::to_string(n)));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft"});
  ASSERT_TRUE(gen.Generate(Prompt()).ok());
  ASSERT_TRUE(gen.Generate(Prompt()).ok());
  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].json["seed"], reqs[2].json["seed"]);
  EXPECT_EQ(reqs[1].json["seed"], reqs[3].json["seed"]);
}

TEST(GeneratorTest, RetriesIdenticalSecondResponseWithNewSeed) {
  // The first three answers are the same text (modulo whitespace); the
  // fourth differs.
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    const char* texts[] = {"The answer is 42.", "  The answer\nis 42. ", "The answer is 42.",
                           "It is 42, the answer."};
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion(texts[std::min(n, 3)]));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .max_identical_retries = 4});
  auto pair = gen.Generate(Prompt());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_EQ(pair->a.text, "The answer is 42.");
  EXPECT_EQ(pair->b.text, "It is 42, the answer.");
  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 4u);
  std::set<int64_t> seeds;
  for (const auto& r : reqs) seeds.insert(r.json["seed"].get<int64_t>());
  EXPECT_EQ(seeds.size(), 4u);  // every retry used a new seed
  EXPECT_EQ(pair->b.seed, reqs[3].json["seed"].get<int64_t>());
}

TEST(GeneratorTest, GivesUpOnIdenticalResponses) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("I don't know."));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .max_identical_retries = 2});
  auto pair = gen.Generate(Prompt());
  ASSERT_FALSE(pair.ok());
  EXPECT_EQ(pair.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pair.status().message().rfind("identical_responses", 0), 0u) << pair.status().message();
  EXPECT_EQ(up.calls(), 1 + 1 + 2);
}

// A completion with the given content (null: none, as a refusal or a
// content filter sends it) and finish_reason.
std::string CompletionWith(const nlohmann::json& content, const std::string& finish_reason) {
  return nlohmann::json{{"id", "chatcmpl-test"},
                        {"object", "chat.completion"},
                        {"model", "m"},
                        {"choices",
                         {{{"index", 0},
                           {"message", {{"role", "assistant"}, {"content", content}}},
                           {"finish_reason", finish_reason}}}}}
      .dump();
}

TEST(GeneratorTest, EmptyResponsesAreAskedAgainWithNewSeeds) {
  // First: empty, then a filtered null, then whitespace only; then two answers.
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    const nlohmann::json contents[] = {"", nullptr, "  \n\t ", "First answer.", "Second answer."};
    const char* reasons[] = {"stop", "content_filter", "stop", "stop", "stop"};
    FakeUpstream::Reply(res, 200,
                        CompletionWith(contents[std::min(n, 4)], reasons[std::min(n, 4)]));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .max_identical_retries = 4});
  auto pair = gen.Generate(Prompt());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_EQ(pair->a.text, "First answer.");
  EXPECT_EQ(pair->b.text, "Second answer.");
  EXPECT_EQ(pair->a.finish_reason, "stop");
  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 5u);
  std::set<int64_t> seeds;
  for (const auto& r : reqs) seeds.insert(r.json["seed"].get<int64_t>());
  EXPECT_EQ(seeds.size(), 5u);
  const GeneratorCounts c = gen.counts();
  EXPECT_EQ(c.empty, 3);
  EXPECT_EQ(c.complete, 2);
  EXPECT_EQ(c.truncated, 0);
  EXPECT_EQ(c.identical, 0);
}

TEST(GeneratorTest, GivesUpOnEmptyResponses) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, CompletionWith(nullptr, "content_filter"));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .max_identical_retries = 2});
  auto pair = gen.Generate(Prompt());
  ASSERT_FALSE(pair.ok());
  EXPECT_EQ(GeneratorRejection(pair.status()), "empty_response") << pair.status().message();
  EXPECT_NE(pair.status().message().find("3 empty"), std::string::npos) << pair.status().message();
  EXPECT_EQ(up.calls(), 3);
  EXPECT_EQ(gen.counts().empty, 3);
}

TEST(GeneratorTest, TruncatedResponsesAreKeptAndMarked) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200,
                        CompletionWith(std::string("Answer ") + std::to_string(n) + " is cut",
                                       n == 0 ? "length" : "stop"));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft"});
  auto pair = gen.Generate(Prompt());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_EQ(pair->a.finish_reason, "length");
  EXPECT_EQ(pair->b.finish_reason, "stop");
  EXPECT_EQ(up.calls(), 2);
  EXPECT_EQ(gen.counts().truncated, 1);
  EXPECT_EQ(gen.counts().complete, 1);
}

TEST(GeneratorTest, DropTruncatedAsksAgainThenGivesUp) {
  std::atomic<bool> always_cut{false};
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    const bool cut = always_cut.load() || n == 1;
    FakeUpstream::Reply(
        res, 200,
        CompletionWith(std::string("Answer ") + std::to_string(n), cut ? "length" : "stop"));
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .max_identical_retries = 1, .drop_truncated = true});
  auto pair = gen.Generate(Prompt());
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_EQ(pair->a.text, "Answer 0");
  EXPECT_EQ(pair->b.text, "Answer 2");  // the cut-off second one was asked again
  EXPECT_EQ(pair->b.finish_reason, "stop");

  always_cut = true;
  auto none = gen.Generate(Prompt());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(GeneratorRejection(none.status()), "truncated") << none.status().message();
  EXPECT_EQ(gen.counts().truncated, 1 + 2);
  // Not a rejection of the prompt: an upstream error is not one.
  EXPECT_EQ(GeneratorRejection(Status::FailedPrecondition("HTTP 401: truncated key")), "");
}

TEST(GeneratorTest, PropagatesClientErrors) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 404, R"({"error":"model \"sft\" not found"})");
  });
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft"});
  auto pair = gen.Generate(Prompt());
  ASSERT_FALSE(pair.ok());
  // A missing model is the configuration's fault: the caller holds the
  // prompt rather than dead-lettering it.
  EXPECT_EQ(pair.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(IsConfigurationFault(pair.status())) << pair.status().message();
  EXPECT_NE(pair.status().message().find(Prompt().id), std::string::npos);
  EXPECT_NE(pair.status().message().find("not found"), std::string::npos);
}

TEST(GeneratorTest, RejectsNonPositiveTemperature) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response&) {});
  ChatClient client(Options(up));
  Generator gen(client, {.model = "sft", .temperature = 0});
  auto pair = gen.Generate(Prompt());
  EXPECT_EQ(pair.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(up.calls(), 0);
}

}  // namespace
}  // namespace rlaif::judge
