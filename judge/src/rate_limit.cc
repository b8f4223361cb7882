#include "rlaif/judge/rate_limit.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

namespace rlaif::judge {

TokenBucket::TokenBucket(double per_minute, double burst_s, double now) {
  if (per_minute <= 0 || !std::isfinite(per_minute)) return;
  rate_per_s_ = per_minute / 60.0;
  capacity_ = std::max(1.0, rate_per_s_ * std::max(0.0, burst_s));
  tokens_ = capacity_;
  last_ = now;
}

void TokenBucket::Refill(double now) {
  if (now > last_) {
    tokens_ = std::min(capacity_, tokens_ + (now - last_) * rate_per_s_);
    last_ = now;
  }
}

double TokenBucket::Available(double now) {
  if (unlimited()) return INFINITY;
  Refill(now);
  return tokens_;
}

double TokenBucket::Take(double cost, double now) {
  if (unlimited()) return 0;
  Refill(now);
  cost = std::clamp(cost, 0.0, capacity_);
  // The epsilon absorbs refill rounding: a wait computed as exactly enough
  // must be enough.
  if (tokens_ + 1e-9 >= cost) {
    tokens_ -= cost;
    return 0;
  }
  return (cost - tokens_) / rate_per_s_;
}

void TokenBucket::Adjust(double delta, double now) {
  if (unlimited()) return;
  Refill(now);
  tokens_ = std::min(capacity_, tokens_ + delta);
}

void TokenBucket::SetRate(double per_minute, double burst_s, double now) {
  if (per_minute <= 0 || !std::isfinite(per_minute)) {
    *this = TokenBucket();
    return;
  }
  if (unlimited()) {
    *this = TokenBucket(per_minute, burst_s, now);
    return;
  }
  Refill(now);
  rate_per_s_ = per_minute / 60.0;
  capacity_ = std::max(1.0, rate_per_s_ * std::max(0.0, burst_s));
  tokens_ = std::min(tokens_, capacity_);
}

const char* BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

bool CircuitBreaker::Allow(double now) {
  if (threshold_ <= 0 || !open_) return true;
  if (now - opened_at_ < cooldown_s_) return false;
  if (probe_in_flight_) return false;
  probe_in_flight_ = true;
  return true;
}

void CircuitBreaker::RecordSuccess() {
  consecutive_failures_ = 0;
  open_ = false;
  probe_in_flight_ = false;
}

void CircuitBreaker::RecordFailure(double now) {
  ++consecutive_failures_;
  if (threshold_ <= 0) return;
  if (open_) {
    // A failed probe (or a straggler admitted before the breaker opened):
    // another full cool-down.
    opened_at_ = now;
    probe_in_flight_ = false;
    return;
  }
  if (consecutive_failures_ >= threshold_) {
    open_ = true;
    opened_at_ = now;
    probe_in_flight_ = false;
    ++opens_;
  }
}

void CircuitBreaker::RecordNeutral() { probe_in_flight_ = false; }

void CircuitBreaker::Reset() {
  consecutive_failures_ = 0;
  open_ = false;
  probe_in_flight_ = false;
}

void CircuitBreaker::SetThresholds(int failure_threshold, double cooldown_s) {
  threshold_ = failure_threshold;
  cooldown_s_ = cooldown_s;
  if (threshold_ <= 0) open_ = false;
}

BreakerState CircuitBreaker::state(double now) const {
  if (!open_) return BreakerState::kClosed;
  return now - opened_at_ < cooldown_s_ ? BreakerState::kOpen : BreakerState::kHalfOpen;
}

double CircuitBreaker::RetryInSeconds(double now) const {
  if (!open_) return 0;
  return std::max(0.0, cooldown_s_ - (now - opened_at_));
}

std::optional<double> ParseResetDuration(const std::string& text) {
  std::string s;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  }
  if (s.empty()) return std::nullopt;
  double total = 0;
  size_t i = 0;
  bool any_unit = false;
  while (i < s.size()) {
    const char* begin = s.c_str() + i;
    char* end = nullptr;
    double v = std::strtod(begin, &end);
    if (end == begin || !std::isfinite(v) || v < 0) return std::nullopt;
    i += static_cast<size_t>(end - begin);
    if (i == s.size()) {
      if (any_unit) return std::nullopt;  // "1m30" is ambiguous
      return v;                           // plain seconds
    }
    std::string unit;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) unit += s[i++];
    if (unit == "ms") {
      total += v / 1000.0;
    } else if (unit == "s") {
      total += v;
    } else if (unit == "m") {
      total += v * 60.0;
    } else if (unit == "h") {
      total += v * 3600.0;
    } else if (unit == "us") {
      total += v / 1e6;
    } else if (unit == "ns") {
      total += v / 1e9;
    } else {
      return std::nullopt;
    }
    any_unit = true;
  }
  // Each part is finite, but their sum or a unit's scaling need not be
  // ("1e308s1e308s", "1e306h"): an infinite wait is no reset time (found by
  // the verdict fuzzer).
  if (!std::isfinite(total)) return std::nullopt;
  return total;
}

}  // namespace rlaif::judge
