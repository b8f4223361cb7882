// An OpenAI-compatible chat completions client (POST {base_url}/chat/completions).
//
//   rlaif::judge::ChatClient client({.base_url = "http://127.0.0.1:8000/v1"});
//   rlaif::judge::ChatRequest req{.model = "m", .messages = {{"user", "hi"}}};
//   auto resp = client.Complete(req);
//
// Retries retryable failures (network errors, 408, 409, 429, 5xx) with
// jittered exponential backoff that honours Retry-After / retry-after-ms; does
// not retry other 4xx (400/401/403/404/422) nor an OpenAI "insufficient_quota"
// error. Error messages carry the upstream error text (OpenAI, vLLM,
// llama.cpp, Ollama and TGI error bodies are understood).
// https URLs verify the server certificate against the system CA store (or
// against `ca_cert_path` instead, when set). The API key is sent as a bearer
// token and never logged.
// Thread safety: Complete may be called concurrently; at most
// `max_concurrency` requests are in flight at once (callers beyond that wait).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::judge {

struct ChatMessage {
  std::string role;     // "system" | "user" | "assistant"
  std::string content;
};

struct ChatRequest {
  std::string model;
  std::vector<ChatMessage> messages;
  double temperature = 0.0;
  int max_tokens = 256;
  std::optional<int64_t> seed;
  bool json_object = false;   // response_format {"type":"json_object"}
};

struct ChatResponse {
  std::string content;         // choices[0].message.content
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double latency_ms = 0;       // of the successful attempt
  int attempts = 1;
};

struct ChatClientOptions {
  std::string base_url;        // required, e.g. http://127.0.0.1:8000/v1 (http or https)
  std::string api_key;         // "" = no Authorization header
  double connect_timeout_s = 5;
  double timeout_s = 60;
  int max_retries = 4;
  int max_concurrency = 4;
  double backoff_initial_s = 0.2;
  double backoff_max_s = 20;
  std::string ca_cert_path;    // PEM CA bundle used instead of the system store; "" = system
};

struct ChatClientStats {
  std::atomic<int64_t> requests{0};   // HTTP attempts
  std::atomic<int64_t> successes{0};
  std::atomic<int64_t> retries{0};
  std::atomic<int64_t> failures{0};   // calls that returned an error
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> completion_tokens{0};
};

class ChatClient {
 public:
  explicit ChatClient(ChatClientOptions options);
  ~ChatClient();
  ChatClient(const ChatClient&) = delete;
  ChatClient& operator=(const ChatClient&) = delete;

  // kUnavailable after retries are exhausted (message names the last HTTP
  // status and attempts), kInvalidArgument for non-retryable 4xx and for a
  // malformed base_url, kResourceExhausted for "insufficient_quota",
  // kFailedPrecondition when TLS certificate verification fails,
  // kCorruption for an unparseable body, kCancelled after Stop().
  Result<ChatResponse> Complete(const ChatRequest& request);

  // Makes in-progress backoff waits, callers waiting for a concurrency slot,
  // requests in flight and future calls return kCancelled. Thread-safe.
  void Stop();

  const ChatClientStats& stats() const { return stats_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ChatClientStats stats_;
};

}  // namespace rlaif::judge
