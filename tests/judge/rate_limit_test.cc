#include "rlaif/judge/rate_limit.h"

#include <gtest/gtest.h>

#include <cmath>

namespace rlaif::judge {
namespace {

TEST(TokenBucketTest, UnlimitedAlwaysAdmits) {
  TokenBucket b(0, 1, 0.0);
  EXPECT_TRUE(b.unlimited());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(b.Take(1e6, 0.0), 0);
}

TEST(TokenBucketTest, BurstThenRefillAtRate) {
  TokenBucket b(/*per_minute=*/600, /*burst_s=*/1, /*now=*/100.0);  // 10/s, 10 deep
  EXPECT_DOUBLE_EQ(b.capacity(), 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(b.Take(1, 100.0), 0) << i;
  // Empty: the 11th must wait 1/rate = 0.1 s, and nothing was taken.
  EXPECT_NEAR(b.Take(1, 100.0), 0.1, 1e-9);
  EXPECT_NEAR(b.Take(1, 100.05), 0.05, 1e-9);
  EXPECT_EQ(b.Take(1, 100.1), 0);
  // Never refills above capacity.
  EXPECT_DOUBLE_EQ(b.Available(1000.0), 10);
}

TEST(TokenBucketTest, LargeCostIsClampedToCapacity) {
  TokenBucket b(60, 1, 0.0);      // 1/s, capacity 1
  EXPECT_EQ(b.Take(50, 0.0), 0);  // clamped: one full bucket
  EXPECT_NEAR(b.Take(50, 0.0), 1.0, 1e-9);
}

TEST(TokenBucketTest, AdjustRefundsAndDebits) {
  TokenBucket b(6000, 1, 0.0);  // 100/s, capacity 100
  EXPECT_EQ(b.Take(80, 0.0), 0);
  b.Adjust(-50, 0.0);  // the request used 50 more tokens than estimated
  EXPECT_NEAR(b.Available(0.0), -30, 1e-9);
  EXPECT_NEAR(b.Take(10, 0.0), 0.4, 1e-9);  // 40 tokens short at 100/s
  b.Adjust(1000, 0.0);
  EXPECT_DOUBLE_EQ(b.Available(0.0), 100);  // capped
}

TEST(TokenBucketTest, SetRateKeepsWhatWasRefilledUpToTheNewDepth) {
  TokenBucket b(600, 1, 0.0);  // 10/s, 10 deep
  EXPECT_EQ(b.Take(6, 0.0), 0);
  b.SetRate(60, 1, 0.2);  // refilled to 6 at 10/s, then 1/s, 1 deep
  EXPECT_DOUBLE_EQ(b.capacity(), 1);
  EXPECT_DOUBLE_EQ(b.Available(0.2), 1);  // 6 kept, down to the new depth
  EXPECT_EQ(b.Take(1, 0.2), 0);
  EXPECT_NEAR(b.Take(1, 0.2), 1.0, 1e-9);  // at the new rate
  b.SetRate(6000, 1, 0.2);                 // raised: 100/s, what it holds (0) kept
  EXPECT_NEAR(b.Take(1, 0.2), 0.01, 1e-9);
  b.SetRate(0, 1, 0.2);  // unlimited
  EXPECT_TRUE(b.unlimited());
  EXPECT_EQ(b.Take(1e6, 0.2), 0);
  b.SetRate(60, 2, 5.0);  // limited again: starts full, as a new one
  EXPECT_DOUBLE_EQ(b.Available(5.0), 2);
}

TEST(CircuitBreakerTest, SetThresholdsAppliesToTheNextFailures) {
  CircuitBreaker br(5, 10.0);
  br.RecordFailure(0.0);
  br.RecordFailure(0.0);
  br.SetThresholds(3, 1.0);
  br.RecordFailure(0.0);  // the third: opens at the new threshold
  EXPECT_EQ(br.state(0.5), BreakerState::kOpen);
  br.SetThresholds(3, 4.0);  // a longer cool-down keeps the opening time
  EXPECT_EQ(br.state(2.0), BreakerState::kOpen);
  EXPECT_EQ(br.state(4.0), BreakerState::kHalfOpen);
  br.SetThresholds(0, 4.0);  // no breaker: closed at once
  EXPECT_EQ(br.state(2.0), BreakerState::kClosed);
  EXPECT_TRUE(br.Allow(2.0));
}

TEST(CircuitBreakerTest, OpensAfterThresholdAndProbesAfterCooldown) {
  CircuitBreaker br(3, 10.0);
  EXPECT_TRUE(br.Allow(0));
  br.RecordFailure(0);
  br.RecordFailure(0);
  EXPECT_EQ(br.state(0), BreakerState::kClosed);
  br.RecordSuccess();  // resets the streak
  br.RecordFailure(1);
  br.RecordFailure(1);
  EXPECT_EQ(br.state(1), BreakerState::kClosed);
  br.RecordFailure(1);
  EXPECT_EQ(br.state(1), BreakerState::kOpen);
  EXPECT_EQ(br.opens(), 1);
  EXPECT_FALSE(br.Allow(5));
  EXPECT_NEAR(br.RetryInSeconds(5), 6.0, 1e-9);
  // Cool-down over: half-open, exactly one probe.
  EXPECT_EQ(br.state(11), BreakerState::kHalfOpen);
  EXPECT_TRUE(br.Allow(11));
  EXPECT_FALSE(br.Allow(11));
  // The probe fails: open for another full cool-down.
  br.RecordFailure(12);
  EXPECT_EQ(br.state(12), BreakerState::kOpen);
  EXPECT_FALSE(br.Allow(21));
  EXPECT_TRUE(br.Allow(22.5));
  br.RecordSuccess();
  EXPECT_EQ(br.state(22.5), BreakerState::kClosed);
  EXPECT_TRUE(br.Allow(22.5));
  EXPECT_TRUE(br.Allow(22.5));
  EXPECT_EQ(br.opens(), 1);  // re-opening after a failed probe is not a new opening
}

TEST(CircuitBreakerTest, NeutralOutcomeFreesTheProbe) {
  CircuitBreaker br(1, 1.0);
  br.RecordFailure(0);
  EXPECT_TRUE(br.Allow(2));
  EXPECT_FALSE(br.Allow(2));
  br.RecordNeutral();  // e.g. the probe got a 429
  EXPECT_TRUE(br.Allow(2));
}

TEST(CircuitBreakerTest, ZeroThresholdNeverOpens) {
  CircuitBreaker br(0, 1.0);
  for (int i = 0; i < 100; ++i) br.RecordFailure(0);
  EXPECT_EQ(br.state(0), BreakerState::kClosed);
  EXPECT_TRUE(br.Allow(0));
  EXPECT_STREQ(BreakerStateName(BreakerState::kHalfOpen), "half_open");
}

TEST(ParseResetDurationTest, OpenAiFormats) {
  EXPECT_NEAR(*ParseResetDuration("1s"), 1.0, 1e-9);
  EXPECT_NEAR(*ParseResetDuration("6m0s"), 360.0, 1e-9);
  EXPECT_NEAR(*ParseResetDuration("20ms"), 0.02, 1e-9);
  EXPECT_NEAR(*ParseResetDuration("1h2m3.5s"), 3723.5, 1e-9);
  EXPECT_NEAR(*ParseResetDuration("0.5"), 0.5, 1e-9);
  EXPECT_NEAR(*ParseResetDuration(" 2s "), 2.0, 1e-9);
  EXPECT_FALSE(ParseResetDuration(""));
  EXPECT_FALSE(ParseResetDuration("soon"));
  EXPECT_FALSE(ParseResetDuration("-1s"));
  EXPECT_FALSE(ParseResetDuration("3x"));
  EXPECT_FALSE(ParseResetDuration("1m30"));
  // Finite parts whose sum or scaling overflows (found by the verdict fuzzer).
  EXPECT_FALSE(ParseResetDuration("1e308s1e308s"));
  EXPECT_FALSE(ParseResetDuration("1e306h"));
}

}  // namespace
}  // namespace rlaif::judge
