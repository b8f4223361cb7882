#include "sim.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "rlaif/common/hash.h"

namespace rlaif::sim {

namespace {

using json = nlohmann::json;

// Known responses are indexed by a rolling hash of their first kWindow bytes
// (or of the whole response when shorter), so finding every known response
// in a judge request costs O(request bytes × distinct window lengths),
// independent of the number of pairs.
constexpr size_t kWindow = 32;
constexpr uint64_t kRollBase = 1099511628211ULL;
// A request quoting one short response thousands of times must not blow up.
constexpr size_t kMaxOccurrences = 4096;

constexpr char kHhAssistant[] = "\n\nAssistant:";
constexpr char kSynthOpen[] = "[sim-synthetic ";
constexpr char kSynthClose[] = "[/sim-synthetic]";

std::string Trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

uint64_t RollingHash(const char* data, size_t k) {
  uint64_t h = 0;
  for (size_t i = 0; i < k; ++i) h = h * kRollBase + static_cast<unsigned char>(data[i]);
  return h;
}

// Text of a message "content": a string, or an array of {"type":"text"} parts.
std::string ContentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array()) {
    for (const json& part : content) {
      if (part.is_object() && part.value("type", "") == "text") {
        if (!out.empty()) out += "\n";
        out += part.value("text", "");
      }
    }
  }
  return out;
}

// A TRL field: a string, or (conversational format) a list of messages of
// which the last one with `role` ("" = any) counts.
std::optional<std::string> TrlField(const json& v, const std::string& role) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) return std::nullopt;
  for (auto it = v.rbegin(); it != v.rend(); ++it) {
    if (!it->is_object() || !it->contains("content")) continue;
    if (!role.empty() && it->value("role", "") != role) continue;
    return ContentText((*it)["content"]);
  }
  return std::nullopt;
}

std::optional<SimPair> ParsePairLine(const std::string& line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("chosen") || !j.contains("rejected")) return std::nullopt;
  SimPair p;
  if (j.contains("prompt")) {
    auto prompt = TrlField(j["prompt"], "user");
    auto chosen = TrlField(j["chosen"], "");
    auto rejected = TrlField(j["rejected"], "");
    if (!prompt || !chosen || !rejected) return std::nullopt;
    p = {Trim(*prompt), Trim(*chosen), Trim(*rejected)};
  } else {
    if (!j["chosen"].is_string() || !j["rejected"].is_string()) return std::nullopt;
    const std::string chosen = j["chosen"].get<std::string>();
    const std::string rejected = j["rejected"].get<std::string>();
    size_t common = 0;
    while (common < chosen.size() && common < rejected.size() &&
           chosen[common] == rejected[common]) {
      ++common;
    }
    // The last "\n\nAssistant:" that lies entirely inside the shared prefix.
    const size_t marker_len = sizeof(kHhAssistant) - 1;
    if (common < marker_len) return std::nullopt;
    size_t at = chosen.rfind(kHhAssistant, common - marker_len);
    if (at == std::string::npos) return std::nullopt;
    const size_t cut = at + marker_len;
    p = {Trim(chosen.substr(0, cut)), Trim(chosen.substr(cut)), Trim(rejected.substr(cut))};
  }
  if (p.chosen.empty() || p.rejected.empty() || p.chosen == p.rejected) return std::nullopt;
  return p;
}

json ErrorBody(const std::string& message, const std::string& type, const json& code) {
  return {{"error", {{"message", message}, {"type", type}, {"code", code}}}};
}

SimReply JsonReply(int status, const json& body) {
  SimReply r;
  r.status = status;
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

int64_t RoughTokens(size_t bytes) { return std::max<int64_t>(1, static_cast<int64_t>(bytes / 4)); }

// Spans [begin, end) of the texts enclosed by sim-synthetic tags.
std::vector<std::pair<size_t, size_t>> SyntheticSpans(const std::string& content) {
  std::vector<std::pair<size_t, size_t>> spans;
  size_t from = 0;
  while (spans.size() < 16) {
    size_t open = content.find(kSynthOpen, from);
    if (open == std::string::npos) break;
    size_t close = content.find(kSynthClose, open);
    if (close == std::string::npos) break;
    spans.emplace_back(open, close + sizeof(kSynthClose) - 1);
    from = close + 1;
  }
  return spans;
}

// Length of the text between the last "RESPONSE_<label>" marker line and the
// following "END_RESPONSE_<label>" marker line; nullopt if absent. A
// best-effort reading of judge templates like rlaifd's, used only for
// responses the simulator does not know.
std::optional<size_t> MarkedLength(const std::string& content, const std::string& label) {
  size_t close = content.rfind("END_RESPONSE_" + label);
  if (close == std::string::npos || close == 0) return std::nullopt;
  size_t open = content.rfind("RESPONSE_" + label, close - 1);
  if (open == std::string::npos) return std::nullopt;
  size_t begin = content.find('\n', open);
  size_t end = content.rfind('\n', close);
  if (begin == std::string::npos || end == std::string::npos || end <= begin) return std::nullopt;
  return end - begin - 1;
}

}  // namespace

Result<std::vector<SimPair>> LoadPairs(const std::string& path, PairsLoadStats* stats) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot open pairs file " + path);
  std::vector<SimPair> pairs;
  PairsLoadStats local;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (Trim(line).empty()) continue;
    ++local.lines;
    auto p = ParsePairLine(line);
    if (!p) {
      if (++local.skipped <= 5) {
        spdlog::warn("{}:{}: skipped (not a pair with distinct non-empty responses)", path,
                     line_no);
      }
      continue;
    }
    pairs.push_back(std::move(*p));
    ++local.loaded;
  }
  if (stats) *stats = local;
  return pairs;
}

Simulator::Simulator(std::vector<SimPair> pairs, SimOptions options)
    : pairs_(std::move(pairs)), options_(options), fault_rng_(options.seed) {
  for (uint32_t i = 0; i < pairs_.size(); ++i) {
    by_prompt_[pairs_[i].prompt].push_back(i);
    for (uint32_t side = 0; side < 2; ++side) {
      const std::string& text = side == 0 ? pairs_[i].chosen : pairs_[i].rejected;
      const size_t k = std::min(kWindow, text.size());
      by_prefix_[k][RollingHash(text.data(), k)].push_back(i * 2 + side);
    }
  }
}

const std::string& Simulator::EntryText(uint32_t entry) const {
  const SimPair& p = pairs_[entry / 2];
  return entry % 2 == 0 ? p.chosen : p.rejected;
}

std::vector<Simulator::Occurrence> Simulator::FindKnownResponses(const std::string& content) const {
  std::vector<Occurrence> out;
  for (const auto& [k, table] : by_prefix_) {
    if (k == 0 || k > content.size()) continue;
    uint64_t top = 1;  // kRollBase^(k-1)
    for (size_t i = 1; i < k; ++i) top *= kRollBase;
    uint64_t h = RollingHash(content.data(), k);
    for (size_t i = 0; i + k <= content.size(); ++i) {
      if (i > 0) {
        h = (h - static_cast<unsigned char>(content[i - 1]) * top) * kRollBase +
            static_cast<unsigned char>(content[i + k - 1]);
      }
      auto it = table.find(h);
      if (it == table.end()) continue;
      for (uint32_t entry : it->second) {
        const std::string& text = EntryText(entry);
        if (content.compare(i, text.size(), text) == 0) {
          out.push_back({entry, i});
          if (out.size() >= kMaxOccurrences) return out;
        }
      }
    }
  }
  return out;
}

std::optional<Simulator::KnownPair> Simulator::FindKnownPair(const std::string& content) const {
  std::vector<Occurrence> occs = FindKnownResponses(content);
  // pair → positions of its chosen (side 0) and rejected (side 1).
  std::map<uint32_t, std::array<std::vector<size_t>, 2>> found;
  for (const Occurrence& o : occs) found[o.entry / 2][o.entry % 2].push_back(o.pos);

  std::optional<uint32_t> best;
  bool best_has_prompt = false;
  for (const auto& [pair, positions] : found) {
    if (positions[0].empty() || positions[1].empty()) continue;
    const std::string& prompt = pairs_[pair].prompt;
    bool has_prompt = !prompt.empty() && content.find(prompt) != std::string::npos;
    if (!best || (has_prompt && !best_has_prompt)) {
      best = pair;
      best_has_prompt = has_prompt;
    }
  }
  if (!best) return std::nullopt;
  const auto& positions = found[*best];
  // One response may contain the other ("Yes." vs "Yes. Because ..."): a
  // side's own slot is its first occurrence not inside the other side's.
  auto own_slot = [&](int side) {
    const size_t len = EntryText(*best * 2 + side).size();
    const size_t other_len = EntryText(*best * 2 + (1 - side)).size();
    for (size_t p : positions[side]) {
      bool inside = false;
      for (size_t q : positions[1 - side]) {
        if (q <= p && p + len <= q + other_len) inside = true;
      }
      if (!inside) return p;
    }
    return positions[side].front();
  };
  return KnownPair{*best, own_slot(0) < own_slot(1)};
}

void Simulator::Sleep(int ms) {
  if (ms <= 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return shutdown_; });
}

void Simulator::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool Simulator::AcquireSlot() {
  std::unique_lock<std::mutex> lock(mu_);
  if (options_.max_concurrency > 0 && in_flight_ >= options_.max_concurrency) {
    if (options_.reject_overload) {
      overloaded_++;
      return false;
    }
    cv_.wait(lock, [&] { return shutdown_ || in_flight_ < options_.max_concurrency; });
    if (shutdown_) return false;
  }
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
  return true;
}

void Simulator::ReleaseSlot() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
  }
  cv_.notify_all();
}

std::optional<SimReply> Simulator::MaybeFault() {
  if (options_.fault_rate <= 0 || options_.fault_kinds.empty()) return std::nullopt;
  double u;
  std::string kind;
  {
    std::lock_guard<std::mutex> lock(mu_);
    u = std::uniform_real_distribution<double>(0.0, 1.0)(fault_rng_);
    kind = options_.fault_kinds[fault_rng_() % options_.fault_kinds.size()];
  }
  if (u >= options_.fault_rate) return std::nullopt;
  faults_++;
  const std::vector<std::string> all = SimOptions::KnownFaultKinds();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i] == kind) faults_by_kind_[i]++;
  }
  if (kind == "hang") {
    // Holds the request past any sensible client timeout. httplib 0.11
    // cannot tell that the client hung up, so the hang is bounded instead.
    Sleep(options_.hang_ms);
    return JsonReply(
        504, ErrorBody("simulated hang: no answer for " + std::to_string(options_.hang_ms) + " ms",
                       "timeout", nullptr));
  }
  if (kind == "malformed") {
    SimReply r;
    // A chat completion cut short in the middle of the verdict.
    r.body = R"({"id":"chatcmpl-sim-malformed","object":"chat.completion",)"
             R"("choices":[{"index":0,"message":{"role":"assistant","content":"{\"winner)";
    return r;
  }
  if (kind == "truncated") {
    SimReply r = Completion("sim", "this reply is cut off by a simulated dropped connection", 64);
    r.truncate = true;
    return r;
  }
  if (kind == "quota") {
    return JsonReply(429, ErrorBody("You exceeded your current quota, please check your plan and "
                                    "billing details. (simulated)",
                                    "insufficient_quota", "insufficient_quota"));
  }
  if (kind == "429") {
    SimReply r = JsonReply(429, ErrorBody("Rate limit reached (simulated). Please retry after 1s.",
                                          "requests", "rate_limit_exceeded"));
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (kind == "500") {
    return JsonReply(500, ErrorBody("The server had an error while processing your request "
                                    "(simulated).",
                                    "server_error", nullptr));
  }
  return JsonReply(
      503,
      {{"error", {{"code", 503}, {"message", "Loading model"}, {"type", "unavailable_error"}}}});
}

SimReply Simulator::Completion(const std::string& model, const std::string& content,
                               size_t prompt_bytes, const std::string* logprobs_json) {
  const uint64_t n = response_ids_++;
  json body = {
      {"id",
       "chatcmpl-sim-" + HexId(HashFields({std::to_string(options_.seed), std::to_string(n)}))},
      {"object", "chat.completion"},
      {"created", std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count()},
      {"model", model},
      {"choices",
       json::array({{{"index", 0},
                     {"message", {{"role", "assistant"}, {"content", content}}},
                     {"logprobs", logprobs_json ? json::parse(*logprobs_json) : json(nullptr)},
                     {"finish_reason", "stop"}}})},
      {"usage",
       {{"prompt_tokens", RoughTokens(prompt_bytes)},
        {"completion_tokens", RoughTokens(content.size())},
        {"total_tokens", RoughTokens(prompt_bytes) + RoughTokens(content.size())}}}};
  return JsonReply(200, body);
}

SimReply Simulator::Generate(const std::string& model, const std::string& prompt,
                             const std::optional<int64_t>& seed, size_t prompt_bytes) {
  const std::string key = Trim(prompt);
  const std::string sim_seed = std::to_string(options_.seed);
  // Without a request seed the side alternates, like sampling would vary.
  const uint64_t request_seed = seed ? static_cast<uint64_t>(*seed) : unseeded_calls_.fetch_add(1);
  auto it = by_prompt_.find(key);
  if (it != by_prompt_.end()) {
    const std::vector<uint32_t>& candidates = it->second;
    const SimPair& p = pairs_[candidates[HashFields({"pair", sim_seed, key}) % candidates.size()]];
    const uint64_t side = (HashFields({"side", sim_seed, key}) + request_seed) & 1;
    return Completion(model, side == 0 ? p.chosen : p.rejected, prompt_bytes);
  }
  // Unknown prompt: a deterministic synthetic answer whose length varies.
  const uint64_t h = HashFields({"synthetic", sim_seed, std::to_string(request_seed), key});
  static constexpr const char* kFiller[] = {
      "It depends on the details you care about most.",
      "Here is a short overview of the main points.",
      "A careful answer would weigh the trade-offs first.",
      "Several approaches work; the simplest is usually best.",
      "Let me know if you would like more detail on any part.",
      "This is a simulated response produced by rlaif-sim.",
  };
  std::string excerpt;
  for (char c : key.substr(0, 60)) {
    if (c != '[' && c != ']' && !std::iscntrl(static_cast<unsigned char>(c))) excerpt += c;
  }
  std::string text = std::string(kSynthOpen) + HexId(h).substr(0, 8) +
                     "] A simulated answer to \"" + excerpt + "\".";
  const int sentences = 1 + static_cast<int>(h % 5);
  for (int i = 0; i < sentences; ++i) {
    text += " ";
    text += kFiller[(h >> (8 * (i + 1))) % (sizeof(kFiller) / sizeof(kFiller[0]))];
  }
  text += " ";
  text += kSynthClose;
  return Completion(model, text, prompt_bytes);
}

SimReply Simulator::JudgeReply(const std::string& model, const std::string& content, bool json_mode,
                               bool logprobs, size_t prompt_bytes) {
  const std::string sim_seed = std::to_string(options_.seed);
  std::string truth;  // "A" | "B" | "tie"
  std::optional<size_t> len_a, len_b;  // of the responses shown first / second
  if (auto known = FindKnownPair(content)) {
    truth = known->chosen_first ? "A" : "B";
    const SimPair& p = pairs_[known->pair];
    len_a = (known->chosen_first ? p.chosen : p.rejected).size();
    len_b = (known->chosen_first ? p.rejected : p.chosen).size();
  } else {
    judge_unknown_++;
    auto spans = SyntheticSpans(content);
    if (spans.size() >= 2) {
      len_a = spans[spans.size() - 2].second - spans[spans.size() - 2].first;
      len_b = spans.back().second - spans.back().first;
    } else {
      len_a = MarkedLength(content, "A");
      len_b = MarkedLength(content, "B");
    }
    if (len_a && len_b && *len_a != *len_b) {
      truth = *len_a < *len_b ? "A" : "B";
    } else {
      truth = "tie";
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!answered_.insert(Hash64(content)).second) judge_repeats_++;
  }
  if (options_.refusal > 0 &&
      HashToUnit(HashFields({"refusal", sim_seed, content})) < options_.refusal) {
    refusals_++;
    return Completion(model,
                      "Both responses have merits, and which one is better depends on what the "
                      "user values, so I would rather not pick one.",
                      prompt_bytes);
  }
  std::string verdict = truth;
  if (HashToUnit(HashFields({"bias", sim_seed, content})) < options_.position_bias) {
    verdict = "A";
  } else if (len_a && len_b && *len_a != *len_b &&
             HashToUnit(HashFields({"length", sim_seed, content})) < options_.length_bias) {
    verdict = *len_a > *len_b ? "A" : "B";
  } else if (truth != "tie" &&
             HashToUnit(HashFields({"noise", sim_seed, content})) < options_.noise) {
    verdict = truth == "A" ? "B" : "A";
  }
  const std::string reply = json_mode ? "{\"winner\": \"" + verdict + "\"}" : verdict;
  if (!logprobs || !options_.logprobs) return Completion(model, reply, prompt_bytes);
  // The verdict's probability; the rest goes 80/20 to the other letter and
  // tie (or split evenly between A and B when the verdict is tie).
  const double conf = 0.55 + 0.44 * HashToUnit(HashFields({"conf", sim_seed, content}));
  std::vector<std::pair<std::string, double>> alts;
  if (verdict == "tie") {
    alts = {{"tie", conf}, {"A", (1 - conf) / 2}, {"B", (1 - conf) / 2}};
  } else {
    alts = {
        {verdict, conf}, {verdict == "A" ? "B" : "A", (1 - conf) * 0.8}, {"tie", (1 - conf) * 0.2}};
  }
  json top = json::array();
  for (const auto& [tok, p] : alts)
    top.push_back({{"token", tok}, {"logprob", std::log(p)}, {"bytes", nullptr}});
  auto token = [](const std::string& t, double lp, json top_alts) {
    return json{
        {"token", t}, {"logprob", lp}, {"bytes", nullptr}, {"top_logprobs", std::move(top_alts)}};
  };
  json tokens = json::array();
  const std::vector<std::string> pieces =
      json_mode ? std::vector<std::string>{"{\"", "winner", "\":", " \"", verdict, "\"}"}
                : std::vector<std::string>{verdict};
  for (const std::string& piece : pieces) {
    if (piece == verdict) {
      tokens.push_back(token(piece, std::log(conf), top));
    } else {
      tokens.push_back(token(
          piece, 0.0, json::array({{{"token", piece}, {"logprob", 0.0}, {"bytes", nullptr}}})));
    }
  }
  const std::string lp = json{{"content", std::move(tokens)}}.dump();
  return Completion(model, reply, prompt_bytes, &lp);
}

std::optional<SimReply> Simulator::Unauthorized(const std::string& authorization) {
  if (options_.api_key.empty() || authorization == "Bearer " + options_.api_key) {
    return std::nullopt;
  }
  unauthorized_++;
  const std::string given =
      authorization.rfind("Bearer ", 0) == 0 ? authorization.substr(7) : std::string();
  if (given.empty()) {
    return JsonReply(401, ErrorBody("You didn't provide an API key. You need to provide your API "
                                    "key in an Authorization header using Bearer auth.",
                                    "invalid_request_error", nullptr));
  }
  // As OpenAI: the key's first and last few characters, the rest starred.
  const std::string masked =
      given.size() > 8
          ? given.substr(0, 3) + std::string(given.size() - 7, '*') + given.substr(given.size() - 4)
          : std::string(given.size(), '*');
  return JsonReply(401, ErrorBody("Incorrect API key provided: " + masked + ".",
                                  "invalid_request_error", "invalid_api_key"));
}

SimReply Simulator::ChatCompletions(const std::string& request_body) {
  json req = json::parse(request_body, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& message) {
    bad_requests_++;
    return JsonReply(400, ErrorBody(message, "invalid_request_error", nullptr));
  };
  if (!req.is_object()) return bad("request body is not a JSON object");
  if (!req.contains("model") || !req["model"].is_string()) return bad("'model' is required");
  if (!req.contains("messages") || !req["messages"].is_array() || req["messages"].empty()) {
    return bad("'messages' must be a non-empty array");
  }
  if (req.value("stream", false)) return bad("streaming is not supported by rlaif-sim");
  if (req.contains("n") && req["n"].is_number_integer() && req["n"].get<int64_t>() > 1) {
    return bad("only one completion choice is supported (n > 1)");
  }
  const std::string model = req["model"].get<std::string>();
  std::string all_content;
  std::string last_user;
  bool has_user = false;
  for (const json& m : req["messages"]) {
    if (!m.is_object() || !m.contains("content")) return bad("every message needs 'content'");
    std::string text = ContentText(m["content"]);
    if (!all_content.empty()) all_content += "\n";
    all_content += text;
    if (m.value("role", "") == "user") {
      last_user = std::move(text);
      has_user = true;
    }
  }
  std::optional<int64_t> seed;
  if (req.contains("seed") && req["seed"].is_number_integer()) seed = req["seed"].get<int64_t>();
  bool json_mode = false;
  if (auto rf = req.find("response_format"); rf != req.end() && rf->is_object()) {
    const std::string type = rf->value("type", "");
    json_mode = type == "json_object" || type == "json_schema";
  }

  const bool is_generator = model.rfind("sim-sft", 0) == 0;
  const bool is_judge = model.rfind("sim-judge", 0) == 0;
  if (is_generator) {
    calls_generator_++;
  } else if (is_judge) {
    calls_judge_++;
  } else {
    calls_other_++;
  }
  if (!AcquireSlot()) {
    SimReply r = JsonReply(
        429, ErrorBody("server overloaded: more than " + std::to_string(options_.max_concurrency) +
                           " concurrent requests (simulated)",
                       "server_overloaded", "overloaded"));
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  struct SlotGuard {
    Simulator* sim;
    ~SlotGuard() { sim->ReleaseSlot(); }
  } slot{this};
  int sleep_ms = options_.latency_ms;
  if (options_.latency_jitter_ms > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    sleep_ms +=
        static_cast<int>(fault_rng_() % (static_cast<uint64_t>(options_.latency_jitter_ms) + 1));
  }
  if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
  if (!is_generator && !is_judge) {
    return JsonReply(404, ErrorBody("The model '" + model +
                                        "' does not exist; rlaif-sim serves sim-sft* and "
                                        "sim-judge* models.",
                                    "invalid_request_error", "model_not_found"));
  }
  if (auto fault = MaybeFault()) return *fault;
  if (is_generator) {
    if (!has_user) return bad("a sim-sft request needs a user message");
    return Generate(model, last_user, seed, all_content.size());
  }
  const bool want_logprobs =
      req.contains("logprobs") && req["logprobs"].is_boolean() && req["logprobs"].get<bool>();
  return JudgeReply(model, all_content, json_mode, want_logprobs, all_content.size());
}

std::string Simulator::StatsJson() const {
  json j = {{"calls",
             {{"generator", calls_generator_.load()},
              {"judge", calls_judge_.load()},
              {"other", calls_other_.load()}}},
            {"faults", faults_.load()},
            {"overloaded", overloaded_.load()},
            {"judge_unknown", judge_unknown_.load()},
            {"refusals", refusals_.load()},
            {"judge_repeats", judge_repeats_.load()},
            {"bad_requests", bad_requests_.load()},
            {"unauthorized", unauthorized_.load()},
            {"pairs", pairs_.size()}};
  json by_kind = json::object();
  const std::vector<std::string> all = SimOptions::KnownFaultKinds();
  for (size_t i = 0; i < all.size(); ++i) by_kind[all[i]] = faults_by_kind_[i].load();
  j["faults_by_kind"] = std::move(by_kind);
  {
    std::lock_guard<std::mutex> lock(mu_);
    j["max_in_flight"] = max_in_flight_;
  }
  return j.dump();
}

SimServer::SimServer(Simulator& sim, int threads)
    : sim_(sim), server_(std::make_unique<httplib::Server>()) {
  const size_t n = static_cast<size_t>(std::max(1, threads));
  server_->new_task_queue = [n] { return new httplib::ThreadPool(n); };
  server_->set_tcp_nodelay(true);
  // httplib's stop() waits for idle keep-alive connections to time out:
  // keep that short so SIGTERM stops the simulator within about a second.
  server_->set_keep_alive_timeout(1);
  auto send = [](httplib::Response& res, const SimReply& r) {
    res.status = r.status;
    for (const auto& [k, v] : r.headers) res.set_header(k, v);
    if (!r.truncate) {
      res.set_content(r.body, "application/json");
      return;
    }
    // Announce the full length, send half, then fail the provider: httplib
    // closes the connection and the client sees a short body.
    auto body = std::make_shared<std::string>(r.body);
    res.set_content_provider(body->size(), "application/json",
                             [body](size_t offset, size_t, httplib::DataSink& sink) {
                               if (offset == 0) sink.write(body->data(), body->size() / 2);
                               return false;
                             });
  };
  server_->Post("/v1/chat/completions",
                [this, send](const httplib::Request& req, httplib::Response& res) {
                  if (auto denied = sim_.Unauthorized(req.get_header_value("Authorization"))) {
                    return send(res, *denied);
                  }
                  send(res, sim_.ChatCompletions(req.body));
                });
  server_->Get("/sim/stats", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(sim_.StatsJson(), "application/json");
  });
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    json models = {
        {"object", "list"},
        {"data",
         json::array({{{"id", "sim-sft"}, {"object", "model"}, {"owned_by", "rlaif-sim"}},
                      {{"id", "sim-judge"}, {"object", "model"}, {"owned_by", "rlaif-sim"}}})}};
    res.set_content(models.dump(), "application/json");
  });
  // An exception becomes a JSON 500, never a dead connection.
  server_->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        res.status = 500;
        res.set_content(ErrorBody("rlaif-sim internal error: " + what, "server_error", nullptr)
                            .dump(-1, ' ', false, json::error_handler_t::replace),
                        "application/json");
      });
  server_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    res.set_content(
        ErrorBody("no route for " + req.method + " " + req.path, "invalid_request_error", nullptr)
            .dump(-1, ' ', false, json::error_handler_t::replace),
        "application/json");
  });
}

SimServer::~SimServer() = default;

Result<int> SimServer::Bind(const std::string& host, int port) {
  if (port == 0) {
    int bound = server_->bind_to_any_port(host);
    if (bound < 0) return Status::Unavailable("cannot bind " + host + ":0");
    return bound;
  }
  if (!server_->bind_to_port(host, port)) {
    return Status::Unavailable("cannot bind " + host + ":" + std::to_string(port));
  }
  return port;
}

Status SimServer::Run() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_requested_) return Status::Ok();
    run_started_ = true;
  }
  bool ok = server_->listen_after_bind();
  {
    std::lock_guard<std::mutex> lock(mu_);
    run_finished_ = true;
  }
  bool stopped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped = stop_requested_;
  }
  if (!ok && !stopped) return Status::Unavailable("HTTP server stopped unexpectedly");
  return Status::Ok();
}

void SimServer::Stop() {
  sim_.Shutdown();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_requested_ = true;
      if (!run_started_ || run_finished_) return;
    }
    // Run has started: httplib's stop() only takes effect once the accept
    // loop is running, so wait for it rather than lose the request.
    if (server_->is_running()) {
      server_->stop();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace rlaif::sim
