#include "rlaif/judge/chat_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <future>
#include <sstream>
#include <thread>

#include "fake_upstream.h"
#include "rlaif/common/clock.h"
#include "test_util.h"

namespace rlaif::judge {
namespace {

using rlaif::testing::FakeUpstream;
using rlaif::testing::RecordedRequest;

ChatClientOptions FastOptions(const FakeUpstream& up) {
  ChatClientOptions o;
  o.base_url = up.base_url();
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.05;
  o.timeout_s = 10;
  return o;
}

ChatRequest SimpleRequest() {
  ChatRequest r;
  r.model = "test-model";
  r.messages = {{"system", "be brief"}, {"user", "hello \"world\"\n"}};
  return r;
}

TEST(ChatClientTest, SendsOpenAiRequestAndParsesResponse) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("hi there", 12, 3));
  });
  ChatClientOptions o = FastOptions(up);
  o.api_key = "sk-test-secret";
  ChatClient client(o);
  ChatRequest req = SimpleRequest();
  req.temperature = 0.7;
  req.max_tokens = 99;
  req.seed = 1234;
  req.json_object = true;

  auto resp = client.Complete(req);
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->content, "hi there");
  EXPECT_EQ(resp->finish_reason, "stop");
  EXPECT_EQ(resp->prompt_tokens, 12);
  EXPECT_EQ(resp->completion_tokens, 3);
  EXPECT_EQ(resp->attempts, 1);
  EXPECT_GT(resp->latency_ms, 0);

  auto reqs = up.requests();
  ASSERT_EQ(reqs.size(), 1u);
  const auto& j = reqs[0].json;
  EXPECT_EQ(reqs[0].authorization, "Bearer sk-test-secret");
  EXPECT_EQ(j["model"], "test-model");
  ASSERT_EQ(j["messages"].size(), 2u);
  EXPECT_EQ(j["messages"][1]["role"], "user");
  EXPECT_EQ(j["messages"][1]["content"], "hello \"world\"\n");
  EXPECT_DOUBLE_EQ(j["temperature"].get<double>(), 0.7);
  EXPECT_EQ(j["max_tokens"], 99);
  EXPECT_EQ(j["seed"], 1234);
  EXPECT_EQ(j["response_format"]["type"], "json_object");

  EXPECT_EQ(client.stats().requests.load(), 1);
  EXPECT_EQ(client.stats().successes.load(), 1);
  EXPECT_EQ(client.stats().failures.load(), 0);
  EXPECT_EQ(client.stats().prompt_tokens.load(), 12);
  EXPECT_EQ(client.stats().completion_tokens.load(), 3);
}

TEST(ChatClientTest, OmitsOptionalFields) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("x"));
  });
  ChatClient client(FastOptions(up));
  ASSERT_TRUE(client.Complete(SimpleRequest()).ok());
  auto j = up.requests()[0].json;
  EXPECT_FALSE(j.contains("seed"));
  EXPECT_FALSE(j.contains("response_format"));
  EXPECT_EQ(up.requests()[0].authorization, "");
}

TEST(ChatClientTest, PrefixPathAndTrailingSlash) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = FastOptions(up);
  o.base_url += "/";
  ChatClient client(o);
  EXPECT_TRUE(client.Complete(SimpleRequest()).ok());
}

TEST(ChatClientTest, RetriesOn503ThenSucceeds) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    if (n < 2) {
      FakeUpstream::Reply(
          res, 503,
          R"({"error":{"code":503,"message":"Loading model","type":"unavailable_error"}})");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("finally"));
    }
  });
  ChatClient client(FastOptions(up));
  auto resp = client.Complete(SimpleRequest());
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->content, "finally");
  EXPECT_EQ(resp->attempts, 3);
  EXPECT_EQ(up.calls(), 3);
  EXPECT_EQ(client.stats().requests.load(), 3);
  EXPECT_EQ(client.stats().retries.load(), 2);
  EXPECT_EQ(client.stats().successes.load(), 1);
}

TEST(ChatClientTest, HonoursRetryAfterSeconds) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    if (n == 0) {
      res.set_header("Retry-After", "1");
      FakeUpstream::Reply(res, 429,
                          R"({"error":{"message":"Rate limit reached","type":"requests",)"
                          R"("code":"rate_limit_exceeded"}})");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    }
  });
  ChatClient client(FastOptions(up));
  double start = MonotonicSeconds();
  auto resp = client.Complete(SimpleRequest());
  double elapsed = MonotonicSeconds() - start;
  ASSERT_TRUE(resp.ok()) << resp.status().ToString();
  EXPECT_EQ(resp->attempts, 2);
  EXPECT_GE(elapsed, 0.95);  // backoff alone would be <= 0.05 s
  EXPECT_LT(elapsed, 20.0);  // generous: only a misread unit (minutes) should reach it
}

TEST(ChatClientTest, HonoursRetryAfterMs) {
  FakeUpstream up([](int n, const RecordedRequest&, httplib::Response& res) {
    if (n == 0) {
      res.set_header("retry-after-ms", "400");
      FakeUpstream::Reply(res, 429, R"({"error":{"message":"slow down"}})");
    } else {
      FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
    }
  });
  ChatClient client(FastOptions(up));
  double start = MonotonicSeconds();
  ASSERT_TRUE(client.Complete(SimpleRequest()).ok());
  EXPECT_GE(MonotonicSeconds() - start, 0.38);
}

TEST(ChatClientTest, DoesNotRetry400AndQuotesUpstreamMessage) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 400,
                        R"({"error":{"message":"Invalid value for 'temperature'",)"
                        R"("type":"invalid_request_error","code":"invalid_value"}})");
  });
  ChatClient client(FastOptions(up));
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(resp.status().message().find("HTTP 400"), std::string::npos);
  EXPECT_NE(resp.status().message().find("Invalid value for 'temperature'"), std::string::npos);
  EXPECT_EQ(up.calls(), 1);
  EXPECT_EQ(client.stats().retries.load(), 0);
  EXPECT_EQ(client.stats().failures.load(), 1);
}

TEST(ChatClientTest, InsufficientQuotaIsNotRetried) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    res.set_header("Retry-After", "1");
    FakeUpstream::Reply(
        res, 429,
        R"({"error":{"message":"You exceeded your current quota",)"
        R"("type":"insufficient_quota","param":null,"code":"insufficient_quota"}})");
  });
  ChatClient client(FastOptions(up));
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(resp.status().message().find("exceeded your current quota"), std::string::npos);
  EXPECT_EQ(up.calls(), 1);
  // Refused by the upstream, not by the client's admission control; nor is
  // an upstream error whose text mentions a budget.
  EXPECT_FALSE(IsAdmissionRejection(resp.status()));
  EXPECT_FALSE(IsAdmissionRejection(
      Status::ResourceExhausted("upstream: HTTP 429: monthly budget exceeded")));
  // Every request will fail so until the account is topped up: a fault of
  // the endpoint's account (work waits), shown in the health until a success.
  EXPECT_TRUE(IsQuotaFault(resp.status()));
  EXPECT_FALSE(IsRateLimited(resp.status()));
  EXPECT_NE(client.Health().configuration_fault.find("quota"), std::string::npos);
  EXPECT_TRUE(client.Health().quota_fault);
}

// OpenAI's 429 for one request over the account's per-minute limit: no wait
// makes it fit, so it is the request's fault (not retried, not a rate limit).
TEST(ChatClientTest, RequestTooLargeForTheRateLimitIsNotRetried) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 429,
                        R"({"error":{"message":"Request too large for gpt-4o in organization )"
                        R"(org-x on tokens per min (TPM): Limit 30000, Requested 41000.",)"
                        R"("type":"tokens","param":null,"code":"rate_limit_exceeded"}})");
  });
  ChatClient client(FastOptions(up));
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kInvalidArgument) << resp.status().ToString();
  EXPECT_FALSE(IsRateLimited(resp.status()));
  EXPECT_EQ(up.calls(), 1);
}

// A 429 on every attempt is the upstream's rate limit (IsRateLimited: no
// request's fault); one 5xx among them makes it an ordinary failure.
TEST(ChatClientTest, AnswerOf429OnEveryAttemptIsRateLimited) {
  for (bool one_500 : {false, true}) {
    FakeUpstream up([one_500](int n, const RecordedRequest&, httplib::Response& res) {
      FakeUpstream::Reply(res, one_500 && n == 1 ? 500 : 429,
                          R"({"error":{"message":"slow down","type":"rate_limit_exceeded"}})");
    });
    ChatClientOptions o = FastOptions(up);
    o.max_retries = 2;
    ChatClient client(o);
    auto resp = client.Complete(SimpleRequest());
    ASSERT_FALSE(resp.ok());
    EXPECT_EQ(resp.status().code(), StatusCode::kUnavailable) << resp.status().ToString();
    EXPECT_EQ(IsRateLimited(resp.status()), !one_500) << resp.status().ToString();
    EXPECT_FALSE(IsQuotaFault(resp.status()));
    EXPECT_EQ(up.calls(), 3);
  }
}

TEST(ChatClientTest, GivesUpAfterMaxRetries) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 500, R"({"error":{"message":"boom","type":"server_error"}})");
  });
  ChatClientOptions o = FastOptions(up);
  o.max_retries = 2;
  ChatClient client(o);
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(resp.status().message().find("HTTP 500"), std::string::npos);
  EXPECT_NE(resp.status().message().find("boom"), std::string::npos);
  EXPECT_NE(resp.status().message().find("3 attempts"), std::string::npos);
  EXPECT_EQ(up.calls(), 3);
  EXPECT_EQ(client.stats().requests.load(), 3);
  EXPECT_EQ(client.stats().retries.load(), 2);
  EXPECT_EQ(client.stats().failures.load(), 1);
}

struct ErrorBodyCase {
  int status;
  std::string body;
  std::string expected_text;
};

TEST(ChatClientTest, ParsesServerSpecificErrorBodies) {
  const std::vector<ErrorBodyCase> cases = {
      // vLLM, flat.
      {400,
       R"({"object":"error","message":"This model's maximum context length is 4096 tokens",)"
       R"("type":"BadRequestError","param":null,"code":400})",
       "maximum context length is 4096 tokens"},
      // vLLM, nested (newer versions).
      {400,
       R"({"error":{"message":"max_tokens must be at least 1","type":"BadRequestError",)"
       R"("param":null,"code":400}})",
       "max_tokens must be at least 1"},
      // llama.cpp server.
      {503, R"({"error":{"code":503,"message":"Loading model","type":"unavailable_error"}})",
       "Loading model"},
      // Ollama.
      {404, R"({"error":"model \"llama9\" not found, try pulling it first"})",
       "model \"llama9\" not found"},
      // Not JSON at all (a proxy page).
      {502, "<html>Bad Gateway</html>", "<html>Bad Gateway</html>"},
  };
  for (const auto& c : cases) {
    FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
      FakeUpstream::Reply(res, c.status, c.body);
    });
    ChatClientOptions o = FastOptions(up);
    o.max_retries = 0;
    ChatClient client(o);
    auto resp = client.Complete(SimpleRequest());
    ASSERT_FALSE(resp.ok()) << c.body;
    EXPECT_NE(resp.status().message().find(c.expected_text), std::string::npos)
        << resp.status().message();
    EXPECT_NE(resp.status().message().find("HTTP " + std::to_string(c.status)), std::string::npos);
  }
}

TEST(ChatClientTest, NetworkErrorsAreRetriedThenUnavailable) {
  // A port that was free a moment ago and has no listener: connections are refused.
  int dead_port = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    dead_port = ntohs(addr.sin_port);
    ::close(fd);
  }
  ChatClientOptions o;
  o.base_url = "http://127.0.0.1:" + std::to_string(dead_port) + "/v1";
  o.max_retries = 2;
  o.backoff_initial_s = 0.01;
  o.backoff_max_s = 0.02;
  ChatClient client(o);
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(resp.status().message().find("3 attempts"), std::string::npos);
  EXPECT_EQ(client.stats().requests.load(), 3);
}

// Reads one HTTP/1.1 request from `fd`: the head, and the body (Content-Length)
// when `with_body`. False on EOF, error or a 10 s silence.
bool ReadRawRequest(int fd, bool with_body) {
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string data;
  char buf[65536];
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
  }
  if (!with_body) return true;
  std::string head = data.substr(0, head_end);
  for (char& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  size_t at = head.find("content-length:");
  if (at == std::string::npos) return true;
  size_t want = std::stoul(head.substr(at + 15));
  size_t have = data.size() - head_end - 4;
  while (have < want) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    have += static_cast<size_t>(n);
  }
  return true;
}

void WriteRawResponse(int fd, const std::string& body, bool close) {
  std::string r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                  std::to_string(body.size()) + "\r\n" + (close ? "Connection: close\r\n" : "") +
                  "\r\n" + body;
  for (size_t off = 0; off < r.size();) {
    ssize_t n = ::send(fd, r.data() + off, r.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

int AcceptWithin10s(int listen_fd) {
  pollfd p{listen_fd, POLLIN, 0};
  if (::poll(&p, 1, 10000) != 1) return -1;
  return ::accept(listen_fd, nullptr, nullptr);
}

// A server whose keep-alive timeout ends just as the client reuses the pooled
// connection (after httplib's liveness check): the connection is reset while
// the next request is being written. Nothing reached the server, so the
// client resends on a new connection at once, without a failed attempt (which
// would count toward max_retries and the circuit breaker). The second request
// is larger than the loopback socket buffers, so its write is still going on
// when the reset arrives.
TEST(ChatClientTest, StaleKeepAliveConnectionIsReplacedWithoutAFailedAttempt) {
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(lfd, 8), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::atomic<int> connections{0};
  std::atomic<bool> reset_sent{false};
  std::thread server([&] {
    int c1 = AcceptWithin10s(lfd);
    if (c1 < 0) return;
    ++connections;
    if (ReadRawRequest(c1, /*with_body=*/true)) {
      WriteRawResponse(c1, FakeUpstream::Completion("first"), /*close=*/false);
      if (ReadRawRequest(c1, /*with_body=*/false)) {
        linger lg{1, 0};  // close() sends RST
        ::setsockopt(c1, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        reset_sent = true;
      }
    }
    ::close(c1);
    int c2 = AcceptWithin10s(lfd);
    if (c2 < 0) return;
    ++connections;
    if (ReadRawRequest(c2, /*with_body=*/true)) {
      WriteRawResponse(c2, FakeUpstream::Completion("second"), /*close=*/true);
    }
    ::close(c2);
  });
  {
    ChatClientOptions o;
    o.base_url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1";
    o.backoff_initial_s = 0.01;
    o.backoff_max_s = 0.05;
    o.timeout_s = 10;
    ChatClient client(o);
    auto first = client.Complete(SimpleRequest());
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(first->content, "first");
    ChatRequest big = SimpleRequest();
    big.messages.back().content = std::string(32 << 20, 'x');
    auto second = client.Complete(big);
    ASSERT_TRUE(second.ok()) << second.status().ToString();
    EXPECT_EQ(second->content, "second");
    EXPECT_EQ(second->attempts, 1);
    EXPECT_EQ(client.stats().requests.load(), 2);
    EXPECT_EQ(client.stats().retries.load(), 0);
    EXPECT_EQ(client.Health().consecutive_failures, 0);
  }
  server.join();
  ::close(lfd);
  EXPECT_TRUE(reset_sent.load());
  EXPECT_EQ(connections.load(), 2);
}

TEST(ChatClientTest, CorruptSuccessBody) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 200, "this is not json");
  });
  ChatClient client(FastOptions(up));
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kCorruption);
  EXPECT_NE(resp.status().message().find("this is not json"), std::string::npos);
}

// A call whose attempts failed in different ways (a 503, then a truncated
// 200 body last) is an unavailable endpoint, not a corrupt answer: callers
// dead-letter kCorruption at once (unparseable verdict) but retry
// kUnavailable later. Seen as a dead letter in test_upstream_outage under load.
TEST(ChatClientTest, MixedFailuresEndingInACorruptBodyAreUnavailable) {
  std::atomic<int> n{0};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    if (n++ == 0) return FakeUpstream::Reply(res, 503, R"({"error":{"message":"loading"}})");
    FakeUpstream::Reply(res, 200, R"({"id":"x","choices":[{"message":{"content":"{\"win)");
  });
  ChatClientOptions o = FastOptions(up);
  o.max_retries = 2;
  ChatClient client(o);
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kUnavailable) << resp.status().ToString();
  EXPECT_EQ(up.calls(), 3);
}

TEST(ChatClientTest, BadBaseUrl) {
  for (const char* url : {"ftp://x/v1", "127.0.0.1:8000/v1", "http://:80/v1", "http://h:99999/v1",
                          "http://user:pw@h/v1"}) {
    ChatClientOptions o;
    o.base_url = url;
    ChatClient client(o);
    auto resp = client.Complete(SimpleRequest());
    ASSERT_FALSE(resp.ok()) << url;
    EXPECT_EQ(resp.status().code(), StatusCode::kInvalidArgument) << url;
  }
}

TEST(ChatClientTest, StopCancelsBackoffWait) {
  FakeUpstream up([](int, const RecordedRequest&, httplib::Response& res) {
    res.set_header("Retry-After", "30");
    FakeUpstream::Reply(res, 503, R"({"error":{"message":"busy"}})");
  });
  ChatClient client(FastOptions(up));
  double start = MonotonicSeconds();
  auto fut = std::async(std::launch::async, [&] { return client.Complete(SimpleRequest()); });
  while (up.calls() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  client.Stop();
  auto resp = fut.get();
  EXPECT_LT(MonotonicSeconds() - start, 20.0);  // well before the 30 s Retry-After
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kCancelled);
  // Calls after Stop() fail at once.
  auto after = client.Complete(SimpleRequest());
  EXPECT_EQ(after.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(up.calls(), 1);
}

// Every call lands in exactly one result, and attempts reconcile with calls:
// what rlaif_upstream_calls_total{result} and rlaif_upstream_request_errors_total
// export. Calls: ok; 503 then ok (a failed attempt inside a good call); 500
// twice, which opens the breaker, so the third attempt is refused (an error:
// the call reached the upstream); one refused before any attempt (rejected);
// one cancelled after Stop().
TEST(ChatClientTest, CallsAndAttemptsReconcile) {
  std::atomic<int> n{0};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    const int i = n++;
    if (i == 1) return FakeUpstream::Reply(res, 503, R"({"error":{"message":"busy"}})");
    if (i >= 3) return FakeUpstream::Reply(res, 500, R"({"error":{"message":"boom"}})");
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = FastOptions(up);
  o.max_retries = 2;
  o.breaker_failures = 2;
  o.breaker_cooldown_s = 60;
  ChatClient client(o);
  EXPECT_TRUE(client.Complete(SimpleRequest()).ok());
  EXPECT_TRUE(client.Complete(SimpleRequest()).ok());
  const Status third = client.Complete(SimpleRequest()).status();
  // Its own attempts failed (then the breaker they opened refused a retry):
  // it fails with the upstream's error, not as a call that was never sent.
  EXPECT_FALSE(IsAdmissionRejection(third)) << third.ToString();
  EXPECT_NE(third.message().find("boom"), std::string::npos) << third.ToString();
  EXPECT_NE(third.message().find("the circuit breaker opened"), std::string::npos)
      << third.ToString();
  const Status refused = client.Complete(SimpleRequest()).status();
  EXPECT_TRUE(IsAdmissionRejection(refused)) << refused.ToString();
  client.Stop();
  EXPECT_EQ(client.Complete(SimpleRequest()).status().code(), StatusCode::kCancelled);

  const ChatClientStats& s = client.stats();
  EXPECT_EQ(up.calls(), 5);
  EXPECT_EQ(s.requests.load(), 5);
  EXPECT_EQ(s.request_errors.load(), 3);
  EXPECT_EQ(s.successes.load(), 2);
  EXPECT_EQ(s.failed_calls.load(), 1);
  EXPECT_EQ(s.rejected_calls.load(), 1);
  EXPECT_EQ(s.cancelled_calls.load(), 1);
  EXPECT_EQ(s.failures.load(), 3);
  EXPECT_EQ(s.retries.load(), 3);
}

TEST(ChatClientTest, StopAbortsRequestInFlight) {
  std::atomic<bool> release{false};
  // Holds the request for up to 30 s (released as soon as the call returns).
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    for (int i = 0; i < 3000 && !release; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("late"));
  });
  ChatClientOptions o = FastOptions(up);
  o.timeout_s = 60;  // only Stop() can end the request early
  ChatClient client(o);
  double start = MonotonicSeconds();
  auto fut = std::async(std::launch::async, [&] { return client.Complete(SimpleRequest()); });
  while (up.calls() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  client.Stop();
  auto resp = fut.get();
  release = true;
  EXPECT_LT(MonotonicSeconds() - start, 15.0);  // well before the upstream answers
  EXPECT_EQ(resp.status().code(), StatusCode::kCancelled) << resp.status().ToString();
}

TEST(ChatClientTest, ConcurrencyIsBounded) {
  std::atomic<int> now{0};
  std::atomic<int> peak{0};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    int n = ++now;
    int p = peak.load();
    while (n > p && !peak.compare_exchange_weak(p, n)) {
    }
    // Long enough that two requests overlap even when a loaded machine
    // starts the callers' threads late.
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    --now;
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("ok"));
  });
  ChatClientOptions o = FastOptions(up);
  o.max_concurrency = 2;
  ChatClient client(o);
  std::vector<std::future<Result<ChatResponse>>> futs;
  for (int i = 0; i < 8; ++i) {
    futs.push_back(
        std::async(std::launch::async, [&] { return client.Complete(SimpleRequest()); }));
  }
  for (auto& f : futs) EXPECT_TRUE(f.get().ok());
  EXPECT_EQ(up.calls(), 8);
  EXPECT_LE(peak.load(), 2);
  EXPECT_EQ(peak.load(), 2);  // and the slots are actually used in parallel
}

// 401, 403 and 404 are the configuration's fault, not the request's: not
// retried, kFailedPrecondition (IsConfigurationFault), counted by the
// breaker, kept in Health() until a success; a 401's upstream message (which
// may echo the key) is not quoted, a 404's (which names the model) is.
TEST(ChatClientTest, RefusedCredentialsAndMissingModelsAreConfigurationFaults) {
  for (int status : {401, 403, 404}) {
    SCOPED_TRACE("HTTP " + std::to_string(status));
    std::atomic<bool> fixed{false};
    FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
      if (fixed.load()) return FakeUpstream::Reply(res, 200, FakeUpstream::Completion("fine"));
      FakeUpstream::Reply(
          res, status,
          status == 404 ? R"({"error":{"message":"The model `judge-x` does not exist"}})"
                        : R"({"error":{"message":"Incorrect API key provided: sk-ab****wxyz.",)"
                          R"("type":"invalid_request_error","code":"invalid_api_key"}})");
    });
    ChatClientOptions o = FastOptions(up);
    o.breaker_failures = 3;
    o.breaker_cooldown_s = 2;  // long: it is checked open after the third call
    ChatClient client(o);
    for (int i = 0; i < 3; ++i) {
      auto resp = client.Complete(SimpleRequest());
      ASSERT_FALSE(resp.ok());
      EXPECT_EQ(resp.status().code(), StatusCode::kFailedPrecondition);
      EXPECT_TRUE(IsConfigurationFault(resp.status())) << resp.status().message();
      EXPECT_EQ(IsForbidden(resp.status()), status == 403) << resp.status().message();
      EXPECT_NE(resp.status().message().find("HTTP " + std::to_string(status)), std::string::npos);
      EXPECT_EQ(resp.status().message().find("sk-ab"), std::string::npos);
      if (status == 404) {
        EXPECT_NE(resp.status().message().find("judge-x"), std::string::npos);
      } else {
        EXPECT_NE(resp.status().message().find("invalid_api_key"), std::string::npos);
      }
    }
    EXPECT_EQ(up.calls(), 3);  // not retried
    ClientHealth h = client.Health();
    EXPECT_EQ(h.breaker, BreakerState::kOpen);  // the breaker counted them
    EXPECT_FALSE(h.configuration_fault.empty());
    EXPECT_EQ(h.last_failure, h.configuration_fault);
    EXPECT_FALSE(h.quota_fault);  // the configuration, not the account's quota
    // Fixed upstream: after the cooldown the probe succeeds and clears them.
    fixed = true;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int>(o.breaker_cooldown_s * 1000) + 200));
    ASSERT_TRUE(client.Complete(SimpleRequest()).ok());
    h = client.Health();
    EXPECT_TRUE(h.configuration_fault.empty());
    EXPECT_TRUE(h.last_failure.empty());
  }
  // A plain 400 stays the request's fault.
  FakeUpstream bad([](int, const RecordedRequest&, httplib::Response& res) {
    FakeUpstream::Reply(res, 400, R"({"error":{"message":"max_tokens too large"}})");
  });
  ChatClient client(FastOptions(bad));
  auto resp = client.Complete(SimpleRequest());
  EXPECT_EQ(resp.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(IsConfigurationFault(resp.status()));
  EXPECT_TRUE(client.Health().configuration_fault.empty());
}

// A response far larger than any completion (a runaway generation, a proxy
// streaming something else) is not read into memory: the call fails at once
// (the same request would run away again), as the endpoint's failure.
TEST(ChatClientTest, OversizedResponseIsNotRead) {
  std::atomic<bool> huge{true};
  FakeUpstream up([&](int, const RecordedRequest&, httplib::Response& res) {
    if (huge) {
      return FakeUpstream::Reply(res, 200, FakeUpstream::Completion(std::string(9 << 20, 'x')));
    }
    FakeUpstream::Reply(res, 200, FakeUpstream::Completion("fine"));
  });
  ChatClientOptions o = FastOptions(up);
  o.max_retries = 1;
  ChatClient client(o);
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), StatusCode::kUnavailable) << resp.status().ToString();
  EXPECT_NE(resp.status().message().find("the response is over 8 MiB"), std::string::npos)
      << resp.status().message();
  EXPECT_EQ(up.calls(), 1);
  // The client (and its connection pool) is fine afterwards.
  huge = false;
  auto ok = client.Complete(SimpleRequest());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->content, "fine");
}

TEST(ChatClientTest, ApiKeyIsNeverLogged) {
  auto stream = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*stream);
  auto logger = spdlog::default_logger();
  logger->sinks().push_back(sink);
  auto old_level = logger->level();
  logger->set_level(spdlog::level::trace);
  {
    // A hostile (or careless) upstream echoes the key in its error messages:
    // the client scrubs it from statuses (which reach /v1/status) and logs.
    FakeUpstream up([](int n, const RecordedRequest& r, httplib::Response& res) {
      const std::string key = r.authorization.substr(std::string("Bearer ").size());
      if (n < 2) {
        FakeUpstream::Reply(res, 503,
                            R"({"error":{"message":"overloaded for key )" + key + R"("}})");
      } else {
        FakeUpstream::Reply(
            res, 401, R"({"error":{"message":"Incorrect API key provided: )" + key + R"("}})");
      }
    });
    ChatClientOptions o = FastOptions(up);
    o.api_key = "sk-very-secret-value";
    ChatClient client(o);
    auto resp = client.Complete(SimpleRequest());
    EXPECT_EQ(resp.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_TRUE(IsConfigurationFault(resp.status())) << resp.status().message();
    EXPECT_EQ(resp.status().message().find("sk-very-secret-value"), std::string::npos);
    EXPECT_EQ(client.Health().last_failure.find("sk-very-secret-value"), std::string::npos);
  }
  logger->set_level(old_level);
  logger->sinks().pop_back();
  const std::string logs = stream->str();
  EXPECT_NE(logs.find("overloaded for key [api key]"), std::string::npos)
      << logs;  // retries logged
  EXPECT_EQ(logs.find("sk-very-secret-value"), std::string::npos) << logs;
}

// An error message quoted in part (cut at 1,000 characters) with the key
// across the cut: the key is scrubbed from the body before the cut, so not
// even its first half reaches the status.
TEST(ChatClientTest, ApiKeyAcrossTheQuoteCutIsScrubbed) {
  FakeUpstream up([](int, const RecordedRequest& r, httplib::Response& res) {
    const std::string key = r.authorization.substr(std::string("Bearer ").size());
    FakeUpstream::Reply(res, 400,
                        R"({"error":{"message":")" + std::string(990, 'x') + key + R"("}})");
  });
  ChatClientOptions o = FastOptions(up);
  o.api_key = "sk-very-secret-value";
  ChatClient client(o);
  auto resp = client.Complete(SimpleRequest());
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().message().find("sk-very"), std::string::npos) << resp.status().message();
}

// TLS: the server certificate is verified (a self-signed certificate is
// refused) and an explicit CA file is honoured.
TEST(ChatClientTest, HttpsVerifiesServerCertificate) {
  rlaif::testing::TempDir dir;
  const std::string cert = dir.Sub("cert.pem");
  const std::string key = dir.Sub("key.pem");
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + key + " -out " +
                          cert +
                          " -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                          ">/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "openssl CLI not available";

  httplib::SSLServer server(cert.c_str(), key.c_str());
  ASSERT_TRUE(server.is_valid());
  server.Post("/v1/chat/completions", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(FakeUpstream::Completion("secure hello"), "application/json");
  });
  int port = server.bind_to_any_port("127.0.0.1");
  std::thread t([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::yield();

  ChatClientOptions o;
  o.base_url = "https://127.0.0.1:" + std::to_string(port) + "/v1";
  o.max_retries = 0;
  {
    ChatClient untrusted(o);
    auto resp = untrusted.Complete(SimpleRequest());
    ASSERT_FALSE(resp.ok());
    EXPECT_EQ(resp.status().code(), StatusCode::kFailedPrecondition) << resp.status().ToString();
  }
  o.ca_cert_path = cert;
  {
    ChatClient trusted(o);
    auto resp = trusted.Complete(SimpleRequest());
    ASSERT_TRUE(resp.ok()) << resp.status().ToString();
    EXPECT_EQ(resp->content, "secure hello");
  }
  server.stop();
  t.join();
}

}  // namespace
}  // namespace rlaif::judge
