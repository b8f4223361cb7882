#include "rlaif/judge/chat_client.h"

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string_view>
#include <utility>

#include "rlaif/common/base_url.h"
#include "rlaif/common/clock.h"

namespace rlaif::judge {

namespace {

using json = nlohmann::json;

// The admission-control rejections' wording (IsAdmissionRejection).
constexpr std::string_view kCircuitOpen = "circuit open for ";
constexpr std::string_view kCircuitHalfOpen = "circuit half-open for ";
constexpr std::string_view kBudgetExhausted = "budget exhausted until ";
// A call whose attempts failed, then a retry was refused (IsRefusedAfterAttempts).
constexpr std::string_view kRefusedAfterAttempts = "then refused a retry: ";
// The configuration faults' wording (IsConfigurationFault).
constexpr std::string_view kCredentialsFault = "the endpoint refused the credentials";
constexpr std::string_view kNotFoundFault = "no such endpoint or model";
constexpr std::string_view kTlsFault = "TLS certificate verification failed";
constexpr std::string_view kQuotaFault = "the account's quota is exhausted";
constexpr std::string_view kRateLimited = "rate limited (HTTP 429) on every attempt";

// What a transport error means, for an operator (httplib's own names are
// one word: "Connection", "Read").
std::string DescribeHttpError(httplib::Error err, double connect_timeout_s, double timeout_s) {
  auto secs = [](double s) { return fmt::format("{:g} s", s); };
  switch (err) {
    case httplib::Error::Connection:
      return "cannot connect (refused, unreachable, or no answer within the connect timeout of " +
             secs(connect_timeout_s) + ")";
    case httplib::Error::ConnectionTimeout:
      return "connect timed out after " + secs(connect_timeout_s);
    case httplib::Error::Read:
      return "no complete response (timed out after " + secs(timeout_s) +
             ", or the connection was closed)";
    case httplib::Error::Write:
      return "cannot send the request (the connection was closed)";
    default:
      return std::string("HTTP client error: ") + httplib::to_string(err);
  }
}

// Upper bound on a server-requested Retry-After wait: a misconfigured proxy
// must not park a worker for an hour.
constexpr double kMaxRetryAfterS = 120.0;
// The most of a response body read: a chat completion is kilobytes.
constexpr size_t kMaxResponseBytes = size_t{8} << 20;
// How much of an error body we quote in a Status when it is not JSON.
constexpr size_t kMaxQuotedBody = 300;

struct Endpoint {
  bool https = false;
  std::string host;  // without brackets for IPv6
  int port = 0;
  std::string path;     // e.g. "/v1/chat/completions"
  std::string display;  // scheme://host:port/path, for messages
};

std::string ToLower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string Truncate(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  return s.substr(0, n) + "...(" + std::to_string(s.size()) + " bytes)";
}

// The configured base_url (checked by the config already; a client made
// directly gets the same refusal here) plus the chat completions path.
Result<Endpoint> ChatEndpoint(const std::string& url) {
  auto base = ParseBaseUrl(url);
  if (!base.ok()) return base.status();
  Endpoint ep;
  ep.https = base->https;
  ep.host = base->host;
  ep.port = base->port;
  ep.path = base->path + "/chat/completions";
  ep.display = std::string(ep.https ? "https://" : "http://") +
               (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) + ":" +
               std::to_string(ep.port) + ep.path;
  return ep;
}

// The interesting parts of an error body, whatever the server.
struct UpstreamError {
  std::string message;
  std::string type;
  std::string code;
};

std::string JsonScalarToString(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_null()) return "";
  return v.dump();
}

// Understands OpenAI {"error":{"message","type","code"}}, vLLM's flat
// {"object":"error","message",...} and nested forms, llama.cpp
// {"error":{"code":503,"message","type"}}, Ollama and TGI {"error":"..."},
// FastAPI {"detail":...}; anything else is quoted (truncated).
UpstreamError ParseUpstreamError(const std::string& body) {
  UpstreamError e;
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    const json* src = &j;
    auto it = j.find("error");
    if (it != j.end() && it->is_object()) {
      src = &*it;
    } else if (it != j.end() && it->is_string()) {
      e.message = it->get<std::string>();
      if (auto t = j.find("error_type"); t != j.end()) e.type = JsonScalarToString(*t);
      return e;
    }
    if (auto m = src->find("message"); m != src->end()) e.message = JsonScalarToString(*m);
    if (auto t = src->find("type"); t != src->end()) e.type = JsonScalarToString(*t);
    if (auto c = src->find("code"); c != src->end()) e.code = JsonScalarToString(*c);
    if (e.message.empty()) {
      if (auto d = j.find("detail"); d != j.end()) e.message = JsonScalarToString(*d);
    }
    if (!e.message.empty() || !e.type.empty() || !e.code.empty()) {
      e.message = Truncate(e.message, 1000);
      return e;
    }
  }
  e.message = Truncate(body, kMaxQuotedBody);
  return e;
}

std::string DescribeUpstream(const UpstreamError& e) {
  std::string out = e.message.empty() ? "(no message)" : e.message;
  std::string extra;
  if (!e.type.empty()) extra = "type=" + e.type;
  if (!e.code.empty()) extra += (extra.empty() ? "" : ", ") + std::string("code=") + e.code;
  if (!extra.empty()) out += " (" + extra + ")";
  return out;
}

// Seconds from Retry-After (delta-seconds or HTTP-date) or retry-after-ms.
std::optional<double> ParseRetryAfter(const httplib::Response& res) {
  if (res.has_header("retry-after-ms")) {
    const std::string v = res.get_header_value("retry-after-ms");
    char* end = nullptr;
    double ms = std::strtod(v.c_str(), &end);
    if (end != v.c_str() && std::isfinite(ms) && ms >= 0) return ms / 1000.0;
  }
  if (res.has_header("Retry-After")) {
    const std::string v = res.get_header_value("Retry-After");
    char* end = nullptr;
    double s = std::strtod(v.c_str(), &end);
    if (end != v.c_str() && std::isfinite(s) && s >= 0) return s;
    struct tm tm {};
    if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S", &tm) != nullptr) {
      double delta = static_cast<double>(timegm(&tm)) - static_cast<double>(NowMs()) / 1000.0;
      return std::max(0.0, delta);
    }
  }
  return std::nullopt;
}

// OpenAI's x-ratelimit-remaining-{requests,tokens} / x-ratelimit-reset-*:
// seconds until the exhausted limit resets (the longer of the two when both
// are exhausted; with `any` also when not exhausted, for a 429 that carries
// no Retry-After).
std::optional<double> RateLimitResetSeconds(const httplib::Response& res, bool any) {
  std::optional<double> out;
  for (const char* kind : {"requests", "tokens"}) {
    const std::string remaining = std::string("x-ratelimit-remaining-") + kind;
    const std::string reset = std::string("x-ratelimit-reset-") + kind;
    if (!res.has_header(reset.c_str())) continue;
    bool exhausted = any;
    if (res.has_header(remaining.c_str())) {
      const std::string v = res.get_header_value(remaining.c_str());
      char* end = nullptr;
      double r = std::strtod(v.c_str(), &end);
      if (end != v.c_str() && r <= 0) exhausted = true;
    }
    if (!exhausted) continue;
    if (auto s = ParseResetDuration(res.get_header_value(reset.c_str()))) {
      out = std::max(out.value_or(0.0), *s);
    }
  }
  return out;
}

bool RetryableHttpStatus(int status) {
  return status == 408 || status == 409 || status == 429 || (status >= 500 && status <= 599);
}

std::string BuildRequestBody(const ChatRequest& request) {
  json messages = json::array();
  for (const ChatMessage& m : request.messages) {
    messages.push_back({{"role", m.role}, {"content", m.content}});
  }
  json body = {{"model", request.model},
               {"messages", std::move(messages)},
               {"temperature", request.temperature},
               {"max_tokens", request.max_tokens}};
  if (request.seed) body["seed"] = *request.seed;
  if (request.json_object) body["response_format"] = {{"type", "json_object"}};
  if (request.top_logprobs > 0) {
    body["logprobs"] = true;
    body["top_logprobs"] = std::min(request.top_logprobs, 20);
  }
  // Prompts come from production logs: invalid UTF-8 is replaced, not thrown.
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Parses a 200 body. Content may be a string, null (e.g. refusals or tool
// calls: reported as "") or an array of {"type":"text","text":...} parts.
Result<ChatResponse> ParseSuccessBody(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return Status::Corruption("response is not a JSON object: " + Truncate(body, kMaxQuotedBody));
  }
  try {
    auto choices = j.find("choices");
    if (choices == j.end() || !choices->is_array() || choices->empty()) {
      if (j.contains("error")) {
        return Status::Corruption("HTTP 200 with an error body: " +
                                  DescribeUpstream(ParseUpstreamError(body)));
      }
      return Status::Corruption("response has no choices: " + Truncate(body, kMaxQuotedBody));
    }
    const json& choice = (*choices)[0];
    ChatResponse out;
    const json& message = choice.at("message");
    static const json kNoContent;
    auto content_it = message.find("content");
    const json& content = content_it == message.end() ? kNoContent : *content_it;
    if (content.is_string()) {
      out.content = content.get<std::string>();
    } else if (content.is_array()) {
      for (const json& part : content) {
        if (part.is_object() && part.value("type", "") == "text") {
          out.content += part.value("text", "");
        }
      }
    } else if (!content.is_null()) {
      return Status::Corruption("choices[0].message.content is neither a string nor null");
    }
    if (auto fr = choice.find("finish_reason"); fr != choice.end() && fr->is_string()) {
      out.finish_reason = fr->get<std::string>();
    }
    // Logprobs are an optional extra: a shape we do not understand is
    // ignored rather than failing a good verdict.
    if (auto lp = choice.find("logprobs"); lp != choice.end() && lp->is_object()) {
      if (auto lc = lp->find("content"); lc != lp->end() && lc->is_array()) {
        for (const json& t : *lc) {
          if (!t.is_object()) continue;
          TokenLogprob tl;
          tl.token = t.value("token", "");
          if (auto v = t.find("logprob"); v != t.end() && v->is_number())
            tl.logprob = v->get<double>();
          if (auto top = t.find("top_logprobs"); top != t.end() && top->is_array()) {
            for (const json& alt : *top) {
              if (!alt.is_object()) continue;
              auto v = alt.find("logprob");
              if (v == alt.end() || !v->is_number()) continue;
              tl.top.push_back({alt.value("token", ""), v->get<double>()});
            }
          }
          out.logprobs.push_back(std::move(tl));
        }
      }
    }
    if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
      if (auto p = usage->find("prompt_tokens"); p != usage->end() && p->is_number()) {
        out.prompt_tokens = p->get<int64_t>();
      }
      if (auto c = usage->find("completion_tokens"); c != usage->end() && c->is_number()) {
        out.completion_tokens = c->get<int64_t>();
      }
    }
    return out;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("malformed chat completion: ") + e.what());
  }
}

}  // namespace

// Owns the connection pool, the concurrency slots and the stop flag; all
// guarded by `mu_`.
struct ChatClient::Impl {
  // kRejected: refused before sending (breaker open, budget spent).
  enum class Outcome { kOk, kRetryable, kFatal, kCancelled, kRejected };
  // What an attempt says about the endpoint's health, for the breaker.
  enum class Health { kGood, kBad, kNeutral };
  struct Attempt {
    Outcome outcome = Outcome::kFatal;
    Health health = Health::kNeutral;
    ChatResponse response;
    Status status;  // for anything but kOk
    std::optional<double> retry_after_s;
    int http_status = 0;  // the upstream's HTTP status, 0 without an answer
  };

  Impl(ChatClientOptions o, ChatClientStats& s)
      : options(std::move(o)),
        stats(s),
        rng(std::random_device{}()),
        breaker(options.breaker_failures, options.breaker_cooldown_s) {
    const double now = MonotonicSeconds();
    requests_bucket = TokenBucket(options.requests_per_minute, options.rate_burst_s, now);
    tokens_bucket = TokenBucket(options.tokens_per_minute, options.rate_burst_s, now);
    auto ep = ChatEndpoint(options.base_url);
    if (ep.ok()) {
      endpoint = *ep;
    } else {
      endpoint_status = ep.status();
    }
    options.max_concurrency = std::max(1, options.max_concurrency);
  }

  // The options now (Reconfigure changes the limits). Thread-safe.
  ChatClientOptions Options() const {
    std::lock_guard<std::mutex> lock(mu);
    return options;
  }

  // httplib reads them at each request: a pooled connection takes a
  // reload's new timeouts when it is taken again (Acquire).
  static void SetTimeouts(httplib::ClientImpl& c, const ChatClientOptions& o) {
    auto split = [](double s, auto setter) {
      s = std::max(0.001, s);
      time_t sec = static_cast<time_t>(s);
      setter(sec, static_cast<time_t>((s - static_cast<double>(sec)) * 1e6));
    };
    split(o.connect_timeout_s, [&](time_t a, time_t b) { c.set_connection_timeout(a, b); });
    split(o.timeout_s, [&](time_t a, time_t b) { c.set_read_timeout(a, b); });
    split(o.timeout_s, [&](time_t a, time_t b) { c.set_write_timeout(a, b); });
  }

  std::unique_ptr<httplib::ClientImpl> MakeConnection() const {
    const ChatClientOptions o = Options();
    std::unique_ptr<httplib::ClientImpl> c;
    if (endpoint.https) {
      auto ssl = std::make_unique<httplib::SSLClient>(endpoint.host, endpoint.port);
      ssl->enable_server_certificate_verification(true);
      if (!options.ca_cert_path.empty()) ssl->set_ca_cert_path(options.ca_cert_path);
      c = std::move(ssl);
    } else {
      c = std::make_unique<httplib::ClientImpl>(endpoint.host, endpoint.port);
    }
    SetTimeouts(*c, o);
    c->set_keep_alive(true);
    // httplib writes headers and body in separate sends; with Nagle on, a
    // reused connection waits for the peer's delayed ACK (~40-100 ms).
    c->set_tcp_nodelay(true);
    return c;
  }

  // Waits for a concurrency slot and takes a pooled connection (*reused =
  // true) or makes a new one. nullptr once stopped.
  std::unique_ptr<httplib::ClientImpl> Acquire(bool* reused) {
    std::unique_lock<std::mutex> lock(mu);
    slot_cv.wait(lock, [&] { return stopped || in_flight < options.max_concurrency; });
    if (stopped) return nullptr;
    ++in_flight;
    std::unique_ptr<httplib::ClientImpl> c;
    if (!idle.empty()) {
      c = std::move(idle.back());
      idle.pop_back();
    }
    lock.unlock();
    *reused = c != nullptr;
    if (c) {
      SetTimeouts(*c, Options());
    } else {
      c = MakeConnection();
    }
    lock.lock();
    active.insert(c.get());
    return c;
  }

  // Swaps `c` (in use, holding a slot) for a new connection in the same slot.
  // False, leaving `c` alone, once stopped.
  bool Reconnect(std::unique_ptr<httplib::ClientImpl>& c) {
    std::unique_ptr<httplib::ClientImpl> fresh = MakeConnection();
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopped) return false;
      active.erase(c.get());
      stale.erase(c.get());
      active.insert(fresh.get());
    }
    c.swap(fresh);  // the failed connection is closed as `fresh` goes
    return true;
  }

  // Returns the slot; keeps the connection for reuse when it is healthy.
  void Release(std::unique_ptr<httplib::ClientImpl> c, bool reusable) {
    std::unique_ptr<httplib::ClientImpl> drop;
    {
      std::lock_guard<std::mutex> lock(mu);
      active.erase(c.get());
      const bool was_stale = stale.erase(c.get()) > 0;  // in use when the key was rotated
      --in_flight;
      if (reusable && !stopped && !was_stale &&
          idle.size() < static_cast<size_t>(options.max_concurrency)) {
        idle.push_back(std::move(c));
      } else {
        drop = std::move(c);
      }
    }
    slot_cv.notify_one();
  }

  // Rolls the budget over at the top of each UTC hour. Requires mu.
  void RollBudgetHour(int64_t now_ms) {
    const int64_t hour = now_ms / kHourMs;
    if (hour != budget_hour) {
      budget_hour = hour;
      spent_this_hour = 0;
    }
  }

  bool BudgetExhaustedLocked(int64_t now_ms) {
    RollBudgetHour(now_ms);
    return options.hourly_budget_usd > 0 && spent_this_hour >= options.hourly_budget_usd;
  }

  // Adds the cost of a finished request. Thread-safe.
  void Charge(double cost_usd) {
    std::lock_guard<std::mutex> lock(mu);
    RollBudgetHour(NowMs());
    spent_this_hour += cost_usd;
    total_cost += cost_usd;
  }

  // Breaker, budget, rate limits, in that order (see the header). Returns
  // kRejected / kCancelled attempts, or nullopt when the request may go.
  std::optional<Attempt> Admit(double estimated_tokens) {
    auto reject = [](Outcome o, Status st) {
      Attempt a;
      a.outcome = o;
      a.status = std::move(st);
      return a;
    };
    std::unique_lock<std::mutex> lock(mu);
    double waited_s = 0;
    bool counted_wait = false;
    for (;;) {
      if (stopped) return reject(Outcome::kCancelled, Status::Cancelled("chat client stopped"));
      const double now = MonotonicSeconds();
      if (breaker.state(now) == BreakerState::kOpen) {
        stats.circuit_rejections++;
        char buf[64];
        snprintf(buf, sizeof buf, "%.1f", breaker.RetryInSeconds(now));
        return reject(Outcome::kRejected,
                      Status::Unavailable(std::string(kCircuitOpen) + endpoint.display + " after " +
                                          std::to_string(breaker.consecutive_failures()) +
                                          " consecutive failures; next probe in " + buf + " s"));
      }
      const int64_t now_ms = NowMs();
      if (BudgetExhaustedLocked(now_ms)) {
        stats.budget_rejections++;
        const int64_t next_hour = (now_ms / kHourMs + 1) * kHourMs;
        char buf[160];
        snprintf(buf, sizeof buf, "%.*s%02d:00 UTC (spent $%.4f of $%.4f this hour)",
                 static_cast<int>(kBudgetExhausted.size()), kBudgetExhausted.data(),
                 static_cast<int>((next_hour / kHourMs) % 24), spent_this_hour,
                 options.hourly_budget_usd);
        return reject(Outcome::kRejected, Status::ResourceExhausted(buf));
      }
      double wait = std::max(0.0, paused_until - now);
      if (wait <= 0) {
        wait = requests_bucket.Take(1, now);
        if (wait <= 0) {
          wait = tokens_bucket.Take(estimated_tokens, now);
          if (wait > 0) requests_bucket.Adjust(1, now);  // all or nothing
        }
      }
      if (wait <= 0) {
        if (!breaker.Allow(now)) {
          // Half-open and another caller holds the probe.
          requests_bucket.Adjust(1, now);
          tokens_bucket.Adjust(std::min(estimated_tokens, tokens_bucket.capacity()), now);
          stats.circuit_rejections++;
          return reject(Outcome::kRejected,
                        Status::Unavailable(std::string(kCircuitHalfOpen) + endpoint.display +
                                            ": a probe request is in flight"));
        }
        if (waited_s > 0) stats.throttled_wait_ms += static_cast<int64_t>(waited_s * 1000.0);
        return std::nullopt;
      }
      if (!counted_wait) {
        stats.throttled_waits++;
        counted_wait = true;
      }
      wait = std::min(wait, 1.0);  // re-check breaker, budget and stop regularly
      stop_cv.wait_for(lock, std::chrono::duration<double>(wait));
      waited_s += MonotonicSeconds() - now;
    }
  }

  // POSTs the JSON body; the response body is read up to kMaxResponseBytes
  // (past that the transfer stops, *too_large is set and no response is
  // returned).
  httplib::Result Post(httplib::ClientImpl& conn, const httplib::Headers& headers,
                       const std::string& body, bool* too_large) {
    httplib::Request req;
    req.method = "POST";
    req.path = endpoint.path;
    req.headers = headers;
    req.headers.emplace("Content-Type", "application/json");
    req.body = body;
    std::string received;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (received.size() + n > kMaxResponseBytes) {
        *too_large = true;
        return false;
      }
      received.append(data, n);
      return true;
    };
    auto res = std::make_unique<httplib::Response>();
    httplib::Error err = httplib::Error::Success;
    if (!conn.send(req, *res, err)) return httplib::Result(nullptr, err);
    res->body = std::move(received);
    return httplib::Result(std::move(res), err);
  }

  Attempt Send(const std::string& body, double estimated_tokens) {
    if (auto rejected = Admit(estimated_tokens)) return *rejected;
    Attempt a;
    bool reused = false;
    std::unique_ptr<httplib::ClientImpl> conn = Acquire(&reused);
    if (!conn) {
      a.outcome = Outcome::kCancelled;
      a.status = Status::Cancelled("chat client stopped");
      return a;
    }
    httplib::Headers headers = {{"Accept", "application/json"}};
    const std::string api_key = Options().api_key;  // a reload may rotate it
    if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
    double start = MonotonicSeconds();
    bool too_large = false;
    httplib::Result res = Post(*conn, headers, body, &too_large);
    // A pooled keep-alive connection that the server closed while it sat idle
    // (its keep-alive timeout ending just as the connection is taken, after
    // httplib's liveness check) fails while the request is being written.
    // The server cannot have acted on an incomplete request, so it is sent
    // again at once on a new connection: the upstream did nothing wrong, and
    // counting a failed attempt would feed the circuit breaker and the retry
    // budget with the pool's own staleness (found under TSan's slowdown by
    // ChatClientTest.HonoursRetryAfterSeconds).
    if (!res && reused && res.error() == httplib::Error::Write && Reconnect(conn)) {
      spdlog::debug("POST {}: pooled connection was closed by the server; resending on a new one",
                    endpoint.display);
      start = MonotonicSeconds();
      res = Post(*conn, headers, body, &too_large);
    }
    double latency_ms = (MonotonicSeconds() - start) * 1000.0;
    bool was_stopped;
    {
      std::lock_guard<std::mutex> lock(mu);
      was_stopped = stopped;
    }
    if (!res) {
      httplib::Error err = res.error();
      Release(std::move(conn), /*reusable=*/false);
      if (too_large && !was_stopped) {
        // A runaway generation, or a proxy answering with something else:
        // never read into memory, stored, or sent on to the judge. Not
        // retried within the call (the same request would likely run away
        // again), but the endpoint's failure (counted by the breaker): a
        // proxy that answers every request so opens it and work waits,
        // while one runaway prompt is given up on after its stage retries.
        a.health = Health::kBad;
        a.outcome = Outcome::kFatal;
        a.status = Status::Unavailable("POST " + endpoint.display + ": the response is over " +
                                       std::to_string(kMaxResponseBytes >> 20) +
                                       " MiB (a runaway generation, or a proxy answering with "
                                       "something else); not read");
        return a;
      }
      if (was_stopped || err == httplib::Error::Canceled) {
        a.outcome = Outcome::kCancelled;
        a.status = Status::Cancelled("chat client stopped during a request to " + endpoint.display);
        return a;
      }
      const ChatClientOptions o = Options();
      std::string what = "POST " + endpoint.display + ": " +
                         DescribeHttpError(err, o.connect_timeout_s, o.timeout_s);
      a.health = Health::kBad;
      if (err == httplib::Error::SSLServerVerification || err == httplib::Error::SSLLoadingCerts) {
        // A certificate problem does not fix itself by retrying.
        a.outcome = Outcome::kFatal;
        a.status = Status::FailedPrecondition(what + " (" + std::string(kTlsFault) + ")");
        return a;
      }
      a.outcome = Outcome::kRetryable;
      a.status = Status::Unavailable(what);
      return a;
    }
    const int code = res->status;
    a.http_status = code;
    // Before any of the body is quoted (and cut) into a status: a key cut in
    // half by the quote would escape Scrub.
    ScrubText(&res->body);
    const bool close = ToLower(res->get_header_value("Connection")) == "close";
    Release(std::move(conn), /*reusable=*/!close);
    if (auto reset = RateLimitResetSeconds(*res, /*any=*/false)) {
      // The server says a limit is exhausted: nobody sends until it resets.
      std::lock_guard<std::mutex> lock(mu);
      paused_until = std::max(paused_until, MonotonicSeconds() + std::min(*reset, kMaxRetryAfterS));
    }
    if (code >= 200 && code < 300) {
      auto parsed = ParseSuccessBody(res->body);
      if (!parsed.ok()) {
        // A 200 with a cut or garbled body is a transient fault of a proxy
        // or an overloaded server: retried like a 5xx.
        a.health = Health::kBad;
        a.outcome = Outcome::kRetryable;
        a.status = Status(parsed.status().code(),
                          "POST " + endpoint.display + ": " + parsed.status().message());
        return a;
      }
      a.outcome = Outcome::kOk;
      a.health = Health::kGood;
      a.response = std::move(*parsed);
      a.response.latency_ms = latency_ms;
      return a;
    }
    UpstreamError upstream = ParseUpstreamError(res->body);
    std::string what = "POST " + endpoint.display + ": HTTP " + std::to_string(code) + ": " +
                       DescribeUpstream(upstream);
    if (upstream.code == "insufficient_quota" || upstream.type == "insufficient_quota") {
      // Every request fails the same way until the account is topped up:
      // not a request's fault (IsQuotaFault), and it counts for the breaker.
      a.outcome = Outcome::kFatal;
      a.health = Health::kBad;
      a.status = Status::ResourceExhausted(what + ": " + std::string(kQuotaFault));
      return a;
    }
    if (code == 429 && upstream.message.rfind("Request too large", 0) == 0) {
      // OpenAI's 429 for one request larger than the account's per-minute
      // limit: no wait makes it fit, so the request's fault, not a rate limit.
      a.outcome = Outcome::kFatal;
      a.status = Status::InvalidArgument(what);
      return a;
    }
    if (code == 401 || code == 403 || code == 404) {
      // The configuration's fault, not the request's: every call fails the
      // same way. Only the error's type and code: an upstream's message may
      // echo (part of) the key.
      std::string kind = upstream.type;
      if (!upstream.code.empty()) kind += (kind.empty() ? "" : ", ") + upstream.code;
      // A 404's message names the missing model or path.
      const std::string fix =
          code == 404 ? std::string(kNotFoundFault) + ": check base_url and model (" +
                            DescribeUpstream(upstream) + ")"
          : code == 403
              ? std::string(kCredentialsFault) + " or this request: check the API key (" +
                    (api_key.empty() ? "none is set" : "the one set") +
                    ") and its permissions; a 403 for some requests only is a WAF or proxy "
                    "rule refusing their content"
              : std::string(kCredentialsFault) + ": check the API key (" +
                    (api_key.empty() ? "none is set" : "the one set") + ")";
      a.outcome = Outcome::kFatal;
      a.health = Health::kBad;
      a.status =
          Status::FailedPrecondition("POST " + endpoint.display + ": HTTP " + std::to_string(code) +
                                     (kind.empty() ? "" : " (" + kind + ")") + ": " + fix);
      return a;
    }
    if (RetryableHttpStatus(code)) {
      a.outcome = Outcome::kRetryable;
      a.status = Status::Unavailable(what);
      a.retry_after_s = ParseRetryAfter(*res);
      if (!a.retry_after_s && code == 429) a.retry_after_s = RateLimitResetSeconds(*res, true);
      // 429 means "slow down", not "broken": it does not trip the breaker.
      a.health = code == 429 ? Health::kNeutral : Health::kBad;
      return a;
    }
    a.outcome = Outcome::kFatal;
    a.status = Status::InvalidArgument(what);
    return a;
  }

  // Jittered exponential backoff ("equal jitter": half fixed, half random)
  // for retry number `retry` (1-based), raised to Retry-After when given.
  double BackoffSeconds(int retry, std::optional<double> retry_after_s) {
    double base, jitter;
    {
      std::lock_guard<std::mutex> lock(mu);
      base = options.backoff_initial_s * std::pow(2.0, std::min(retry - 1, 30));
      base = std::min(base, options.backoff_max_s);
      jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    }
    double wait = base / 2 + base / 2 * jitter;
    if (retry_after_s) wait = std::max(wait, std::min(*retry_after_s, kMaxRetryAfterS));
    return std::max(0.0, wait);
  }

  // Sleeps `seconds` unless stopped first. False if stopped.
  bool WaitFor(double seconds) {
    std::unique_lock<std::mutex> lock(mu);
    return !stop_cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stopped; });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopped = true;
      // httplib's ClientImpl::stop() is designed to be called from another
      // thread: it shuts the socket of the request in flight down.
      for (httplib::ClientImpl* c : active) c->stop();
      idle.clear();
    }
    stop_cv.notify_all();
    slot_cv.notify_all();
  }

  // Feeds the breaker with an attempt's outcome, and keeps its error
  // (`status`, for a failed one). Thread-safe.
  // An upstream that echoes the key in its error message ("Incorrect API
  // key provided: sk-...") must not put it into logs, /v1/status or events.
  // Returns whether it replaced anything.
  // Keys replaced by a reload are scrubbed too (a reply to a request sent
  // with the old key may still arrive).
  bool ScrubText(std::string* text) const {
    std::vector<std::string> keys;
    {
      std::lock_guard<std::mutex> lock(mu);
      keys = retired_keys;
      keys.push_back(options.api_key);
    }
    // Longest first: a key that is part of another (a prefix read from a
    // half-written file) must not cut the longer one and leave its rest.
    std::sort(keys.begin(), keys.end(), [](const std::string& a, const std::string& b) {
      return a.size() != b.size() ? a.size() > b.size() : a < b;
    });
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    bool changed = false;
    for (const std::string& key : keys) {
      if (key.empty()) continue;
      for (size_t at; (at = text->find(key)) != std::string::npos;) {
        text->replace(at, key.size(), "[api key]");
        changed = true;
      }
    }
    return changed;
  }
  void Scrub(Status* st) const {
    if (st->ok()) return;
    std::string m = st->message();
    if (ScrubText(&m)) *st = Status(st->code(), m);
  }

  // "judge: " for log lines, "" without a name.
  std::string LogPrefix() const { return options.name.empty() ? "" : options.name + ": "; }

  void RecordHealth(Health h, const Status& status) {
    std::lock_guard<std::mutex> lock(mu);
    if (h == Health::kGood) {
      last_failure.clear();
      configuration_fault.clear();
      quota_fault = false;
    } else if (!status.ok()) {
      last_failure = status.message();
      quota_fault = IsQuotaFault(status);
      configuration_fault =
          IsConfigurationFault(status) || quota_fault ? status.message() : std::string();
    }
    if (h == Health::kGood) {
      if (breaker.state(MonotonicSeconds()) != BreakerState::kClosed) {
        spdlog::info("{}circuit breaker for {} closed: a request succeeded", LogPrefix(),
                     endpoint.display);
      }
      breaker.RecordSuccess();
    } else if (h == Health::kBad) {
      const int64_t before = breaker.opens();
      breaker.RecordFailure(MonotonicSeconds());
      if (breaker.opens() != before) {
        spdlog::error(
            "{}circuit breaker for {} opened after {} consecutive failures (last: {}); "
            "failing fast for {:.1f} s",
            LogPrefix(), endpoint.display, breaker.consecutive_failures(), status.message(),
            options.breaker_cooldown_s);
      }
    } else {
      breaker.RecordNeutral();
    }
  }

  static constexpr int64_t kHourMs = 3600 * 1000;

  ChatClientOptions options;
  ChatClientStats& stats;
  Endpoint endpoint;
  Status endpoint_status;

  mutable std::mutex mu;  // guards the limits and the key in `options`, and what follows
  std::vector<std::string> retired_keys;  // keys a reload replaced (the last few)
  std::condition_variable stop_cv;
  std::condition_variable slot_cv;
  bool stopped = false;
  int in_flight = 0;
  std::vector<std::unique_ptr<httplib::ClientImpl>> idle;
  std::set<httplib::ClientImpl*> active;
  // Connections in use when a reload rotated the key: not pooled again (a
  // proxy may tie a connection to the key it first saw).
  std::set<httplib::ClientImpl*> stale;
  std::mt19937_64 rng;
  CircuitBreaker breaker;
  TokenBucket requests_bucket;
  TokenBucket tokens_bucket;
  double paused_until = 0;   // monotonic s; server-requested pause (x-ratelimit-*)
  int64_t budget_hour = -1;  // UTC hour (ms / 3.6e6) that spent_this_hour is for
  double spent_this_hour = 0;
  double total_cost = 0;
  std::string last_failure;         // ClientHealth::last_failure
  std::string configuration_fault;  // ClientHealth::configuration_fault
  bool quota_fault = false;         // ClientHealth::quota_fault
};

ChatClient::ChatClient(ChatClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options), stats_)) {}

ClientHealth ChatClient::Health() const {
  ClientHealth h;
  std::lock_guard<std::mutex> lock(impl_->mu);
  const double now = MonotonicSeconds();
  const int64_t now_ms = NowMs();
  h.breaker = impl_->breaker.state(now);
  h.consecutive_failures = impl_->breaker.consecutive_failures();
  h.breaker_opens = impl_->breaker.opens();
  h.breaker_retry_in_s = impl_->breaker.RetryInSeconds(now);
  h.budget_exhausted = impl_->BudgetExhaustedLocked(now_ms);
  h.cost_usd_total = impl_->total_cost;
  h.cost_usd_this_hour = impl_->spent_this_hour;
  h.hourly_budget_usd = impl_->options.hourly_budget_usd;
  h.budget_resets_at_ms = (now_ms / Impl::kHourMs + 1) * Impl::kHourMs;
  h.rate_limited_for_s = std::max(0.0, impl_->paused_until - now);
  h.in_flight = impl_->in_flight;
  h.last_failure = impl_->last_failure;
  h.configuration_fault = impl_->configuration_fault;
  h.quota_fault = impl_->quota_fault;
  return h;
}

ChatClient::~ChatClient() = default;

void ChatClient::Reconfigure(const ChatClientOptions& next) {
  std::vector<std::unique_ptr<httplib::ClientImpl>> closed;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    ChatClientOptions& o = impl_->options;
    const double now = MonotonicSeconds();
    if (next.requests_per_minute != o.requests_per_minute || next.rate_burst_s != o.rate_burst_s) {
      impl_->requests_bucket.SetRate(next.requests_per_minute, next.rate_burst_s, now);
    }
    if (next.tokens_per_minute != o.tokens_per_minute || next.rate_burst_s != o.rate_burst_s) {
      impl_->tokens_bucket.SetRate(next.tokens_per_minute, next.rate_burst_s, now);
    }
    impl_->breaker.SetThresholds(next.breaker_failures, next.breaker_cooldown_s);
    // A proxy may tie a connection to the key it first saw: those go.
    if (next.api_key != o.api_key) {
      closed = std::move(impl_->idle);
      impl_->idle.clear();
    }
    o.connect_timeout_s = next.connect_timeout_s;
    o.timeout_s = next.timeout_s;
    o.max_retries = next.max_retries;
    o.backoff_initial_s = next.backoff_initial_s;
    o.backoff_max_s = next.backoff_max_s;
    o.requests_per_minute = next.requests_per_minute;
    o.tokens_per_minute = next.tokens_per_minute;
    o.rate_burst_s = next.rate_burst_s;
    o.breaker_failures = next.breaker_failures;
    o.breaker_cooldown_s = next.breaker_cooldown_s;
    o.price_prompt_per_1m = next.price_prompt_per_1m;
    o.price_completion_per_1m = next.price_completion_per_1m;
    o.hourly_budget_usd = next.hourly_budget_usd;
    if (next.api_key != o.api_key) {
      if (!o.api_key.empty()) impl_->retired_keys.push_back(o.api_key);
      if (impl_->retired_keys.size() > 4) impl_->retired_keys.erase(impl_->retired_keys.begin());
      o.api_key = next.api_key;
      // The failures that opened the breaker were the old key's (401s).
      impl_->breaker.Reset();
      impl_->stale.insert(impl_->active.begin(), impl_->active.end());
    }
  }
  // Callers waiting for a rate limit re-check it (a raised rate lets them go).
  impl_->stop_cv.notify_all();
}

void ChatClient::Stop() { impl_->Stop(); }

Result<ChatResponse> ChatClient::Complete(const ChatRequest& request) {
  auto failed = [this](std::atomic<int64_t>& result) {
    result++;
    stats_.failures++;
  };
  if (!impl_->endpoint_status.ok()) {
    failed(stats_.failed_calls);
    return impl_->endpoint_status;
  }
  std::string body;
  try {
    body = BuildRequestBody(request);
  } catch (const std::exception& e) {
    failed(stats_.failed_calls);
    return Status::Internal(std::string("cannot encode chat request: ") + e.what());
  }
  // What the tokens/min bucket is charged up front; corrected to the
  // reported usage afterwards. Message text is ~4 bytes per token.
  size_t prompt_bytes = 0;
  for (const ChatMessage& m : request.messages) prompt_bytes += m.content.size();
  const double estimated_tokens =
      static_cast<double>(prompt_bytes) / 4.0 + std::max(0, request.max_tokens);
  const ChatClientOptions options = impl_->Options();
  const int max_attempts = std::max(1, options.max_retries + 1);
  // Whether every attempt so far got a 200 whose body did not parse: only
  // then does the call fail as kCorruption (which callers treat as the
  // item's fault, e.g. an unparseable verdict, and do not retry).
  bool every_body_corrupt = true;
  bool every_attempt_429 = true;  // then the call is "rate limited", no request's fault
  Status last_failure;            // the last attempt that reached the upstream
  for (int attempt = 1;; ++attempt) {
    Impl::Attempt a = impl_->Send(body, estimated_tokens);
    impl_->Scrub(&a.status);
    if (a.outcome == Impl::Outcome::kRejected) {
      // Refused by admission control (breaker, budget). After failed
      // attempts (a retry the breaker they opened refuses) the call did
      // reach the upstream and failed there: an error, not a refusal, and
      // it fails with that error (callers must not take it for a call
      // that was never sent).
      if (attempt == 1) {
        failed(stats_.rejected_calls);
        return a.status;
      }
      failed(stats_.failed_calls);
      const bool breaker = a.status.message().find(kBudgetExhausted) == std::string::npos;
      // kCorruption only when every attempt got a body that did not parse
      // (as when the attempts run out): else a transport failure would read
      // as the item's unparseable reply.
      return Status(every_body_corrupt ? StatusCode::kCorruption : StatusCode::kUnavailable,
                    last_failure.message() + " (gave up after " + std::to_string(attempt - 1) +
                        " attempts: " + std::string(kRefusedAfterAttempts) +
                        (breaker ? "the circuit breaker opened" : "the hourly budget is spent") +
                        ")");
    }
    if (a.outcome != Impl::Outcome::kOk) last_failure = a.status;
    if (a.outcome != Impl::Outcome::kCancelled) {
      stats_.requests++;
      if (a.outcome != Impl::Outcome::kOk) stats_.request_errors++;
    }
    impl_->RecordHealth(a.health, a.status);
    switch (a.outcome) {
      case Impl::Outcome::kOk: {
        stats_.successes++;
        stats_.prompt_tokens += a.response.prompt_tokens;
        stats_.completion_tokens += a.response.completion_tokens;
        const double cost =
            (static_cast<double>(a.response.prompt_tokens) * options.price_prompt_per_1m +
             static_cast<double>(a.response.completion_tokens) * options.price_completion_per_1m) /
            1e6;
        a.response.cost_usd = cost;
        stats_.cost_nano_usd += std::llround(cost * 1e9);
        impl_->Charge(cost);
        if (a.response.prompt_tokens + a.response.completion_tokens > 0) {
          std::lock_guard<std::mutex> lock(impl_->mu);
          impl_->tokens_bucket.Adjust(
              estimated_tokens -
                  static_cast<double>(a.response.prompt_tokens + a.response.completion_tokens),
              MonotonicSeconds());
        }
        a.response.attempts = attempt;
        return std::move(a.response);
      }
      case Impl::Outcome::kRejected:  // returned above; counted the same way
        failed(attempt > 1 ? stats_.failed_calls : stats_.rejected_calls);
        return a.status;
      case Impl::Outcome::kCancelled:
        failed(stats_.cancelled_calls);
        return a.status;
      case Impl::Outcome::kFatal:
        failed(stats_.failed_calls);
        return Status(a.status.code(), a.status.message() + " (attempt " + std::to_string(attempt) +
                                           ", not retried)");
      case Impl::Outcome::kRetryable:
        break;
    }
    every_body_corrupt = every_body_corrupt && a.status.code() == StatusCode::kCorruption;
    every_attempt_429 = every_attempt_429 && a.http_status == 429;
    if (attempt >= max_attempts) {
      failed(stats_.failed_calls);
      // Bodies that never parsed, on every attempt, stay kCorruption; a mix
      // (timeouts, 5xx, then one truncated body) is "the endpoint is not
      // answering" whatever the last attempt was.
      const StatusCode code =
          every_body_corrupt ? StatusCode::kCorruption : StatusCode::kUnavailable;
      return Status(code, a.status.message() + " (gave up after " + std::to_string(attempt) +
                              " attempts" +
                              (every_attempt_429 ? "; " + std::string(kRateLimited) : "") + ")");
    }
    double wait = impl_->BackoffSeconds(attempt, a.retry_after_s);
    spdlog::warn("{}chat completion attempt {}/{} failed: {}; retrying in {:.2f} s",
                 impl_->LogPrefix(), attempt, max_attempts, a.status.message(), wait);
    stats_.retries++;
    if (!impl_->WaitFor(wait)) {
      failed(stats_.cancelled_calls);
      return Status::Cancelled("chat client stopped while backing off after: " +
                               a.status.message());
    }
  }
}

bool IsQuotaFault(const Status& status) {
  return status.code() == StatusCode::kResourceExhausted &&
         status.message().find(kQuotaFault) != std::string::npos;
}

bool IsForbidden(const Status& status) {
  return IsConfigurationFault(status) && status.message().find(": HTTP 403") != std::string::npos;
}

bool IsRefusedAfterAttempts(const Status& status) {
  return status.message().find(kRefusedAfterAttempts) != std::string::npos;
}

bool IsRateLimited(const Status& status) {
  return status.code() == StatusCode::kUnavailable &&
         status.message().find(kRateLimited) != std::string::npos;
}

bool IsConfigurationFault(const Status& status) {
  const std::string& m = status.message();
  return status.code() == StatusCode::kFailedPrecondition &&
         (m.find(kCredentialsFault) != std::string::npos ||
          m.find(kNotFoundFault) != std::string::npos || m.find(kTlsFault) != std::string::npos);
}

bool IsAdmissionRejection(const Status& status) {
  const std::string& m = status.message();
  auto has = [&m](std::string_view phrase) { return m.find(phrase) != std::string::npos; };
  return (status.code() == StatusCode::kUnavailable &&
          (has(kCircuitOpen) || has(kCircuitHalfOpen))) ||
         (status.code() == StatusCode::kResourceExhausted && has(kBudgetExhausted));
}

}  // namespace rlaif::judge
