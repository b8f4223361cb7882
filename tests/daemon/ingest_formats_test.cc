// Formats, filters, redaction and `rlaifd ingest --once` through Ingestor.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "rlaif/daemon/ingest.h"
#include "rlaif/daemon/ingest_once.h"
#include "test_util.h"

namespace rlaif::daemon {
namespace {

using rlaif::testing::TempDir;
using rlaif::testing::WriteFile;

std::string Chat(const std::string& model, const std::string& user, const std::string& answer) {
  nlohmann::json j = {
      {"request", {{"model", model}, {"messages", {{{"role", "user"}, {"content", user}}}}}},
      {"response", {{"choices", {{{"message", {{"role", "assistant"}, {"content", answer}}}}}}}}};
  return j.dump() + "\n";
}

class IngestFormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.Sub("logs"));
    log_ = dir_.Sub("logs/app.jsonl");
    auto s = storage::Store::Open({.path = dir_.Sub("store")});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    source_.path = dir_.Sub("logs/*.jsonl");
  }
  IngestPassStats Poll() {
    Ingestor ing({source_}, sampling_, *store_, metrics_);
    auto st = ing.PollOnce();
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : IngestPassStats{};
  }
  std::vector<storage::PromptRecord> Prompts() {
    std::vector<storage::PromptRecord> out;
    EXPECT_TRUE(store_
                    ->ForEachPrompt([&](const storage::PromptRecord& p) {
                      out.push_back(p);
                      return true;
                    })
                    .ok());
    std::sort(out.begin(), out.end(),
              [](auto& a, auto& b) { return a.source_offset < b.source_offset; });
    return out;
  }
  std::vector<storage::DeadLetter> Dead() {
    std::vector<storage::DeadLetter> out;
    EXPECT_TRUE(store_
                    ->ForEachDeadLetter([&](const storage::DeadLetter& d) {
                      out.push_back(d);
                      return true;
                    })
                    .ok());
    return out;
  }

  TempDir dir_;
  std::string log_;
  SourceConfig source_;
  SamplingConfig sampling_;
  MetricsRegistry metrics_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(IngestFormatsTest, OpenAiChatWithModelIncludeAndExcludeFilters) {
  source_.format = "openai-chat";
  sampling_.include_models = {"gpt-*", "llama-3"};
  sampling_.exclude_models = {"gpt-4o-mini"};
  WriteFile(log_, Chat("gpt-4o", "q1", "a1") + Chat("gpt-4o-mini", "q2", "a2") +
                      Chat("llama-3", "q3", "a3") + Chat("mistral", "q4", "a4"));
  auto s = Poll();
  EXPECT_EQ(s.lines, 4);
  EXPECT_EQ(s.stored, 2);
  EXPECT_EQ(s.filtered, 2);
  auto p = Prompts();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].text, "q1");
  EXPECT_EQ(p[0].logged_response, "a1");
  EXPECT_EQ(p[1].text, "q3");
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_filtered_total{reason=\"model\"} 2"),
            std::string::npos);
}

TEST_F(IngestFormatsTest, CustomFormatByJsonPointers) {
  source_.format = "custom";
  source_.fields = {.prompt = "/input/text", .response = "/output", .model = "/m"};
  WriteFile(log_, R"({"input":{"text":"hello"},"output":"hi","m":"x"})"
                  "\n"
                  R"({"input":{}})"
                  "\n");
  auto s = Poll();
  EXPECT_EQ(s.stored, 1);
  EXPECT_EQ(s.rejected, 1);
  ASSERT_EQ(Dead().size(), 1u);
  EXPECT_EQ(Dead()[0].reason, "missing_prompt");
}

TEST_F(IngestFormatsTest, RedactsPromptAndResponseBeforeStoring) {
  source_.format = "openai-chat";
  sampling_.redact_patterns = {{"ticket", "TICKET-[0-9]+"}};
  WriteFile(log_, Chat("m", "I am ann@corp.com, card 4111 1111 1111 1111, TICKET-42",
                       "Hello ann@corp.com, about TICKET-42"));
  EXPECT_EQ(Poll().stored, 1);
  auto p = Prompts();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].text, "I am <EMAIL_1>, card <CARD_1>, <TICKET_1>");
  EXPECT_EQ(p[0].logged_response, "Hello <EMAIL_1>, about <TICKET_1>");
  const std::string m = metrics_.Render();
  EXPECT_NE(m.find("rlaif_redactions_total{kind=\"email\"} 2"), std::string::npos) << m;
  EXPECT_NE(m.find("rlaif_redactions_total{kind=\"card\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("rlaif_redactions_total{kind=\"ticket\"} 2"), std::string::npos) << m;
}

TEST_F(IngestFormatsTest, DeadLettersAreRedactedToo) {
  WriteFile(log_, "{\"prompt\": \"mail me at ann@corp.com\"\n");  // malformed JSON
  EXPECT_EQ(Poll().rejected, 1);
  auto d = Dead();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].reason, "bad_json");
  EXPECT_EQ(d[0].raw.find("ann@corp.com"), std::string::npos) << d[0].raw;
  EXPECT_NE(d[0].raw.find("<EMAIL_1>"), std::string::npos) << d[0].raw;
}

TEST_F(IngestFormatsTest, RedactionCanBeTurnedOff) {
  sampling_.redact = false;
  WriteFile(log_, "{\"prompt\": \"ann@corp.com\"}\n");
  Poll();
  ASSERT_EQ(Prompts().size(), 1u);
  EXPECT_EQ(Prompts()[0].text, "ann@corp.com");
}

TEST_F(IngestFormatsTest, BadBytesAreCountedByReasonAndIngestContinues) {
  std::string nul = "{\"prompt\": \"a";
  nul += '\0';
  nul += "b\"}\n";
  WriteFile(log_, "{\"prompt\": \"ok1\"}\n" + nul + "{\"prompt\": \"\xff\"}\n" +
                      "{\"prompt\": \"x\", \"m\": " + std::string(100, '[') +
                      std::string(100, ']') + "}\n" + "{\"prompt\": [\"x\"]}\n" +
                      "{\"prompt\": \"ok2\"}\n");
  auto s = Poll();
  EXPECT_EQ(s.lines, 6);
  EXPECT_EQ(s.stored, 2);
  EXPECT_EQ(s.rejected, 4);
  const std::string m = metrics_.Render();
  for (const char* reason : {"nul_byte", "invalid_utf8", "too_deep", "bad_prompt_type"}) {
    EXPECT_NE(m.find(std::string("rlaif_ingest_rejected_total{reason=\"") + reason + "\"} 1"),
              std::string::npos)
        << reason << "\n"
        << m;
  }
  for (const auto& d : Dead()) EXPECT_EQ(d.ref.rfind(log_ + ":", 0), 0u) << d.ref;
}

TEST_F(IngestFormatsTest, MetadataIncludeAndExcludeFilters) {
  sampling_.include_metadata = {{"route", {"/v1/chat*"}}};
  sampling_.exclude_metadata = {{"tenant", {"internal-*"}}};
  auto line = [](const std::string& p, const std::string& meta) {
    return "{\"prompt\": \"" + p + "\", \"metadata\": " + meta + "}\n";
  };
  WriteFile(log_, line("keep", R"({"route": "/v1/chat/completions", "tenant": "acme"})") +
                      line("other-route", R"({"route": "/v1/embeddings"})") +
                      line("no-route", R"({"tenant": "acme"})") +
                      line("internal", R"({"route": "/v1/chat", "tenant": "internal-ci"})"));
  auto s = Poll();
  EXPECT_EQ(s.stored, 1);
  EXPECT_EQ(s.filtered, 3);
  ASSERT_EQ(Prompts().size(), 1u);
  EXPECT_EQ(Prompts()[0].text, "keep");
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_filtered_total{reason=\"metadata\"} 3"),
            std::string::npos);
}

TEST_F(IngestFormatsTest, PerStratumCapKeepsOneTenantFromDominating) {
  sampling_.max_per_stratum_per_hour = 2;
  sampling_.stratum = "metadata.tenant";
  std::string content;
  for (int i = 0; i < 5; ++i) {
    content +=
        "{\"prompt\": \"big " + std::to_string(i) + "\", \"metadata\": {\"tenant\": \"big\"}}\n";
  }
  content += "{\"prompt\": \"small 0\", \"metadata\": {\"tenant\": \"small\"}}\n";
  WriteFile(log_, content);
  auto s = Poll();
  EXPECT_EQ(s.stored, 3);
  EXPECT_EQ(s.filtered, 3);
  EXPECT_NE(metrics_.Render().find("rlaif_ingest_filtered_total{reason=\"stratum_cap\"} 3"),
            std::string::npos);
}

TEST(IngestOnceTest, ReadsEverythingOncePrintsTheSummaryAndResumes) {
  TempDir dir;
  std::filesystem::create_directories(dir.Sub("logs"));
  WriteFile(dir.Sub("logs/a.jsonl"), "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\nbad\n");
  Config cfg;
  cfg.data_dir = dir.Sub("state");
  SourceConfig src;
  src.path = dir.Sub("logs/*.jsonl");
  cfg.sources = {src};
  auto r = IngestOnce(cfg);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stats.lines, 3);
  EXPECT_EQ(r->stats.stored, 2);
  EXPECT_EQ(r->stats.rejected, 1);
  auto j = nlohmann::json::parse(IngestOnceJson(*r));
  for (const char* k : {"lines", "bytes", "stored", "rejected", "seconds"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["bytes"], 40);
  EXPECT_EQ(j["unread_bytes"], 0);
  // A final line without its newline is left for the next run, and said.
  rlaif::testing::AppendFile(dir.Sub("logs/a.jsonl"), "{\"prompt\": \"three\"}\n{\"prompt\":");
  auto r2 = IngestOnce(cfg);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->stats.lines, 1);
  EXPECT_EQ(r2->stats.stored, 1);
  EXPECT_EQ(r2->unread_bytes, 10);  // {"prompt":
  rlaif::testing::AppendFile(dir.Sub("logs/a.jsonl"), " \"four\"}\n");
  auto r3 = IngestOnce(cfg);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->stats.stored, 1);
  EXPECT_EQ(r3->unread_bytes, 0);
}

}  // namespace
}  // namespace rlaif::daemon
