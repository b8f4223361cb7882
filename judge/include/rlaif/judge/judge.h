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
// Combination (both orders): A wins in both → p_a = 1; B in both → p_a = 0;
// tie in both → tie; any disagreement (including A vs tie) → tie
// (inconsistent = "tie") or p_a = 0.5 with tie = false (inconsistent =
// "low_confidence" is reserved for soft labels later). One order only
// (both_orders = false): A → 1, B → 0, tie → tie. Requests use temperature 0
// and response_format json_object. Client errors keep their status code.
#pragma once

#include <string>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/judge/chat_client.h"
#include "rlaif/storage/records.h"

namespace rlaif::judge {

struct JudgeDimension {
  std::string name;
  std::string rubric;  // "" = built-in default for known names
};

struct JudgeOptions {
  std::string model;                     // required
  std::vector<JudgeDimension> dimensions;  // required, at least one
  bool both_orders = true;
  std::string inconsistent = "tie";      // "tie" | "low_confidence"
};

enum class Winner { kA, kB, kTie };

// The built-in rubric for "helpfulness", "harmlessness" (alias "safety"),
// "conciseness" and "overall" (case-insensitive); a generic one otherwise.
std::string DefaultRubric(const std::string& dimension);

// Parses a judge reply: JSON {"winner": ...} (optionally in a ``` fence) or a
// bare token A/B/tie, case-insensitive. kCorruption (quoting the reply,
// truncated) if neither.
Result<Winner> ParseVerdict(const std::string& reply);

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

  const JudgeOptions& options() const { return options_; }

 private:
  ChatClient& client_;
  JudgeOptions options_;
  std::string fingerprint_;
};

}  // namespace rlaif::judge
