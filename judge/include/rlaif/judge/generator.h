// Generator: asks the SFT model for two independent responses to a prompt.
//
// Two separate calls, each with its own seed (llama.cpp and Ollama reject
// n>1), at the configured temperature (> 0), with the prompt text as the one
// user message. Seeds are consecutive from a base derived from the prompt id
// (reproducible; 30-bit base). If the two responses are identical (after
// trimming and collapsing whitespace), it retries the second one with new
// seeds up to `max_identical_retries` times, then reports kFailedPrecondition
// ("identical_responses: ...") so the caller can dead-letter the prompt.
// Client errors are returned with their code, prefixed with the prompt id.
// Thread safety: Generate may be called concurrently.
#pragma once

#include <string>

#include "rlaif/common/status.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/storage/records.h"

namespace rlaif::judge {

struct GeneratorOptions {
  std::string model;             // required
  double temperature = 0.9;      // > 0
  int max_tokens = 256;
  int max_identical_retries = 4;
};

class Generator {
 public:
  // `client` must outlive the Generator.
  Generator(ChatClient& client, GeneratorOptions options);

  // Fingerprint of model + parameters, part of every pair id.
  const std::string& fingerprint() const { return fingerprint_; }

  // One pair for `prompt`. pair.id = HexId(HashFields({prompt.id, fingerprint, "0"})).
  Result<storage::PairRecord> Generate(const storage::PromptRecord& prompt);

 private:
  ChatClient& client_;
  GeneratorOptions options_;
  std::string fingerprint_;
};

}  // namespace rlaif::judge
