// Generator: asks the SFT model for two independent responses to a prompt.
//
// Two separate calls, each with its own seed (llama.cpp and Ollama reject
// n>1), at the configured temperature (> 0), with the prompt text as the one
// user message. Seeds are consecutive from a base derived from the prompt id
// (reproducible; 30-bit base). A response that cannot be half of a training
// pair is asked again with the next seed: an empty one (no content, only
// whitespace: a refusal, a content filter, a tool call), one cut off at
// max_tokens (finish_reason "length") when `drop_truncated`, and a second
// one identical to the first (after trimming and collapsing whitespace).
// After `max_identical_retries` such retries it reports kFailedPrecondition
// with the last problem as its reason (GeneratorRejection) so the caller can
// dead-letter the prompt. Client errors are returned with their code,
// prefixed with the prompt id.
// Thread safety: Generate, counts and Reconfigure may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "rlaif/common/status.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/storage/records.h"

namespace rlaif::judge {

struct GeneratorOptions {
  std::string model;             // required
  double temperature = 0.9;      // > 0
  int max_tokens = 256;
  int max_identical_retries = 4;  // retries for empty, truncated or identical responses
  bool drop_truncated = false;    // false: a response cut off at max_tokens is kept
};

// Responses received, by kind (each once, retried ones included).
struct GeneratorCounts {
  int64_t complete = 0;   // usable, not cut off
  int64_t truncated = 0;  // finish_reason "length" (kept unless drop_truncated)
  int64_t empty = 0;      // no text: asked again
  int64_t identical = 0;  // the same as the pair's first response: asked again
};

// The reason a Generate failure is the prompt's, not the upstream's:
// "identical_responses", "empty_response" or "truncated"; "" for any other.
std::string_view GeneratorRejection(const Status& status);

class Generator {
 public:
  // `client` must outlive the Generator.
  Generator(ChatClient& client, GeneratorOptions options);

  // Fingerprint of model + parameters, part of every pair id.
  std::string fingerprint() const;
  // A config reload's options: temperature, max_tokens,
  // max_identical_retries and drop_truncated apply from the next Generate
  // (the fingerprint, and so new pair ids, follow); the model is kept.
  void Reconfigure(GeneratorOptions options);

  // One pair for `prompt`. pair.id = HexId(HashFields({prompt.id, fingerprint, "0"})).
  Result<storage::PairRecord> Generate(const storage::PromptRecord& prompt);

  GeneratorCounts counts() const;

 private:
  ChatClient& client_;
  mutable std::mutex mu_;  // guards options_ and fingerprint_
  GeneratorOptions options_;
  std::string fingerprint_;
  std::atomic<int64_t> complete_{0}, truncated_{0}, empty_{0}, identical_{0};
};

}  // namespace rlaif::judge
