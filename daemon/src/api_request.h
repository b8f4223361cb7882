// Decoding and validation of REST request bodies and query parameters, apart
// from the HTTP layer so that it can be unit-tested and fuzzed without a
// socket (tests/fuzz/api_request_fuzz.cc). Every function either fills its
// output and returns std::nullopt, or returns the ApiError that the route
// sends as {"error": {"code", "type", "message"}}; none throws.
//
//   nlohmann::json body;
//   if (auto err = api::ParseJsonObject(req.body, &body)) return Send(*err);
//   std::vector<api::ScoreItem> items;
//   bool batch = false;
//   if (auto err = api::DecodeScoreItems(body, &items, &batch)) return Send(*err);
//
// Thread safety: stateless; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace rlaif::daemon::api {

// Most items in one /v1/score or /get_reward request.
inline constexpr size_t kMaxScoreItems = 256;
// Longest accepted text field (prompt, response, ids), bytes.
inline constexpr size_t kMaxTextBytes = 256 * 1024;
// Deepest accepted nesting of JSON arrays/objects in a request body.
inline constexpr int kMaxBodyDepth = 64;

// What a route answers when a request is malformed. `type` is the error
// type of the body and the `reason` label of rlaif_http_rejected_total.
struct ApiError {
  int http = 400;
  std::string type;     // e.g. "invalid_json", "too_deep", "invalid_request", "too_large"
  std::string message;  // for the client; never echoes a secret
};

// (prompt, response)
using ScoreItem = std::pair<std::string, std::string>;

// Parses a body that must be one JSON object nested at most kMaxBodyDepth deep.
// Errors: 400 too_deep, 400 invalid_json, 400 invalid_request (not an object).
std::optional<ApiError> ParseJsonObject(std::string_view body, nlohmann::json* out);

// A required string field of `obj`, at most kMaxTextBytes. Errors: 400
// invalid_request (missing, not a string), 413 too_large. `where` prefixes
// the field name in messages (e.g. "items[3].").
std::optional<ApiError> GetText(const nlohmann::json& obj, const std::string& key,
                                std::string* out, const std::string& where = "");

// /v1/score: {"prompt","response"} (batch = false) or {"items": [{"prompt",
// "response"}, ...]} (batch = true, 1..kMaxScoreItems items).
std::optional<ApiError> DecodeScoreItems(const nlohmann::json& body, std::vector<ScoreItem>* items,
                                         bool* batch);

// /v1/compare: {"prompt", "a", "b"}.
std::optional<ApiError> DecodeCompare(const nlohmann::json& body, std::string* prompt,
                                      std::string* a, std::string* b);

// /get_reward (OpenRLHF): {"query": [str...], "prompts": [str...]?}; the
// response of each item is its query after its prompt, found where it
// starts (special tokens such as BOS may come before it); without prompts,
// the whole query. A query that does not contain its prompt (cut to
// prompt_max_len, or changed by a tokenizer's decode) loses the longest
// prefix it shares with it, and its index goes into *mismatched (if given):
// scored approximately, said, not refused (one such item would fail a
// training step). May return zero items.
std::optional<ApiError> DecodeRewardItems(const nlohmann::json& body, std::vector<ScoreItem>* items,
                                          std::vector<size_t>* mismatched = nullptr);

// /v1/labels: {"pair_id", "dimension", "winner": "a"|"b"|"tie"}. The
// dimension is checked against the config by the route.
struct HumanLabelRequest {
  std::string pair_id;
  std::string dimension;
  std::string winner;
};
std::optional<ApiError> DecodeHumanLabel(const nlohmann::json& body, HumanLabelRequest* out);

// /v1/dead/requeue: {"stage": "generate"|"judge", "dead_reason": optional
// filter (e.g. "unparseable_verdict"), "max": optional 1..kMaxRequeue
// (default kMaxRequeue), "reason": optional, the operator's why (audit)}.
inline constexpr size_t kMaxRequeue = 100000;
struct RequeueRequest {
  std::string stage;
  std::string dead_reason;
  size_t max = kMaxRequeue;
};
std::optional<ApiError> DecodeRequeue(const nlohmann::json& body, RequeueRequest* out);

// /v1/judge/backfill: {"dimension": optional, only pairs lacking it, "max":
// optional 1..kMaxRequeue (default kDefaultBackfill), "reason": optional}.
inline constexpr size_t kDefaultBackfill = 10000;
struct BackfillRequest {
  std::string dimension;
  size_t max = kDefaultBackfill;
};
std::optional<ApiError> DecodeBackfill(const nlohmann::json& body, BackfillRequest* out);

// A non-negative decimal query parameter in [lo, hi] (at most 9 digits).
// Errors: 400 invalid_request.
std::optional<ApiError> ParseBoundedInt(const std::string& key, const std::string& value,
                                        size_t lo, size_t hi, size_t* out);

}  // namespace rlaif::daemon::api
