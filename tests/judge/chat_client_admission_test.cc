// ChatClient admission control against a scripted upstream: circuit
// breaker, hourly budget and cost, token buckets, x-ratelimit-* headers, and
// logprobs in requests and responses.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "fake_upstream.h"
#include "rlaif/common/clock.h"
#include "rlaif/judge/chat_client.h"

namespace rlaif::judge {
namespace {

using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

ChatClientOptions Fast(const FakeUpstream& up) {
  ChatClientOptions o;
  o.base_url = up.base_url();
  o.backoff_initial_s = 0.005;
  o.backoff_max_s = 0.01;
  o.timeout_s = 10;
  return o;
}

// The hourly budget rolls over at the top of each UTC hour: a budget test
// that straddles it would see its spend reset. Started within 10 s of the
// hour's end, it waits for the next hour.
void AwayFromTheHourEnd() {
  const int64_t hour_ms = 3600 * 1000;
  const int64_t left = hour_ms - NowMs() % hour_ms;
  if (left < 10000) std::this_thread::sleep_for(std::chrono::milliseconds(left + 100));
}

ChatRequest Request() {
  ChatRequest r;
  r.model = "m";
  r.messages = {{"user", "hi"}};
  r.max_tokens = 8;
  return r;
}

TEST(ChatClientBreakerTest, OpensFailsFastAndClosesAfterProbe) {
  std::atomic<bool> healthy{false};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    if (healthy) {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    } else {
      FakeUpstream::Reply(res, 500, R"({"error":{"message":"boom"}})");
    }
  });
  ChatClientOptions o = Fast(up);
  o.max_retries = 10;
  o.breaker_failures = 3;
  // The breaker's state comes from the clock: it must stay open through the
  // checks below however slow a loaded machine is, so the cool-down is long.
  o.breaker_cooldown_s = 3;
  ChatClient client(o);

  auto r1 = client.Complete(Request());
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.status().code(), StatusCode::kUnavailable);
  // Its own attempts reached the upstream and failed: it fails with their
  // error (the pipeline decides whose fault that is), saying why it stopped.
  EXPECT_NE(r1.status().message().find("HTTP 500: boom (gave up after 3 attempts: then refused "
                                       "a retry: the circuit breaker opened)"),
            std::string::npos)
      << r1.status().message();
  EXPECT_FALSE(IsAdmissionRejection(r1.status()));
  EXPECT_TRUE(IsRefusedAfterAttempts(r1.status()));
  EXPECT_EQ(up.calls(), 3);  // the fourth attempt failed fast

  ClientHealth h = client.Health();
  EXPECT_EQ(h.breaker, BreakerState::kOpen);
  EXPECT_EQ(h.breaker_opens, 1);
  EXPECT_GT(h.breaker_retry_in_s, 0);
  EXPECT_EQ(h.consecutive_failures, 3);

  // While open: no request reaches the upstream.
  auto r2 = client.Complete(Request());
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("circuit open"), std::string::npos);
  EXPECT_EQ(up.calls(), 3);
  // The pipeline holds such a call instead of counting a failure, also when
  // it comes wrapped with context.
  EXPECT_TRUE(IsAdmissionRejection(r2.status()));
  EXPECT_TRUE(IsAdmissionRejection(
      Status(r2.status().code(), "judge pair p1 on overall: " + r2.status().message())));
  EXPECT_EQ(client.stats().circuit_rejections.load(), 2);

  // After the cool-down one probe goes; its success closes the breaker.
  healthy = true;
  std::this_thread::sleep_for(
      std::chrono::milliseconds(static_cast<int>(o.breaker_cooldown_s * 1000) + 200));
  EXPECT_EQ(client.Health().breaker, BreakerState::kHalfOpen);
  auto r3 = client.Complete(Request());
  ASSERT_TRUE(r3.ok()) << r3.status().ToString();
  EXPECT_EQ(client.Health().breaker, BreakerState::kClosed);
  EXPECT_EQ(client.Health().consecutive_failures, 0);
}

TEST(ChatClientBreakerTest, FailedProbeReopens) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 503, R"({"error":{"message":"down"}})");
  });
  ChatClientOptions o = Fast(up);
  o.max_retries = 0;
  o.breaker_failures = 1;
  o.breaker_cooldown_s = 3;  // long: it is checked open right after each failure
  ChatClient client(o);
  EXPECT_FALSE(client.Complete(Request()).ok());
  EXPECT_EQ(client.Health().breaker, BreakerState::kOpen);
  std::this_thread::sleep_for(
      std::chrono::milliseconds(static_cast<int>(o.breaker_cooldown_s * 1000) + 200));
  EXPECT_FALSE(client.Complete(Request()).ok());  // the probe
  EXPECT_EQ(up.calls(), 2);
  EXPECT_EQ(client.Health().breaker, BreakerState::kOpen);
}

TEST(ChatClientBreakerTest, RateLimitsAndClientErrorsDoNotTripIt) {
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    if (n < 4) {
      res.set_header("retry-after-ms", "1");
      FakeUpstream::Reply(res, 429, R"({"error":{"message":"slow down"}})");
    } else if (n == 4) {
      FakeUpstream::Reply(res, 400, R"({"error":{"message":"bad"}})");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    }
  });
  ChatClientOptions o = Fast(up);
  o.max_retries = 6;
  o.breaker_failures = 2;
  ChatClient client(o);
  auto r1 = client.Complete(Request());  // four 429s, then the 400
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(client.Health().breaker, BreakerState::kClosed);
  EXPECT_TRUE(client.Complete(Request()).ok());
}

TEST(ChatClientBudgetTest, CostIsAccountedAndBudgetStopsCalls) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok", 1000, 500));
  });
  AwayFromTheHourEnd();
  ChatClientOptions o = Fast(up);
  o.price_prompt_per_1m = 10;      // 1000 tokens → $0.01
  o.price_completion_per_1m = 30;  // 500 tokens → $0.015
  o.hourly_budget_usd = 0.04;
  ChatClient client(o);
  auto r1 = client.Complete(Request());
  ASSERT_TRUE(r1.ok());
  EXPECT_NEAR(r1->cost_usd, 0.025, 1e-12);
  ClientHealth h = client.Health();
  EXPECT_FALSE(h.budget_exhausted);
  EXPECT_NEAR(h.cost_usd_this_hour, 0.025, 1e-12);
  ASSERT_TRUE(client.Complete(Request()).ok());  // $0.05 spent: over budget now

  auto r3 = client.Complete(Request());
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r3.status().message().find("budget exhausted until "), std::string::npos);
  EXPECT_NE(r3.status().message().find(":00 UTC"), std::string::npos) << r3.status().message();
  EXPECT_TRUE(IsAdmissionRejection(r3.status()));
  EXPECT_EQ(up.calls(), 2);

  h = client.Health();
  EXPECT_TRUE(h.budget_exhausted);
  EXPECT_NEAR(h.cost_usd_total, 0.05, 1e-12);
  EXPECT_DOUBLE_EQ(h.hourly_budget_usd, 0.04);
  EXPECT_GT(h.budget_resets_at_ms, NowMs());
  EXPECT_LE(h.budget_resets_at_ms, NowMs() + 3600 * 1000);
  EXPECT_EQ(h.budget_resets_at_ms % (3600 * 1000), 0);
  EXPECT_NEAR(client.stats().cost_usd(), 0.05, 1e-9);
  EXPECT_EQ(client.stats().budget_rejections.load(), 1);
}

TEST(ChatClientRateLimitTest, RequestsPerMinuteSpacesCalls) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = Fast(up);
  // One per 2 s with a bucket of depth 1: every call after the first waits,
  // as long as a call itself takes under 2 s (under TSan on a loaded machine
  // one takes ~0.1 s, but stalls of a second happen, which is why this is
  // not 10/s nor 2/s any more: the bucket refilled during the call and fewer
  // waits were counted).
  o.requests_per_minute = 30;
  o.rate_burst_s = 2;
  ChatClient client(o);
  const double t0 = MonotonicSeconds();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client.Complete(Request()).ok());
  const double elapsed = MonotonicSeconds() - t0;
  EXPECT_GE(elapsed, 3.95);  // two waits of 2 s
  EXPECT_LT(elapsed, 20.0);
  EXPECT_EQ(client.stats().throttled_waits.load(), 2);
}

TEST(ChatClientRateLimitTest, TokensPerMinuteUsesEstimateThenUsage) {
  // Each call reports 3000 tokens of usage; the bucket holds 100 tokens/s.
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok", 2500, 500));
  });
  ChatClientOptions o = Fast(up);
  o.tokens_per_minute = 6000;  // 100/s
  o.rate_burst_s = 30;         // 3000 deep
  ChatClient client(o);
  const double t0 = MonotonicSeconds();
  ASSERT_TRUE(client.Complete(Request()).ok());  // estimate ~9, debited to 3000 after
  ASSERT_TRUE(client.Complete(Request()).ok());  // waits for the 9-token estimate only
  const double elapsed = MonotonicSeconds() - t0;
  EXPECT_GE(elapsed, 0.05);
  // Waiting for a whole call's usage instead would take 30 s: the bound is
  // far from both, so a loaded machine does not reach it.
  EXPECT_LT(elapsed, 10.0);
}

TEST(ChatClientRateLimitTest, HonoursExhaustedRateLimitHeaders) {
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    if (n == 0) {
      res.set_header("x-ratelimit-remaining-requests", "0");
      res.set_header("x-ratelimit-reset-requests", "3000ms");
      res.set_header("x-ratelimit-remaining-tokens", "9000");
      res.set_header("x-ratelimit-reset-tokens", "6m0s");  // not exhausted: ignored
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClient client(Fast(up));
  const double t_first = MonotonicSeconds();
  ASSERT_TRUE(client.Complete(Request()).ok());
  const double t0 = MonotonicSeconds();
  const double paused = client.Health().rate_limited_for_s;
  // 3 s from the first response, which came between t_first and now:
  // bounded by what was measured, not by a guess of how slow the machine is.
  EXPECT_GE(paused, 3.0 - (MonotonicSeconds() - t_first) - 1e-6);
  EXPECT_LE(paused, 3.0 + 1e-6);
  ASSERT_TRUE(client.Complete(Request()).ok());
  const double waited = MonotonicSeconds() - t0;
  EXPECT_GE(waited, paused - 1e-6);  // the pause was waited out (t0 is before Health)
  EXPECT_LT(waited, 30.0);           // nor the unexhausted tokens' 6 minutes
}

TEST(ChatClientRateLimitTest, Retry429UsesResetHeaderWithoutRetryAfter) {
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    if (n == 0) {
      res.set_header("x-ratelimit-remaining-tokens", "12");
      res.set_header("x-ratelimit-reset-tokens", "250ms");
      FakeUpstream::Reply(res, 429, R"({"error":{"message":"tokens per min exceeded"}})");
      return;
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClient client(Fast(up));
  const double t0 = MonotonicSeconds();
  auto r = client.Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->attempts, 2);
  EXPECT_GE(MonotonicSeconds() - t0, 0.24);
}

TEST(ChatClientRateLimitTest, StopEndsARateLimitWait) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = Fast(up);
  o.requests_per_minute = 1;  // the second call would wait a minute
  ChatClient client(o);
  ASSERT_TRUE(client.Complete(Request()).ok());
  auto pending = std::async(std::launch::async, [&] { return client.Complete(Request()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double t0 = MonotonicSeconds();
  client.Stop();
  auto r = pending.get();
  EXPECT_LT(MonotonicSeconds() - t0, 1.0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled);
}

// A config reload (SIGHUP) changes the limits of a running client: a
// raised budget admits calls again without losing this hour's spend, and a
// caller waiting for the old rate goes at the raised one (it re-checks at
// least every second, and is woken by the reload).
TEST(ChatClientReconfigureTest, NewBudgetAndRateApplyToWaitingAndLaterCalls) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok", 1000, 500));
  });
  AwayFromTheHourEnd();
  ChatClientOptions o = Fast(up);
  o.price_prompt_per_1m = 10;
  o.price_completion_per_1m = 30;  // $0.025 a call
  o.hourly_budget_usd = 0.02;
  o.requests_per_minute = 1;  // the second call would wait a minute
  ChatClient client(o);
  ASSERT_TRUE(client.Complete(Request()).ok());
  auto refused = client.Complete(Request());
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(IsAdmissionRejection(refused.status())) << refused.status().ToString();

  ChatClientOptions raised = o;
  raised.hourly_budget_usd = 1;
  raised.base_url = "http://127.0.0.1:1/v1";  // not taken: the endpoint is kept
  client.Reconfigure(raised);
  EXPECT_DOUBLE_EQ(client.Health().hourly_budget_usd, 1);
  EXPECT_NEAR(client.Health().cost_usd_this_hour, 0.025, 1e-12);  // the spend is kept
  // Within budget now, but the requests/min bucket is empty: it waits ...
  auto pending = std::async(std::launch::async, [&] { return client.Complete(Request()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  EXPECT_EQ(up.calls(), 1);
  // ... until the rate is raised.
  raised.requests_per_minute = 6000;
  const double t0 = MonotonicSeconds();
  client.Reconfigure(raised);
  auto r = pending.get();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LT(MonotonicSeconds() - t0, 5.0);
  EXPECT_EQ(up.calls(), 2);
  EXPECT_EQ(client.stats().budget_rejections.load(), 1);

  // Lowered below this hour's spend: refused again.
  raised.hourly_budget_usd = 0.01;
  client.Reconfigure(raised);
  auto again = client.Complete(Request());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(up.calls(), 2);
}

// max_retries and prices of a reload apply to the next call.
TEST(ChatClientReconfigureTest, RetriesAndPricesApplyToTheNextCall) {
  std::atomic<bool> failing{true};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    if (failing) {
      FakeUpstream::Reply(res, 503, R"({"error":{"message":"busy"}})");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok", 1000, 0));
    }
  });
  ChatClientOptions o = Fast(up);
  o.max_retries = 0;
  o.breaker_failures = 0;
  ChatClient client(o);
  ASSERT_FALSE(client.Complete(Request()).ok());
  EXPECT_EQ(up.calls(), 1);
  o.max_retries = 2;
  o.price_prompt_per_1m = 10;
  client.Reconfigure(o);
  ASSERT_FALSE(client.Complete(Request()).ok());
  EXPECT_EQ(up.calls(), 4);  // 1 + 3 attempts
  failing = false;
  auto r = client.Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->cost_usd, 0.01, 1e-12);
}

// A reload's timeout applies to a pooled connection too: with one slot,
// the second call reuses the first call's connection.
TEST(ChatClientReconfigureTest, NewTimeoutAppliesToAReusedConnection) {
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    if (n > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = Fast(up);
  o.max_concurrency = 1;
  o.max_retries = 0;
  o.timeout_s = 30;
  ChatClient client(o);
  ASSERT_TRUE(client.Complete(Request()).ok());
  o.timeout_s = 0.3;
  client.Reconfigure(o);
  const double t0 = MonotonicSeconds();
  auto r = client.Complete(Request());
  const double took = MonotonicSeconds() - t0;
  ASSERT_FALSE(r.ok()) << "answered after " << took << " s: the old 30 s timeout";
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
  EXPECT_LT(took, 2.0);
}

// A key rotated by a reload goes with the next request; the keys it
// replaced are still scrubbed from what the upstream echoes.
TEST(ChatClientReconfigureTest, RotatedKeyIsSentAndOldKeysStayScrubbed) {
  const std::string old_key = "sk-old-0123456789abcdef";
  const std::string new_key = "sk-new-fedcba9876543210";
  FakeUpstream up([&](int, const RecordedRequest& req, httplib::Response& res) {
    if (req.authorization == "Bearer " + new_key) {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    } else {
      // As OpenAI does: the refused key, quoted.
      FakeUpstream::Reply(
          res, 500, R"({"error":{"message":"bad key )" + old_key + R"( and )" + new_key + R"("}})");
    }
  });
  ChatClientOptions o = Fast(up);
  o.api_key = old_key;
  o.max_retries = 0;
  o.breaker_failures = 0;
  ChatClient client(o);
  auto refused = client.Complete(Request());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message().find("sk-old"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(client.Health().last_failure.find("sk-old"), std::string::npos);

  o.api_key = new_key;
  client.Reconfigure(o);
  auto r = client.Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(up.requests().back().authorization, "Bearer " + new_key);

  // Rotated again, to no key: the two replaced keys are scrubbed.
  o.api_key = "";
  client.Reconfigure(o);
  auto unauth = client.Complete(Request());
  ASSERT_FALSE(unauth.ok());
  EXPECT_EQ(up.requests().back().authorization, "");
  EXPECT_EQ(unauth.status().message().find("sk-"), std::string::npos) << unauth.status().message();
  EXPECT_NE(unauth.status().message().find("[api key]"), std::string::npos)
      << unauth.status().message();
}

// A replaced key that is part of the key in use (a half-written file read
// once) must not cut the longer key's echo and leave its rest readable.
TEST(ChatClientReconfigureTest, ScrubsTheLongestKeyFirst) {
  FakeUpstream up([&](int, const RecordedRequest& req, httplib::Response& res) {
    const std::string key = req.authorization.substr(std::string("Bearer ").size());
    FakeUpstream::Reply(res, 500, R"({"error":{"message":"rejected )" + key + R"("}})");
  });
  ChatClientOptions o = Fast(up);
  o.max_retries = 0;
  o.breaker_failures = 0;
  o.api_key = "sk-half";
  ChatClient client(o);
  o.api_key = "sk-half-and-the-rest-0123";
  client.Reconfigure(o);
  auto r = client.Complete(Request());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("rest-0123"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("rejected [api key]"), std::string::npos)
      << r.status().message();
}

TEST(ChatClientLogprobsTest, RequestsAndParsesTopLogprobs) {
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    nlohmann::json body = nlohmann::json::parse(FakeUpstream::Completion("A"));
    body["choices"][0]["logprobs"] = {
        {"content",
         {{{"token", "A"},
           {"logprob", -0.1},
           {"bytes", {65}},
           {"top_logprobs",
            {{{"token", "A"}, {"logprob", -0.1}}, {{"token", "B"}, {"logprob", -2.4}}}}}}}};
    FakeUpstream::Reply(res, 200, body.dump());
  });
  ChatClient client(Fast(up));
  ChatRequest req = Request();
  req.top_logprobs = 5;
  auto r = client.Complete(req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const RecordedRequest sent = up.requests().at(0);
  EXPECT_EQ(sent.json["logprobs"], true);
  EXPECT_EQ(sent.json["top_logprobs"], 5);
  ASSERT_EQ(r->logprobs.size(), 1u);
  EXPECT_EQ(r->logprobs[0].token, "A");
  EXPECT_DOUBLE_EQ(r->logprobs[0].logprob, -0.1);
  ASSERT_EQ(r->logprobs[0].top.size(), 2u);
  EXPECT_EQ(r->logprobs[0].top[1].token, "B");
  EXPECT_DOUBLE_EQ(r->logprobs[0].top[1].logprob, -2.4);

  // Not asked: no logprobs fields in the request.
  ASSERT_TRUE(client.Complete(Request()).ok());
  EXPECT_FALSE(up.requests().at(1).json.contains("logprobs"));
}

TEST(ChatClientTest, CorruptBodyIsRetriedThenCorruption) {
  FakeUpstream up([&](int n, const RecordedRequest&, httplib::Response& res) {
    if (n == 0) {
      FakeUpstream::Reply(res, 200, R"({"choices":[{"message":{"content":"A)");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    }
  });
  ChatClient client(Fast(up));
  auto r = client.Complete(Request());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->attempts, 2);
}

}  // namespace
}  // namespace rlaif::judge
