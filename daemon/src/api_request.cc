#include "api_request.h"

#include <algorithm>

#include "rlaif/common/json_depth.h"

namespace rlaif::daemon::api {

namespace {

using json = nlohmann::json;

ApiError Error(int http, std::string type, std::string message) {
  return ApiError{http, std::move(type), std::move(message)};
}

}  // namespace

std::optional<ApiError> ParseJsonObject(std::string_view body, json* out) {
  // Checked before parsing, so that no later step (dump, copies, error
  // messages) ever meets a pathological tree.
  if (JsonNestsDeeperThan(body, kMaxBodyDepth)) {
    return Error(400, "too_deep",
                 "request body nests deeper than " + std::to_string(kMaxBodyDepth) + " levels");
  }
  try {
    *out = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    return Error(400, "invalid_json", std::string("request body is not valid JSON: ") + e.what());
  }
  if (!out->is_object()) return Error(400, "invalid_request", "request body must be a JSON object");
  return std::nullopt;
}

std::optional<ApiError> GetText(const json& obj, const std::string& key, std::string* out,
                                const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return Error(400, "invalid_request",
                 where + "\"" + key + "\" is required and must be a string");
  }
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > kMaxTextBytes) {
    return Error(413, "too_large",
                 where + "\"" + key + "\" exceeds " + std::to_string(kMaxTextBytes) + " bytes");
  }
  *out = s;
  return std::nullopt;
}

std::optional<ApiError> DecodeScoreItems(const json& body, std::vector<ScoreItem>* items,
                                         bool* batch) {
  items->clear();
  *batch = body.contains("items");
  if (!*batch) {
    std::string p, r;
    if (auto e = GetText(body, "prompt", &p)) return e;
    if (auto e = GetText(body, "response", &r)) return e;
    items->emplace_back(std::move(p), std::move(r));
    return std::nullopt;
  }
  if (body.contains("prompt") || body.contains("response")) {
    return Error(400, "invalid_request",
                 "give either \"items\" or \"prompt\" and \"response\", not both");
  }
  const json& arr = body["items"];
  if (!arr.is_array() || arr.empty()) {
    return Error(400, "invalid_request", "\"items\" must be a non-empty array");
  }
  if (arr.size() > kMaxScoreItems) {
    return Error(413, "too_large",
                 "at most " + std::to_string(kMaxScoreItems) + " items per request");
  }
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_object()) {
      return Error(400, "invalid_request", "items[" + std::to_string(i) + "] must be an object");
    }
    std::string p, r;
    const std::string where = "items[" + std::to_string(i) + "].";
    if (auto e = GetText(arr[i], "prompt", &p, where)) return e;
    if (auto e = GetText(arr[i], "response", &r, where)) return e;
    items->emplace_back(std::move(p), std::move(r));
  }
  return std::nullopt;
}

std::optional<ApiError> DecodeCompare(const json& body, std::string* prompt, std::string* a,
                                      std::string* b) {
  if (auto e = GetText(body, "prompt", prompt)) return e;
  if (auto e = GetText(body, "a", a)) return e;
  return GetText(body, "b", b);
}

std::optional<ApiError> DecodeRewardItems(const json& body, std::vector<ScoreItem>* items,
                                          std::vector<size_t>* mismatched) {
  items->clear();
  if (mismatched) mismatched->clear();
  auto q_it = body.find("query");
  if (q_it == body.end() || !q_it->is_array()) {
    return Error(400, "invalid_request", "\"query\" must be an array of strings");
  }
  const json& q = *q_it;
  static const json kNoPrompts = json::array();
  auto p_it = body.find("prompts");
  const json& prompts = p_it == body.end() ? kNoPrompts : *p_it;
  if (!prompts.is_array() || (!prompts.empty() && prompts.size() != q.size())) {
    return Error(400, "invalid_request", "\"prompts\" must be an array as long as \"query\"");
  }
  if (q.size() > kMaxScoreItems) {
    return Error(413, "too_large", "at most " + std::to_string(kMaxScoreItems) + " queries");
  }
  for (size_t i = 0; i < q.size(); ++i) {
    if (!q[i].is_string() || (!prompts.empty() && !prompts[i].is_string())) {
      return Error(400, "invalid_request", "query and prompts entries must be strings");
    }
    const auto& query = q[i].get_ref<const std::string&>();
    const std::string prompt = prompts.empty() ? "" : prompts[i].get<std::string>();
    // The response is the query after its prompt. A query decoded with its
    // special tokens starts with some (BOS, padding) before the prompt: the
    // prompt is found where it starts.
    const size_t at = query.find(prompt);
    if (at != std::string::npos) {
      items->emplace_back(prompt, query.substr(at + prompt.size()));
      continue;
    }
    // Not there: what the query shares with the prompt is not the response
    // (not prompt + whole query, a plausible but wrong reward).
    const size_t shared = static_cast<size_t>(
        std::mismatch(query.begin(), query.end(), prompt.begin(), prompt.end()).first -
        query.begin());
    items->emplace_back(prompt, query.substr(shared));
    if (mismatched) mismatched->push_back(i);
  }
  return std::nullopt;
}

std::optional<ApiError> DecodeHumanLabel(const json& body, HumanLabelRequest* out) {
  if (auto e = GetText(body, "pair_id", &out->pair_id)) return e;
  if (auto e = GetText(body, "dimension", &out->dimension)) return e;
  if (auto e = GetText(body, "winner", &out->winner)) return e;
  if (out->winner != "a" && out->winner != "b" && out->winner != "tie") {
    return Error(400, "invalid_request", "\"winner\" must be \"a\", \"b\" or \"tie\"");
  }
  return std::nullopt;
}

// "max": optional, an integer in [1, kMaxRequeue]; *max is kept if absent.
static std::optional<ApiError> GetMax(const json& body, size_t* max) {
  if (body.contains("max") && !body["max"].is_null()) {
    const json& m = body["max"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1 ||
        m.get<int64_t>() > static_cast<int64_t>(kMaxRequeue)) {
      return Error(400, "invalid_request",
                   "\"max\" must be an integer in [1, " + std::to_string(kMaxRequeue) + "]");
    }
    *max = static_cast<size_t>(m.get<int64_t>());
  }
  return std::nullopt;
}

std::optional<ApiError> DecodeRequeue(const json& body, RequeueRequest* out) {
  if (auto e = GetText(body, "stage", &out->stage)) return e;
  if (out->stage != "generate" && out->stage != "judge") {
    return Error(400, "invalid_request",
                 "\"stage\" must be \"generate\" or \"judge\" (bad log lines cannot be "
                 "re-queued: append them to a source again)");
  }
  if (body.contains("dead_reason") && !body["dead_reason"].is_null()) {
    if (auto e = GetText(body, "dead_reason", &out->dead_reason)) return e;
  }
  return GetMax(body, &out->max);
}

std::optional<ApiError> DecodeBackfill(const json& body, BackfillRequest* out) {
  if (body.contains("dimension") && !body["dimension"].is_null()) {
    if (auto e = GetText(body, "dimension", &out->dimension)) return e;
  }
  return GetMax(body, &out->max);
}

std::optional<ApiError> ParseBoundedInt(const std::string& key, const std::string& value,
                                        size_t lo, size_t hi, size_t* out) {
  size_t v = 0;
  bool ok = !value.empty() && value.size() <= 9;
  for (char c : value) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  if (!ok || v < lo || v > hi) {
    return Error(400, "invalid_request",
                 key + " must be an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  }
  *out = v;
  return std::nullopt;
}

}  // namespace rlaif::daemon::api
