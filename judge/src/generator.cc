#include "rlaif/judge/generator.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <cstdio>
#include <mutex>
#include <optional>
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
  rec.finish_reason = r.finish_reason;
  return rec;
}

constexpr std::string_view kRejections[] = {"identical_responses", "empty_response", "truncated"};

}  // namespace

std::string_view GeneratorRejection(const Status& status) {
  if (status.code() != StatusCode::kFailedPrecondition) return "";
  for (std::string_view r : kRejections) {
    const std::string& m = status.message();
    if (m.size() > r.size() && m.compare(0, r.size(), r) == 0 && m[r.size()] == ':') return r;
  }
  return "";
}

GeneratorCounts Generator::counts() const {
  return {complete_.load(), truncated_.load(), empty_.load(), identical_.load()};
}

namespace {

std::string Fingerprint(const GeneratorOptions& o) {
  return HexId(
      HashFields({o.model, FormatDouble(o.temperature), std::to_string(o.max_tokens), "gen-v1"}));
}

}  // namespace

Generator::Generator(ChatClient& client, GeneratorOptions options)
    : client_(client), options_(std::move(options)), fingerprint_(Fingerprint(options_)) {}

std::string Generator::fingerprint() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fingerprint_;
}

void Generator::Reconfigure(GeneratorOptions options) {
  std::lock_guard<std::mutex> lock(mu_);
  options.model = options_.model;  // kept: pairs of another model need a restart
  options_ = std::move(options);
  fingerprint_ = Fingerprint(options_);
}

Result<storage::PairRecord> Generator::Generate(const storage::PromptRecord& prompt) {
  // This call's options: a reload may change them meanwhile (Reconfigure).
  GeneratorOptions options;
  std::string fingerprint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    options = options_;
    fingerprint = fingerprint_;
  }
  if (options.model.empty()) return Status::InvalidArgument("generator model is not set");
  if (!(options.temperature > 0)) {
    return Status::InvalidArgument("generator temperature must be > 0, got " +
                                   FormatDouble(options.temperature));
  }
  // Seeds are consecutive from a base derived from the prompt id: the same
  // prompt always gets the same seeds (reproducible runs), and every attempt
  // gets a seed of its own. 30 bits keep them valid for servers that take
  // a 32-bit seed (llama.cpp).
  const int64_t base_seed = static_cast<int64_t>(HashFields({prompt.id, "gen-seed"}) & 0x3fffffff);
  auto call = [&](int attempt) -> Result<storage::ResponseRecord> {
    const int64_t seed = base_seed + attempt;
    ChatRequest req;
    req.model = options.model;
    req.messages = {{"user", prompt.text}};
    req.temperature = options.temperature;
    req.max_tokens = options.max_tokens;
    req.seed = seed;
    auto resp = client_.Complete(req);
    if (!resp.ok()) {
      return Status(resp.status().code(),
                    "generate for prompt " + prompt.id + ": " + resp.status().message());
    }
    return ToRecord(*resp, options, seed);
  };

  // Each response asked for takes the next seed; one that cannot be half of
  // a pair (empty, truncated when dropped, identical to the first) uses up
  // one of the retries.
  std::optional<storage::ResponseRecord> a;
  std::string a_norm;
  int empty = 0, truncated = 0, identical = 0;
  const int max_retries = std::max(0, options.max_identical_retries);
  for (int attempt = 0;; ++attempt) {
    auto r = call(attempt);
    if (!r.ok()) return r.status();
    std::string norm = NormalizeForComparison(r->text);
    std::string_view problem;
    if (norm.empty()) {
      ++empty_;
      ++empty;
      problem = "empty_response";
    } else if (a && norm == a_norm) {
      ++identical_;
      ++identical;
      problem = "identical_responses";
    } else if (r->finish_reason == "length") {
      ++truncated_;
      if (options.drop_truncated) {
        ++truncated;
        problem = "truncated";
      }
    } else {
      ++complete_;
    }
    if (problem.empty()) {
      if (!a) {
        a = std::move(*r);
        a_norm = std::move(norm);
        continue;
      }
      storage::PairRecord pair;
      pair.id = HexId(HashFields({prompt.id, fingerprint, "0"}));
      pair.prompt_id = prompt.id;
      pair.prompt = prompt.text;
      pair.a = std::move(*a);
      pair.b = std::move(*r);
      pair.generator = fingerprint;
      pair.created_at_ms = NowMs();
      return pair;
    }
    if (empty + truncated + identical > max_retries) {
      std::string what;
      auto add = [&what](int n, const char* kind) {
        if (n == 0) return;
        if (!what.empty()) what += ", ";
        what += std::to_string(n);
        what += ' ';
        what += kind;
      };
      add(identical, "identical to the first");
      add(empty, "empty (no text: a refusal, a content filter or a tool call?)");
      add(truncated, "cut off at max_tokens (finish_reason \"length\")");
      return Status::FailedPrecondition(std::string(problem) + ": prompt " + prompt.id + " got " +
                                        std::to_string(attempt + 1) + " responses, " + what +
                                        " (model " + options.model + ", temperature " +
                                        FormatDouble(options.temperature) + ", max_tokens " +
                                        std::to_string(options.max_tokens) + ")");
    }
    spdlog::debug("prompt {}: {} response (finish_reason \"{}\"), asking again with a new seed",
                  prompt.id, problem, r->finish_reason);
  }
}

}  // namespace rlaif::judge
