// Judge: asks an LLM which of two responses is better, per dimension, in both
// orders, and combines the two verdicts into one label.
//
// The judge prompt delimits untrusted text (spotlighting): the user prompt and
// both responses appear verbatim between unique markers, and the instructions
// say that text inside the markers is data, not instructions. The verdict is
// requested as a JSON object {"winner": "A"|"B"|"tie"} (response_format
// json_object); a bare "A"/"B"/"tie" reply is also accepted. A reply that is
// neither is retried once, then reported as kCorruption with the raw reply.
//
// Each order gives P(the response shown first wins): 1 / 0 / 0.5 from the
// verdict, or — when `top_logprobs` > 0 and the server returns logprobs — a
// soft value from the top_logprobs of the verdict token (mass of A, B and
// tie alternatives, tie counting half). In the pair's own terms: p_a(AB) =
// P(first), p_a(BA) = 1 - P(first).
//
// Combination (both orders): the same winner in both → p_a = 1 (A) or 0 (B),
// or the mean of the two soft values when logprobs were used; tie in both →
// tie, p_a = 0.5; any disagreement (including A vs tie) is inconsistent →
// tie with p_a = 0.5 (inconsistent = "tie") or a low-confidence label,
// tie = false, p_a = mean(p_a(AB), p_a(BA)) (inconsistent = "low_confidence").
// One order only (both_orders = false): p_a(AB), tie when the verdict is tie.
// Requests use temperature 0 and response_format json_object. Client errors
// keep their status code.
//
// Rule-based dimensions (JudgeDimension::kind) need no LLM call:
//   "length": the shorter response wins (conciseness); lengths within
//     `length_tie_ratio` of each other are a tie.
//   "regex": a response matching any of `unsafe_patterns` (ECMAScript,
//     case-insensitive) loses to one that matches none; both or neither → tie.
//   "rouge_l": the response with the higher ROUGE-L F1 against a reference
//     (e.g. the response logged in production) wins; within
//     `rouge_tie_margin` → tie. Needs the reference overload of JudgePair.
//
// Judge health (Health()) covers LLM dimensions over the last
// `health_window` labels: position consistency, first-position win rate,
// longer-response win rate, tie rate and parse-failure rate — the biases
// FastChat's MT-bench paper measured, watched continuously.
// Thread safety: JudgePair and Health may be called concurrently.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/storage/records.h"

namespace rlaif::judge {

struct JudgeDimension {
  std::string name;
  std::string rubric;  // "" = built-in default for known names
  std::string kind = "llm";                  // "llm" | "length" | "regex" | "rouge_l"
  std::vector<std::string> unsafe_patterns;  // kind "regex": required, at least one
  double length_tie_ratio = 0.05;            // kind "length": |la - lb| <= ratio * max → tie
  double rouge_tie_margin = 0.02;            // kind "rouge_l": |Fa - Fb| <= margin → tie
};

struct JudgeOptions {
  std::string model;                     // required
  std::vector<JudgeDimension> dimensions;  // required, at least one
  bool both_orders = true;
  std::string inconsistent = "tie";      // "tie" | "low_confidence"
  int top_logprobs = 0;     // > 0: request logprobs (this many alternatives) for soft labels
  int health_window = 500;  // labels in the rolling health window
};

// Judge health over the rolling window (LLM dimensions only). A rate is 0
// when its denominator (the count beside it) is 0.
struct JudgeHealth {
  int window_labels = 0;        // labels in the window (<= health_window)
  int window_parse_failed = 0;  // JudgePair calls in the window that failed on unparseable replies
  int both_order_labels = 0;    // labels judged in both orders
  double position_consistency = 0;  // same winner in both orders / both_order_labels
  int decisive_verdicts = 0;        // single-order verdicts that are not a tie
  double first_position_rate = 0;   // ... won by the response shown first / decisive_verdicts
  int length_decided = 0;           // decisive labels whose responses differ in length
  double longer_wins_rate = 0;      // ... won by the longer response / length_decided
  double tie_rate = 0;              // ties / window_labels
  int replies = 0;                  // judge replies read in the window
  double parse_failure_rate = 0;    // unparseable replies / replies
  double soft_label_rate = 0;       // labels with a logprob soft value / window_labels
  double latency_p50_ms = 0;        // per label (all its judge calls, retries included)
  double latency_p95_ms = 0;
  double latency_max_ms = 0;
  int64_t labels_total = 0;         // since start, LLM dimensions
  int64_t rule_labels_total = 0;    // since start, rule-based dimensions
  int64_t parse_failed_total = 0;   // JudgePair calls failed on unparseable replies, since start
};

// "" unless the labels over the health window carry (almost) no preference:
// the two orders disagree on most pairs (position_consistency < 0.5: the
// judge picks a position, not a response), or nearly every label is a tie
// (tie_rate >= 0.9); each over at least kUnreliableMinLabels labels. Then
// why, for /v1/status `warnings` and the log. Training on such labels learns
// nothing, and they keep coming: nothing else says so.
// `clearing`: the thresholds an unreliable judge must pass to be reliable
// again (position_consistency >= 0.6, tie_rate < 0.8): a judge hovering at
// a threshold does not flap between the two.
constexpr int kUnreliableMinLabels = 50;
std::string UnreliableReason(const JudgeHealth& h, bool clearing = false);

enum class Winner { kA, kB, kTie };

// The built-in rubric for "helpfulness", "harmlessness" (alias "safety"),
// "conciseness" and "overall" (case-insensitive); a generic one otherwise.
std::string DefaultRubric(const std::string& dimension);

// Parses a judge reply: JSON {"winner": ...} (optionally in a ``` fence) or a
// bare token A/B/tie, case-insensitive. kCorruption (quoting the reply,
// truncated) if neither.
Result<Winner> ParseVerdict(const std::string& reply);

// P(the response shown first wins) from the logprobs of a judge reply: the
// first token that reads as a verdict (A, B or tie, ignoring quotes, braces
// and spaces) and its top_logprobs alternatives; tie mass counts half.
// nullopt when no verdict token or no probability mass is found.
std::optional<double> FirstWinsProbability(const std::vector<TokenLogprob>& tokens);

// The verdict of a rule-based dimension (kind "length", "regex" or
// "rouge_l") with `a` as the first response. kInvalidArgument for an unknown
// kind, a bad regex or a regex dimension without patterns;
// kFailedPrecondition for "rouge_l" with an empty `reference`.
Result<Winner> RuleVerdict(const JudgeDimension& dimension, const std::string& a,
                           const std::string& b, const std::string& reference = "");

// ROUGE-L F1 (longest common subsequence of lower-cased whitespace tokens)
// of `candidate` against `reference`, in [0,1]; 0 if either is empty.
// Inputs are capped at 2,000 tokens each (the LCS table is quadratic).
double RougeL(const std::string& candidate, const std::string& reference);

// kInvalidArgument naming the problem, for config validation: empty name,
// unknown kind, regex without patterns or with a pattern that does not
// compile, length_tie_ratio or rouge_tie_margin outside [0,1).
Status ValidateDimension(const JudgeDimension& dimension);

// Builds the judge prompt for one dimension with `first` shown as "Response A".
// `rubric` "" = DefaultRubric(dimension). The markers carry a 64-bit nonce
// derived from the content and guaranteed not to occur in any of the texts.
std::string BuildJudgePrompt(const std::string& dimension, const std::string& rubric,
                             const std::string& prompt, const std::string& first,
                             const std::string& second);

class Judge {
 public:
  // `client` must outlive the Judge.
  Judge(ChatClient& client, JudgeOptions options);

  // Fingerprint of model + template version; part of every label key.
  const std::string& fingerprint() const { return fingerprint_; }

  // Labels `pair` on `dimension` (one LabelRecord, source "ai").
  Result<storage::LabelRecord> JudgePair(const storage::PairRecord& pair,
                                         const JudgeDimension& dimension);
  // The same, with a reference response for "rouge_l" dimensions (ignored by
  // the other kinds), e.g. PromptRecord::logged_response.
  Result<storage::LabelRecord> JudgePair(const storage::PairRecord& pair,
                                         const JudgeDimension& dimension,
                                         const std::string& reference);

  const JudgeOptions& options() const { return options_; }

  // Snapshot of the rolling judge-health window. Thread-safe.
  JudgeHealth Health() const;

 private:
  // One JudgePair outcome on an LLM dimension, for the health window.
  struct HealthSample {
    bool parse_failed = false;  // no label: unparseable replies
    int replies = 0;
    int unparseable = 0;
    bool both_orders = false;
    bool consistent = false;
    int decisive_verdicts = 0;
    int first_wins = 0;
    bool tie = false;
    bool length_decided = false;
    bool longer_won = false;
    bool soft = false;
    double latency_ms = 0;  // the whole JudgePair call
  };
  void RecordHealth(const HealthSample& sample);

  ChatClient& client_;
  JudgeOptions options_;
  std::string fingerprint_;

  mutable std::mutex health_mu_;     // guards the four below
  std::deque<HealthSample> window_;  // newest at the back, at most health_window
  int64_t labels_total_ = 0;
  int64_t rule_labels_total_ = 0;
  int64_t parse_failed_total_ = 0;
};

}  // namespace rlaif::judge
