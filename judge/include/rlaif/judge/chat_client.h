// An OpenAI-compatible chat completions client (POST {base_url}/chat/completions).
//
//   rlaif::judge::ChatClient client({.base_url = "http://127.0.0.1:8000/v1"});
//   rlaif::judge::ChatRequest req{.model = "m", .messages = {{"user", "hi"}}};
//   auto resp = client.Complete(req);
//
// Retries retryable failures (network errors, 408, 409, 429, 5xx, a 200
// whose body does not parse) with jittered exponential backoff that honours
// Retry-After / retry-after-ms (and, on a 429 without them, the
// x-ratelimit-reset-* headers); does not retry other 4xx (400, 401, 403,
// 404, 422) nor an OpenAI "insufficient_quota" error. Error messages carry
// the upstream error text (OpenAI, vLLM, llama.cpp, Ollama and TGI error
// bodies are understood).
// https URLs verify the server certificate against the system CA store (or
// against `ca_cert_path` instead, when set). The API key is sent as a bearer
// token and never logged.
//
// Admission, in this order, before every HTTP attempt:
//  1. circuit breaker: after `breaker_failures` consecutive failed attempts
//     (network errors, timeouts, 5xx, corrupt bodies; not 4xx or 429) calls
//     fail fast with kUnavailable "circuit open ..." for `breaker_cooldown_s`;
//     then one probe is let through (half-open): success closes the breaker,
//     failure re-opens it;
//  2. hourly budget: once the cost of this UTC hour reaches
//     `hourly_budget_usd`, calls return kResourceExhausted "budget exhausted
//     until HH:00 UTC" (requests already in flight may overshoot by their
//     own cost);
//  3. rate limits: waits (cancellable by Stop) for the requests/min and
//     tokens/min buckets (a request costs its estimated prompt tokens, bytes
//     / 4, plus max_tokens; corrected to the real usage afterwards) and for a
//     pause the server asked for with x-ratelimit-remaining-* = 0 and
//     x-ratelimit-reset-*;
//  4. a concurrency slot (at most `max_concurrency` in flight).
// Thread safety: Complete, Stop, stats and Health may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/judge/rate_limit.h"

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
  int top_logprobs = 0;       // > 0: ask for "logprobs": true and this many top_logprobs (max 20)
};

// One generated token with its log-probability and, when requested, the most
// likely alternatives at that position (OpenAI choices[0].logprobs.content).
struct TokenLogprob {
  struct Alternative {
    std::string token;
    double logprob = 0;
  };
  std::string token;
  double logprob = 0;
  std::vector<Alternative> top;
};

struct ChatResponse {
  std::string content;         // choices[0].message.content
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double latency_ms = 0;       // of the successful attempt
  int attempts = 1;
  double cost_usd = 0;                 // from usage and the configured prices
  std::vector<TokenLogprob> logprobs;  // empty unless requested and returned
};

struct ChatClientOptions {
  std::string name;            // who, in log lines ("generator", "judge"); "" = none
  std::string base_url;        // required, e.g. http://127.0.0.1:8000/v1 (http or https)
  std::string api_key;         // "" = no Authorization header
  double connect_timeout_s = 5;
  double timeout_s = 60;
  int max_retries = 4;
  int max_concurrency = 4;
  double backoff_initial_s = 0.2;
  double backoff_max_s = 20;
  std::string ca_cert_path;    // PEM CA bundle used instead of the system store; "" = system

  // Rate limits (0 = unlimited). Bucket depth = `rate_burst_s` seconds of the rate.
  double requests_per_minute = 0;
  double tokens_per_minute = 0;  // prompt (estimated) + max_tokens per request
  double rate_burst_s = 1;

  // Circuit breaker: consecutive failed attempts that open it (0 = never),
  // and the cool-down before a probe, seconds.
  int breaker_failures = 10;
  double breaker_cooldown_s = 30;

  // Prices, USD per 1M tokens (0 = free), and the spend allowed per UTC hour
  // (0 = unlimited).
  double price_prompt_per_1m = 0;
  double price_completion_per_1m = 0;
  double hourly_budget_usd = 0;
};

// Two levels: a call (Complete) makes one or more HTTP attempts. Every call
// ends in exactly one of successes, failed_calls, rejected_calls and
// cancelled_calls; `failures` is the sum of the last three.
struct ChatClientStats {
  std::atomic<int64_t> requests{0};        // HTTP attempts sent
  std::atomic<int64_t> request_errors{0};  // attempts that failed (<= requests)
  std::atomic<int64_t> successes{0};       // calls (and attempts) that succeeded
  std::atomic<int64_t> retries{0};
  std::atomic<int64_t> failures{0};         // calls that returned an error
  std::atomic<int64_t> failed_calls{0};     // ... after their attempts (or before any: bad request)
  std::atomic<int64_t> rejected_calls{
      0};  // ... refused by admission control (breaker, budget) before any attempt
  std::atomic<int64_t> cancelled_calls{0};  // ... ended by Stop()
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> completion_tokens{0};
  std::atomic<int64_t> cost_nano_usd{0};       // total cost, 1e-9 USD
  std::atomic<int64_t> circuit_rejections{0};  // calls failed fast: circuit open
  std::atomic<int64_t> budget_rejections{0};   // calls refused: budget exhausted
  std::atomic<int64_t> throttled_waits{0};     // attempts that waited for a rate limit
  std::atomic<int64_t> throttled_wait_ms{0};   // total time spent waiting for rate limits

  double cost_usd() const { return static_cast<double>(cost_nano_usd.load()) * 1e-9; }
};

// A consistent snapshot of the client's health, for /v1/status and metrics.
struct ClientHealth {
  BreakerState breaker = BreakerState::kClosed;
  int consecutive_failures = 0;
  int64_t breaker_opens = 0;      // times the breaker opened since start
  double breaker_retry_in_s = 0;  // seconds until the next probe (open only)
  double cost_usd_total = 0;
  double cost_usd_this_hour = 0;  // spend in the current UTC hour
  double hourly_budget_usd = 0;   // 0 = unlimited
  bool budget_exhausted = false;
  int64_t budget_resets_at_ms = 0;  // start of the next UTC hour, Unix ms
  double rate_limited_for_s = 0;    // remaining server-requested pause (x-ratelimit-*)
  int in_flight = 0;                // requests on the wire now
  // The last failed attempt's error ("" after a success): what the breaker
  // opened on.
  std::string last_failure;
  // Set while the last attempt failed on the configuration, not the item
  // (IsConfigurationFault: credentials refused, endpoint or model not
  // found, TLS verification): every request fails until it is fixed.
  std::string configuration_fault;
  // configuration_fault is the account's quota (IsQuotaFault), not the
  // configuration: it clears by itself once the account has quota again.
  bool quota_fault = false;
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
  // kFailedPrecondition (IsConfigurationFault) when TLS certificate
  // verification fails or the endpoint answers 401, 403 or 404 (credentials
  // refused, no such model or path: not retried, counted by the breaker),
  // kCorruption for an unparseable 200 body (retried like a 5xx first),
  // kCancelled after Stop(); kUnavailable "circuit open ..." without a
  // request while the breaker is open; kResourceExhausted "budget exhausted
  // until HH:00 UTC" while the hourly budget is spent. A call whose attempts
  // reached the upstream and failed, then whose retry the breaker (or the
  // budget) refused, fails with its last error, "(gave up after N attempts:
  // then refused a retry: ...)" (IsRefusedAfterAttempts; kUnavailable, or
  // kCorruption when every attempt's body did not parse): not an admission
  // rejection, since its own requests failed.
  Result<ChatResponse> Complete(const ChatRequest& request);

  // Consistent snapshot of breaker, budget and rate-limit state. Thread-safe.
  ClientHealth Health() const;

  // Takes `options`' limits from now on (a config reload). At each
  // attempt or wait, also of calls in progress: the timeouts (a pooled
  // connection takes them when it is next used), the rate limits (what the
  // buckets hold is kept, up to their new depth), the breaker's thresholds,
  // the hourly budget (this hour's spend is kept), the backoff and the API
  // key (a rotation: idle connections are closed, the breaker closes, and
  // error texts are still scrubbed of the last few keys it replaced). From the next call:
  // max_retries and the prices. name, base_url, ca_cert_path and
  // max_concurrency are kept as constructed. Thread-safe.
  void Reconfigure(const ChatClientOptions& options);

  // Makes in-progress backoff waits, callers waiting for a concurrency slot,
  // requests in flight and future calls return kCancelled. Thread-safe.
  void Stop();

  const ChatClientStats& stats() const { return stats_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ChatClientStats stats_;
};

// True for a status from the client's own admission control, sent to no
// upstream: the breaker is open (or half-open with its probe in flight), or
// the hourly budget is spent. Such a call should be held and retried later,
// not counted as a failed attempt. Also true after Generator or Judge wrap
// the message with context (they keep the client's wording, which this
// function and the client share as constants).
bool IsAdmissionRejection(const Status& status);

// True for a status saying the endpoint refuses every request as
// configured (credentials refused, endpoint or model not found, TLS
// verification failed): no item is at fault, so work should wait, not be
// dead-lettered, until an operator fixes the configuration.
bool IsConfigurationFault(const Status& status);

// True for the upstream's "insufficient_quota" (kResourceExhausted): every
// request fails until the account is topped up; like a configuration fault,
// work should wait (it is also reported as the client's configuration_fault),
// but it resumes by itself once a request succeeds.
bool IsQuotaFault(const Status& status);
// A call whose own attempts failed, then a retry was refused by the breaker
// they opened (or the budget): see Complete.
bool IsRefusedAfterAttempts(const Status& status);
// A configuration fault that is an HTTP 403: a key without the permission,
// or a WAF or proxy rule refusing the request's content.
bool IsForbidden(const Status& status);

// True for a call that got HTTP 429 on every attempt (kUnavailable): the
// upstream's rate limit, no item's fault; work should wait and the stage
// slow down.
bool IsRateLimited(const Status& status);

}  // namespace rlaif::judge
