// A scripted OpenAI-compatible upstream for the judge tests: an in-process
// httplib::Server on 127.0.0.1 (port chosen by the OS) whose chat handler is
// a test-provided function. Records every request it receives.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace rlaif::testing {

struct RecordedRequest {
  std::string body;
  nlohmann::json json;  // parsed body (null if not JSON)
  std::string authorization;
};

class FakeUpstream {
 public:
  // Called for each POST /v1/chat/completions; `n` is the 0-based call number.
  using Handler = std::function<void(int n, const RecordedRequest&, httplib::Response&)>;

  explicit FakeUpstream(Handler handler) : handler_(std::move(handler)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(16); };
    server_.set_tcp_nodelay(true);
    server_.set_keep_alive_timeout(1);  // stop() waits for idle connections
    server_.Post("/v1/chat/completions",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   RecordedRequest r;
                   r.body = req.body;
                   r.json = nlohmann::json::parse(req.body, nullptr, false);
                   r.authorization = req.get_header_value("Authorization");
                   int n;
                   {
                     std::lock_guard<std::mutex> lock(mu_);
                     n = static_cast<int>(requests_.size());
                     requests_.push_back(r);
                   }
                   handler_(n, r, res);
                 });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // The socket listens already; wait until the accept loop runs so that
    // stop() in the destructor cannot be lost.
    while (!server_.is_running()) std::this_thread::yield();
  }

  ~FakeUpstream() {
    server_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  std::vector<RecordedRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(requests_.size());
  }

  // An OpenAI-shaped success body.
  static std::string Completion(const std::string& content, int prompt_tokens = 11,
                                int completion_tokens = 7) {
    nlohmann::json j = {{"id", "chatcmpl-test"},
                        {"object", "chat.completion"},
                        {"created", 1},
                        {"model", "m"},
                        {"choices",
                         {{{"index", 0},
                           {"message", {{"role", "assistant"}, {"content", content}}},
                           {"finish_reason", "stop"}}}},
                        {"usage",
                         {{"prompt_tokens", prompt_tokens},
                          {"completion_tokens", completion_tokens},
                          {"total_tokens", prompt_tokens + completion_tokens}}}};
    return j.dump();
  }

  static void Reply(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body, "application/json");
  }

 private:
  Handler handler_;
  httplib::Server server_;
  int port_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::vector<RecordedRequest> requests_;
};

}  // namespace rlaif::testing
