#include "rlaif/judge/generator.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdio>
#include <utility>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"

namespace rlaif::judge {

namespace {

// Whitespace-normalized text: trimmed, inner runs of whitespace collapsed to
// one space. Two responses that differ only in spacing are the same answer.
std::string NormalizeForComparison(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (unsigned char c : s) {
    if (std::isspace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += static_cast<char>(c);
  }
  return out;
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

storage::ResponseRecord ToRecord(const ChatResponse& r, const GeneratorOptions& o, int64_t seed) {
  storage::ResponseRecord rec;
  rec.text = r.content;
  rec.model = o.model;
  rec.seed = seed;
  rec.temperature = o.temperature;
  rec.latency_ms = r.latency_ms;
  rec.prompt_tokens = r.prompt_tokens;
  rec.completion_tokens = r.completion_tokens;
  return rec;
}

}  // namespace

Generator::Generator(ChatClient& client, GeneratorOptions options)
    : client_(client), options_(std::move(options)) {
  fingerprint_ = HexId(HashFields({options_.model, FormatDouble(options_.temperature),
                                   std::to_string(options_.max_tokens), "gen-v1"}));
}

Result<storage::PairRecord> Generator::Generate(const storage::PromptRecord& prompt) {
  if (options_.model.empty()) return Status::InvalidArgument("generator model is not set");
  if (!(options_.temperature > 0)) {
    return Status::InvalidArgument("generator temperature must be > 0, got " +
                                   FormatDouble(options_.temperature));
  }
  // Seeds are consecutive from a base derived from the prompt id: the same
  // prompt always gets the same seeds (reproducible runs), and every attempt
  // gets a seed of its own. 30 bits keep them valid for servers that take
  // a 32-bit seed (llama.cpp).
  const int64_t base_seed = static_cast<int64_t>(HashFields({prompt.id, "gen-seed"}) & 0x3fffffff);
  auto call = [&](int attempt) -> Result<storage::ResponseRecord> {
    const int64_t seed = base_seed + attempt;
    ChatRequest req;
    req.model = options_.model;
    req.messages = {{"user", prompt.text}};
    req.temperature = options_.temperature;
    req.max_tokens = options_.max_tokens;
    req.seed = seed;
    auto resp = client_.Complete(req);
    if (!resp.ok()) {
      return Status(resp.status().code(),
                    "generate for prompt " + prompt.id + ": " + resp.status().message());
    }
    return ToRecord(*resp, options_, seed);
  };

  auto a = call(0);
  if (!a.ok()) return a.status();
  const std::string a_norm = NormalizeForComparison(a->text);
  const int max_retries = std::max(0, options_.max_identical_retries);
  for (int retry = 0;; ++retry) {
    auto b = call(1 + retry);
    if (!b.ok()) return b.status();
    if (NormalizeForComparison(b->text) != a_norm) {
      storage::PairRecord pair;
      pair.id = HexId(HashFields({prompt.id, fingerprint_, "0"}));
      pair.prompt_id = prompt.id;
      pair.prompt = prompt.text;
      pair.a = std::move(*a);
      pair.b = std::move(*b);
      pair.generator = fingerprint_;
      pair.created_at_ms = NowMs();
      return pair;
    }
    if (retry >= max_retries) {
      return Status::FailedPrecondition("identical_responses: prompt " + prompt.id +
                                        " got the same response " + std::to_string(retry + 2) +
                                        " times (model " + options_.model + ", temperature " +
                                        FormatDouble(options_.temperature) + ")");
    }
    spdlog::debug("prompt {}: identical responses, retrying the second with a new seed", prompt.id);
  }
}

}  // namespace rlaif::judge
