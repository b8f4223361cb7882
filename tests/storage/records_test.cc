// Record codecs: round trips, tolerance of invalid UTF-8, and kCorruption
// (never an exception) on malformed input.
#include "rlaif/storage/records.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace rlaif::storage {
namespace {

PairRecord SamplePair() {
  PairRecord p;
  p.id = "00000000000000aa";
  p.prompt_id = "00000000000000bb";
  p.prompt = "What is 2+2?";
  p.a = ResponseRecord{"4", "sft-7b", 11, 0.7, 123.5, 9, 1};
  p.b = ResponseRecord{"Four, I think.", "sft-7b", 12, 0.7, 150.25, 9, 4};
  p.generator = "sft-7b@t0.7";
  p.created_at_ms = 1700000000123;
  return p;
}

TEST(RecordsTest, PromptRoundTrip) {
  PromptRecord r{
      "abc",        "hello\nworld \"quoted\" ünïcode", "resp", "/var/log/a.jsonl", (1ULL << 40) + 7,
      1700000000000};
  auto d = DecodePrompt(EncodePrompt(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->id, r.id);
  EXPECT_EQ(d->text, r.text);
  EXPECT_EQ(d->logged_response, r.logged_response);
  EXPECT_EQ(d->source_path, r.source_path);
  EXPECT_EQ(d->source_offset, r.source_offset);
  EXPECT_EQ(d->ingested_at_ms, r.ingested_at_ms);
}

TEST(RecordsTest, EncodingIsVersionedJson) {
  auto j = nlohmann::json::parse(EncodePair(SamplePair()));
  EXPECT_EQ(j.at("v"), 1);
  EXPECT_EQ(j.at("a").at("text"), "4");
}

TEST(RecordsTest, PairRoundTrip) {
  PairRecord r = SamplePair();
  auto d = DecodePair(EncodePair(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->id, r.id);
  EXPECT_EQ(d->prompt_id, r.prompt_id);
  EXPECT_EQ(d->prompt, r.prompt);
  EXPECT_EQ(d->generator, r.generator);
  EXPECT_EQ(d->created_at_ms, r.created_at_ms);
  for (auto [got, want] : {std::pair{&d->a, &r.a}, std::pair{&d->b, &r.b}}) {
    EXPECT_EQ(got->text, want->text);
    EXPECT_EQ(got->model, want->model);
    EXPECT_EQ(got->seed, want->seed);
    EXPECT_DOUBLE_EQ(got->temperature, want->temperature);
    EXPECT_DOUBLE_EQ(got->latency_ms, want->latency_ms);
    EXPECT_EQ(got->prompt_tokens, want->prompt_tokens);
    EXPECT_EQ(got->completion_tokens, want->completion_tokens);
  }
}

TEST(RecordsTest, LabelRoundTrip) {
  LabelRecord r{"pair1", "helpfulness", "judge-v2", 0.83, true, "A", "B", "human", 42};
  auto d = DecodeLabel(EncodeLabel(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->pair_id, r.pair_id);
  EXPECT_EQ(d->dimension, r.dimension);
  EXPECT_EQ(d->judge, r.judge);
  EXPECT_DOUBLE_EQ(d->p_a, r.p_a);
  EXPECT_EQ(d->tie, r.tie);
  EXPECT_EQ(d->verdict_ab, r.verdict_ab);
  EXPECT_EQ(d->verdict_ba, r.verdict_ba);
  EXPECT_EQ(d->source, r.source);
  EXPECT_EQ(d->created_at_ms, r.created_at_ms);
}

TEST(RecordsTest, SourceRoundTrip) {
  SourceCheckpoint r{"/logs/app.jsonl", 2049, 0xFFFFFFFFFFFFFFF0ULL, "deadbeef", 1024, 99999, 321,
                     1700000000001};
  auto d = DecodeSource(EncodeSource(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->path, r.path);
  EXPECT_EQ(d->device, r.device);
  EXPECT_EQ(d->inode, r.inode);
  EXPECT_EQ(d->fingerprint, r.fingerprint);
  EXPECT_EQ(d->fingerprint_len, r.fingerprint_len);
  EXPECT_EQ(d->offset, r.offset);
  EXPECT_EQ(d->lines, r.lines);
  EXPECT_EQ(d->updated_at_ms, r.updated_at_ms);
}

TEST(RecordsTest, DeadLetterRoundTrip) {
  DeadLetter r{"ingest", "bad_json", "line is not JSON", "/logs/a:10", "{oops", 5};
  auto d = DecodeDeadLetter(EncodeDeadLetter(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->stage, r.stage);
  EXPECT_EQ(d->reason, r.reason);
  EXPECT_EQ(d->detail, r.detail);
  EXPECT_EQ(d->ref, r.ref);
  EXPECT_EQ(d->raw, r.raw);
  EXPECT_EQ(d->at_ms, r.at_ms);
}

TEST(RecordsTest, ModelRoundTrip) {
  ModelRecord r;
  r.version = "v0003-20261127T094500";
  r.state = "candidate";
  r.dir = "/models/v3";
  r.parent = "v0002";
  r.accuracy = 0.71;
  r.loss = 0.55;
  r.holdout_pairs = 500;
  r.train_pairs = 9000;
  r.metrics_json = R"({"accuracy":0.71})";
  r.reason = "accuracy +0.02 over live";
  r.created_at_ms = 10;
  r.promoted_at_ms = 20;
  auto d = DecodeModel(EncodeModel(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->version, r.version);
  EXPECT_EQ(d->state, r.state);
  EXPECT_EQ(d->dir, r.dir);
  EXPECT_EQ(d->parent, r.parent);
  EXPECT_DOUBLE_EQ(d->accuracy, r.accuracy);
  EXPECT_DOUBLE_EQ(d->loss, r.loss);
  EXPECT_EQ(d->holdout_pairs, r.holdout_pairs);
  EXPECT_EQ(d->train_pairs, r.train_pairs);
  EXPECT_EQ(d->metrics_json, r.metrics_json);
  EXPECT_EQ(d->reason, r.reason);
  EXPECT_EQ(d->created_at_ms, r.created_at_ms);
  EXPECT_EQ(d->promoted_at_ms, r.promoted_at_ms);
  EXPECT_EQ(d->files_deleted_at_ms, 0);
  // Added later: absent in older records (0), kept when set.
  EXPECT_EQ(EncodeModel(r).find("files_deleted_at_ms"), std::string::npos);
  r.files_deleted_at_ms = 30;
  d = DecodeModel(EncodeModel(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->files_deleted_at_ms, 30);
}

TEST(RecordsTest, EventRoundTrip) {
  EventRecord r{77, "promote", "cli", "promoted v3", R"({"from":"v2"})"};
  auto d = DecodeEvent(EncodeEvent(r));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->at_ms, r.at_ms);
  EXPECT_EQ(d->kind, r.kind);
  EXPECT_EQ(d->actor, r.actor);
  EXPECT_EQ(d->message, r.message);
  EXPECT_EQ(d->data_json, r.data_json);
}

TEST(RecordsTest, InvalidUtf8IsReplacedNotThrown) {
  PromptRecord r;
  r.id = "x";
  r.text = std::string("ok \xff\xfe bad \xc3");  // invalid and truncated sequences
  std::string bytes;
  ASSERT_NO_THROW(bytes = EncodePrompt(r));
  auto d = DecodePrompt(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->text.rfind("ok ", 0), 0u);
  EXPECT_NE(d->text.find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD

  DeadLetter dl;
  dl.raw = "\x80\x81";
  ASSERT_NO_THROW(bytes = EncodeDeadLetter(dl));
  EXPECT_TRUE(DecodeDeadLetter(bytes).ok());
}

TEST(RecordsTest, MalformedInputIsCorruption) {
  LabelRecord label;
  label.pair_id = "p";
  label.dimension = "d";
  label.judge = "j";
  const std::string good = EncodeLabel(label);
  const std::string cases[] = {
      "",
      "not json",
      "[1,2,3]",
      "\"a string\"",
      good.substr(0, good.size() / 2),                   // truncated
      R"({"pair_id":"p","dimension":"d","judge":"j"})",  // no version
      R"({"v":"1","pair_id":"p"})",                      // version not a number
      R"({"v":2,"pair_id":"p","dimension":"d","judge":"j","p_a":0.5,"tie":false,)"
      R"("verdict_ab":"","verdict_ba":"","source":"ai","created_at_ms":0})",  // future version
      R"({"v":1,"pair_id":"p"})",                                             // missing fields
      R"({"v":1,"pair_id":7,"dimension":"d","judge":"j","p_a":0.5,"tie":false,)"
      R"("verdict_ab":"","verdict_ba":"","source":"ai","created_at_ms":0})",  // wrong type
  };
  for (const std::string& bytes : cases) {
    Result<LabelRecord> d = LabelRecord{};
    ASSERT_NO_THROW(d = DecodeLabel(bytes)) << bytes;
    ASSERT_FALSE(d.ok()) << "accepted: " << bytes;
    EXPECT_EQ(d.status().code(), StatusCode::kCorruption) << bytes;
    EXPECT_NE(d.status().message().find("label"), std::string::npos) << d.status().message();
  }
  EXPECT_TRUE(DecodeLabel(good).ok());

  // Every decoder rejects garbage and the wrong record kind's nested shape.
  EXPECT_EQ(DecodePrompt("{").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeSource("{}").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeDeadLetter("null").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeModel("42").status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeEvent("\xff\xff").status().code(), StatusCode::kCorruption);
  auto pair = nlohmann::json::parse(EncodePair(SamplePair()));
  pair["a"] = "not an object";
  EXPECT_EQ(DecodePair(pair.dump()).status().code(), StatusCode::kCorruption);
}

// EncodePrompt writes its JSON directly (ingest's hot path): byte for byte
// what nlohmann writes for the same record, escapes, UTF-8 and bad bytes included.
TEST(RecordsTest, EncodePromptMatchesTheGenericJsonEncoding) {
  const std::string texts[] = {
      "plain",
      "",
      "quote \" backslash \\ slash / tab\t nl\n cr\r bs\b ff\f",
      std::string("ctl \x01\x1f del \x7f nul ") + std::string(1, '\0'),
      "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 <EMAIL_1>",
      "bad \xff byte",
      "truncated \xc3",
      "surrogate \xed\xa0\x80",
      "overlong \xc0\xaf",
  };
  for (const std::string& t : texts) {
    PromptRecord r;
    r.id = "0123456789abcdef";
    r.text = t;
    r.logged_response = t + " response";
    r.source_path = "/var/log/app.jsonl";
    r.source_offset = 18446744073709551615ULL;
    r.ingested_at_ms = -5;
    nlohmann::json j = {{"v", 1},
                        {"id", r.id},
                        {"text", r.text},
                        {"logged_response", r.logged_response},
                        {"source_path", r.source_path},
                        {"source_offset", r.source_offset},
                        {"ingested_at_ms", r.ingested_at_ms}};
    EXPECT_EQ(EncodePrompt(r),
              j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        << t;
    auto back = DecodePrompt(EncodePrompt(r));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->source_offset, r.source_offset);
  }
}

}  // namespace
}  // namespace rlaif::storage
