// rlaif-sim: a simulated OpenAI-compatible SFT model and LLM judge, for
// tests, demos and benchmarks of rlaifd. It is not a model: it answers from a
// file of known preference pairs, so a run has a ground truth.
//
//   rlaif-sim --listen 127.0.0.1:0 --pairs pairs.jsonl --port-file /tmp/port
//
// POST /v1/chat/completions
//   model "sim-sft*"   (generator) the prompt is the last user message. A
//     known prompt is answered with the chosen or the rejected response of one
//     of its pairs: the pair is picked by hash(--seed, prompt), the side by the
//     parity of hash(--seed, prompt) + request "seed", so two consecutive seeds
//     always give the two different responses and a run is reproducible.
//     Without a request seed the side alternates per call. An unknown prompt
//     gets a deterministic synthetic response "[sim-synthetic ID] ... [/sim-synthetic]"
//     whose length varies with the seed.
//   model "sim-judge*" (judge) finds the known responses that occur verbatim
//     anywhere in the request's messages (no dependence on the judge's
//     template), takes the pair whose chosen and rejected both occur (prefer
//     the one whose prompt occurs too), and answers that the chosen is better:
//     "A" when the chosen occurs first, else "B" — as {"winner": "A"} when
//     response_format json_object (or json_schema) was requested, else the
//     bare letter. --position-bias P answers "A" with probability P whatever
//     the truth; --noise P flips the truth with probability P (both drawn from
//     hash(--seed, request content): repeatable). Unknown responses: the
//     shorter of two sim-synthetic responses wins; failing that, the shorter
//     of the texts between <<<RESPONSE_A...>>> / <<<END_RESPONSE_A...>>> style
//     markers wins; failing that the answer is "tie". Counted in judge_unknown.
//     --length-bias P (drawn after position bias, before noise) answers for
//     the longer response with probability P. --refusal P (drawn first, from
//     the same hash: a retry of the same request gets the same answer)
//     answers with prose and no verdict, as a judge model does when it
//     declines to pick or its prompt is wrong; counted in "refusals". With --logprobs and a request
//     asking for "logprobs": true, choices[0].logprobs.content carries the
//     reply's tokens, the verdict token with top_logprobs for A, B and tie
//     (the verdict's probability drawn in [0.55, 0.99] from the content hash).
//   any other model → 404 model_not_found (counted as "other").
//   --fault-rate F: with probability F a chat call fails, with a kind drawn
//     uniformly from --fault-kinds (default all): "429" (Retry-After: 1),
//     "500", "503" (llama.cpp "Loading model" body), "hang" (no answer for
//     --hang-ms, then 504: the client should have timed out), "malformed"
//     (200 with a JSON body cut short) and "truncated" (200 whose connection
//     closes mid-body); "quota" (429 insufficient_quota, OpenAI's body) only
//     when named.
//   --latency-ms N (+ uniform [0, --latency-jitter-ms]): every chat call
//     sleeps that long first.
//   --max-concurrency N: at most N chat calls are processed at once; the
//     rest queue (as vLLM does) or, with --overload 429, are answered 429
//     (Retry-After: 1) at once and counted in "overloaded".
// GET /sim/stats → {"calls":{"generator":N,"judge":N,"other":N},"faults":N,
//   "faults_by_kind":{"429":N,"500":N,"503":N,"hang":N,"malformed":N,
//   "truncated":N,"quota":N},"overloaded":N,"max_in_flight":N,"judge_unknown":N,"refusals":N,
//   "judge_repeats":N,"bad_requests":N,"pairs":N}
//   judge_repeats counts judge calls whose exact content (pair, order and
//   dimension) was already answered before: 0 means exactly-once judging.
// GET /healthz → 200 "ok"; GET /v1/models → the simulated model names.
//
// Token counts in "usage" are rough: bytes / 4. Responses are never
// truncated to max_tokens (a truncated known response would be unknown).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"

namespace httplib {
class Server;
}

namespace rlaif::sim {

// One known preference pair. Texts are trimmed of surrounding whitespace.
struct SimPair {
  std::string prompt;
  std::string chosen;
  std::string rejected;
};

struct PairsLoadStats {
  int64_t lines = 0;  // non-blank lines read
  int64_t loaded = 0;
  int64_t skipped = 0;  // malformed JSON, missing fields, empty or identical responses
};

// Loads a JSONL file of TRL-style {"prompt","chosen","rejected"} pairs (the
// prompt and responses as strings, or TRL conversational message lists), or
// raw Anthropic HH {"chosen","rejected"} transcripts (prompt = the shared
// prefix up to and including the last "\n\nAssistant:", responses = what
// follows). Bad lines are skipped and counted. kNotFound if the file cannot
// be opened.
Result<std::vector<SimPair>> LoadPairs(const std::string& path, PairsLoadStats* stats);

struct SimOptions {
  uint64_t seed = 0;         // makes every pseudo-random choice reproducible
  int latency_ms = 0;        // sleep per chat call, ms
  double fault_rate = 0;     // probability that a chat call fails, [0,1]
  double position_bias = 0;  // probability that the judge answers "A" regardless, [0,1]
  double noise = 0;          // probability that the judge flips the truth, [0,1]
  int latency_jitter_ms = 0;     // extra uniform [0, N] ms per chat call
  double length_bias = 0;        // probability that the judge prefers the longer response, [0,1]
  double refusal = 0;            // probability that the judge answers prose without a verdict
  int max_concurrency = 0;       // chat calls processed at once; 0 = unlimited
  bool reject_overload = false;  // beyond max_concurrency: false = queue, true = 429
  bool logprobs = false;         // return top_logprobs for the verdict token when asked
  int hang_ms = 30000;           // how long a "hang" fault holds the request, ms
  // Non-empty: chat calls must carry "Authorization: Bearer <api_key>",
  // else 401 as OpenAI answers a wrong key.
  std::string api_key;
  std::vector<std::string> fault_kinds = AllFaultKinds();  // drawn uniformly

  // The default mix. "quota" (OpenAI's 429 insufficient_quota: the account
  // is out of credit) is drawn only when named in --fault-kinds: it is not a
  // transient fault, and a mix with it would hold any pipeline.
  static std::vector<std::string> AllFaultKinds() {
    return {"429", "500", "503", "hang", "malformed", "truncated"};
  }
  static std::vector<std::string> KnownFaultKinds() {
    return {"429", "500", "503", "hang", "malformed", "truncated", "quota"};
  }
};

// An HTTP reply, independent of the HTTP library.
struct SimReply {
  int status = 200;
  std::string body;  // JSON
  std::vector<std::pair<std::string, std::string>> headers;
  bool truncate = false;  // send half the body, then close the connection
};

// The simulation logic. Thread-safe: ChatCompletions may run concurrently.
class Simulator {
 public:
  Simulator(std::vector<SimPair> pairs, SimOptions options);

  // Handles one POST /v1/chat/completions body (sleeps --latency-ms first).
  SimReply ChatCompletions(const std::string& request_body);

  // With --api-key, the 401 a call with this Authorization header gets
  // (OpenAI's body: the key it was given, masked); nullopt when it may pass.
  std::optional<SimReply> Unauthorized(const std::string& authorization);

  // The /sim/stats JSON object.
  std::string StatsJson() const;

  // Wakes calls that hang or queue, and makes later ones return at once
  // (for shutdown). Thread-safe.
  void Shutdown();

  size_t pair_count() const { return pairs_.size(); }

 private:
  // Where one known response (pair * 2 + side, side 0 = chosen) occurs.
  struct Occurrence {
    uint32_t entry;
    size_t pos;
  };
  struct KnownPair {
    uint32_t pair;
    bool chosen_first;
  };

  SimReply Generate(const std::string& model, const std::string& prompt,
                    const std::optional<int64_t>& seed, size_t prompt_bytes);
  SimReply JudgeReply(const std::string& model, const std::string& content, bool json_mode,
                      bool logprobs, size_t prompt_bytes);
  std::optional<KnownPair> FindKnownPair(const std::string& content) const;
  std::vector<Occurrence> FindKnownResponses(const std::string& content) const;
  const std::string& EntryText(uint32_t entry) const;
  std::optional<SimReply> MaybeFault();
  SimReply Completion(const std::string& model, const std::string& content, size_t prompt_bytes,
                      const std::string* logprobs_json = nullptr);
  // Sleeps up to `ms` unless Shutdown() comes first.
  void Sleep(int ms);
  // Takes a --max-concurrency slot (queueing); false if overloaded (429
  // mode) or shut down.
  bool AcquireSlot();
  void ReleaseSlot();

  const std::vector<SimPair> pairs_;
  const SimOptions options_;
  // Trimmed prompt → indexes into pairs_.
  std::unordered_map<std::string, std::vector<uint32_t>> by_prompt_;
  // Window length k → rolling hash of a response's first k bytes → entries.
  // k = min(kWindow, response length).
  std::map<size_t, std::unordered_map<uint64_t, std::vector<uint32_t>>> by_prefix_;

  std::atomic<int64_t> calls_generator_{0};
  std::atomic<int64_t> calls_judge_{0};
  std::atomic<int64_t> calls_other_{0};
  std::atomic<int64_t> faults_{0};
  std::array<std::atomic<int64_t>, 7> faults_by_kind_{};  // KnownFaultKinds() order
  std::atomic<int64_t> overloaded_{0};
  std::atomic<int64_t> judge_unknown_{0};
  std::atomic<int64_t> refusals_{0};
  std::atomic<int64_t> judge_repeats_{0};
  std::atomic<int64_t> bad_requests_{0};
  std::atomic<int64_t> unauthorized_{0};
  std::atomic<uint64_t> unseeded_calls_{0};
  std::atomic<uint64_t> response_ids_{0};

  mutable std::mutex mu_;                  // guards the members below
  std::mt19937_64 fault_rng_;              // fault and jitter draws, seeded by --seed
  std::unordered_set<uint64_t> answered_;  // content hashes of answered judge calls
  std::condition_variable cv_;             // slot freed or shutdown
  int in_flight_ = 0;                      // chat calls holding a slot
  int max_in_flight_ = 0;
  bool shutdown_ = false;
};

// Serves a Simulator over HTTP. Bind, then Run (blocks) until Stop.
class SimServer {
 public:
  // `sim` must outlive the server. `threads`: HTTP worker threads.
  SimServer(Simulator& sim, int threads);
  ~SimServer();

  // Binds host:port (port 0 = any free port). Returns the bound port.
  Result<int> Bind(const std::string& host, int port);
  // Serves until Stop(). kUnavailable if the server could not run.
  Status Run();
  // Thread-safe; may be called before Run starts (Run then returns at once).
  void Stop();

 private:
  Simulator& sim_;
  std::unique_ptr<httplib::Server> server_;
  std::mutex mu_;  // guards the three flags below
  bool stop_requested_ = false;
  bool run_started_ = false;
  bool run_finished_ = false;
};

}  // namespace rlaif::sim
