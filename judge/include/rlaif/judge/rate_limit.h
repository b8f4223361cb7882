// Admission control for the chat client: token buckets (requests/min,
// tokens/min), a circuit breaker, and the parser for OpenAI-style rate-limit
// reset durations. All take the current time as an argument (seconds on a
// monotonic clock), so they are deterministic and unit-testable.
//
//   TokenBucket rpm(/*per_minute=*/600, /*burst_s=*/1, now);   // 10/s, 10 deep
//   if (double wait = rpm.Take(1, now); wait > 0) sleep(wait) and ask again;
//
// Thread safety: none of these classes is thread-safe; ChatClient guards them
// with its own mutex.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace rlaif::judge {

// A token bucket refilled continuously at `per_minute / 60` tokens per second
// up to `capacity = max(1, per_minute / 60 * burst_s)`. per_minute <= 0 means
// unlimited (Take always succeeds).
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double per_minute, double burst_s, double now);

  bool unlimited() const { return rate_per_s_ <= 0; }
  double capacity() const { return capacity_; }
  // Tokens available at `now` (may be negative after Adjust).
  double Available(double now);

  // Takes `cost` tokens if available and returns 0; otherwise takes nothing
  // and returns the seconds until they will be. A cost larger than the
  // capacity is clamped to it (it goes through when the bucket is full) so
  // that one large request cannot block forever.
  double Take(double cost, double now);

  // Adds (refund, delta > 0) or removes (debit, delta < 0) tokens, e.g. once
  // the real token usage of a request is known. The level stays <= capacity
  // but may go negative.
  void Adjust(double delta, double now);

  // A new rate (0 = unlimited) and depth, from `now` on: what was refilled
  // at the old rate is kept, up to the new capacity; a bucket that was
  // unlimited starts full, as a new one does.
  void SetRate(double per_minute, double burst_s, double now);

 private:
  void Refill(double now);

  double rate_per_s_ = 0;
  double capacity_ = 0;
  double tokens_ = 0;
  double last_ = 0;
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };

// "closed" | "open" | "half_open".
const char* BreakerStateName(BreakerState state);

// Opens after `failure_threshold` consecutive failures; while open, Allow()
// refuses until `cooldown_s` have passed, then the breaker is half-open and
// admits exactly one probe: its success closes the breaker, its failure opens
// it again for another cool-down. failure_threshold <= 0 disables it.
class CircuitBreaker {
 public:
  CircuitBreaker() = default;
  CircuitBreaker(int failure_threshold, double cooldown_s)
      : threshold_(failure_threshold), cooldown_s_(cooldown_s) {}

  // True if a request may be sent now. In the half-open state, true once
  // (for the probe) until the probe's outcome is recorded.
  bool Allow(double now);
  void RecordSuccess();
  void RecordFailure(double now);
  // The request admitted by Allow() ended without telling anything about the
  // endpoint's health (cancelled, 4xx, 429): frees the half-open probe slot.
  void RecordNeutral();
  // New thresholds, from the next attempt on: an open breaker keeps its
  // opening time (its cool-down is the new one); a threshold of 0 closes it.
  void SetThresholds(int failure_threshold, double cooldown_s);
  // Closed, no failures counted: what failed was the configuration a reload
  // just replaced (a rotated key), not the endpoint.
  void Reset();

  BreakerState state(double now) const;
  // Seconds until the next probe may go (0 unless open).
  double RetryInSeconds(double now) const;
  int consecutive_failures() const { return consecutive_failures_; }
  int64_t opens() const { return opens_; }

 private:
  int threshold_ = 0;
  double cooldown_s_ = 30;
  int consecutive_failures_ = 0;
  bool open_ = false;
  double opened_at_ = 0;
  bool probe_in_flight_ = false;
  int64_t opens_ = 0;
};

// Parses a rate-limit reset duration as OpenAI sends them in
// x-ratelimit-reset-requests / -tokens ("1s", "6m0s", "20ms", "1h2m3.5s") or
// a plain number of seconds ("0.5"). nullopt if malformed or negative.
std::optional<double> ParseResetDuration(const std::string& text);

}  // namespace rlaif::judge
