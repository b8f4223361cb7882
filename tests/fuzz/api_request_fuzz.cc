// REST request decoding (daemon/src/api_request.cc) without a socket: the
// body decoders of /v1/score, /v1/compare, /get_reward, /v1/labels, and the
// bounded query parameters. Checks: no crash or exception; errors carry a
// 4xx code, a type and a message; decoded items respect the documented bounds.
#include "api_request.h"
#include "fuzz_target.h"

namespace api = rlaif::daemon::api;

namespace {

void CheckError(const std::optional<api::ApiError>& e) {
  if (!e) return;
  FUZZ_CHECK(e->http == 400 || e->http == 413);
  FUZZ_CHECK(!e->type.empty() && !e->message.empty());
}

}  // namespace

RLAIF_FUZZ_TARGET(api_request) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  {
    size_t v = 0;
    const std::string param(body.substr(0, 16));
    auto e = api::ParseBoundedInt("limit", param, 1, 1000, &v);
    CheckError(e);
    if (!e) FUZZ_CHECK(v >= 1 && v <= 1000);
  }
  nlohmann::json j;
  auto e = api::ParseJsonObject(body, &j);
  CheckError(e);
  if (e) return 0;
  FUZZ_CHECK(j.is_object());

  std::vector<api::ScoreItem> items;
  bool batch = false;
  e = api::DecodeScoreItems(j, &items, &batch);
  CheckError(e);
  if (!e) {
    FUZZ_CHECK(!items.empty() && items.size() <= api::kMaxScoreItems);
    FUZZ_CHECK(batch || items.size() == 1);
    for (const auto& [p, r] : items) {
      FUZZ_CHECK(p.size() <= api::kMaxTextBytes && r.size() <= api::kMaxTextBytes);
    }
  }
  std::string prompt, a, b;
  CheckError(api::DecodeCompare(j, &prompt, &a, &b));
  e = api::DecodeRewardItems(j, &items);
  CheckError(e);
  if (!e) FUZZ_CHECK(items.size() <= api::kMaxScoreItems);
  api::HumanLabelRequest hl;
  e = api::DecodeHumanLabel(j, &hl);
  CheckError(e);
  if (!e) FUZZ_CHECK(hl.winner == "a" || hl.winner == "b" || hl.winner == "tie");
  api::RequeueRequest rq;
  e = api::DecodeRequeue(j, &rq);
  CheckError(e);
  if (!e) {
    FUZZ_CHECK(rq.stage == "generate" || rq.stage == "judge");
    FUZZ_CHECK(rq.max >= 1 && rq.max <= api::kMaxRequeue);
  }
  return 0;
}
