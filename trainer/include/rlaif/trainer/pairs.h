// Preference pairs for training and evaluation, and their file formats.
//
// Accepted JSONL shapes (one object per line):
//   TRL style:  {"prompt": P, "chosen": C, "rejected": R, ["p_chosen": 0.8], ["dimension": "d"]}
//   raw Anthropic HH: {"chosen": T1, "rejected": T2} with full transcripts; the
//     prompt is the shared prefix up to and including the last "\n\nAssistant:"
//     and chosen/rejected are what follows it. A leading "\n\n" of the
//     prompt and one leading space of each response are dropped, so that raw
//     HH and its TRL conversions (e.g. data/hh-harmless-dev.jsonl) give the
//     same texts, and the same holdout split.
//   "p_chosen" below 0.5 swaps chosen and rejected (p_chosen becomes 1 - p).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

struct PreferencePair {
  std::string prompt;
  std::string chosen;
  std::string rejected;
  double p_chosen = 1.0;   // probability that `chosen` is better (soft label), (0.5, 1]
  std::string dimension;   // "" = the single/default dimension
};

struct LoadPairsStats {
  int64_t lines = 0;
  int64_t loaded = 0;
  int64_t skipped = 0;   // malformed lines (message of the first few in `errors`)
  std::vector<std::string> errors;
};

// Reads a JSONL pair file. kIoError if unreadable; kInvalidArgument if no
// line could be used. Malformed lines are skipped and counted in `stats`.
Result<std::vector<PreferencePair>> LoadPairsJsonl(const std::string& path,
                                                   LoadPairsStats* stats = nullptr);

// Splits an HH transcript pair into a PreferencePair. kInvalidArgument if the
// transcripts share no "\n\nAssistant:" prefix.
Result<PreferencePair> SplitHhTranscripts(const std::string& chosen, const std::string& rejected);

// True if `prompt` belongs to the held-out split: HashToUnit(Hash64(prompt)) < fraction.
// The same prompt is always on the same side, for every caller.
bool InHoldout(const std::string& prompt, double fraction);

// Continuous refresh: the pairs of one refresh run, `fresh` (new since the
// model it starts from) plus a replay sample of `older` ones so that the
// model does not forget them: round(replay_ratio * fresh.size()) pairs of
// `older` (all of them if fewer), drawn without replacement by a generator
// seeded with `seed` (same inputs, same sample), in their order in `older`.
// `replayed` (optional) receives how many were drawn.
std::vector<PreferencePair> MixReplay(const std::vector<PreferencePair>& fresh,
                                      const std::vector<PreferencePair>& older,
                                      double replay_ratio, uint64_t seed,
                                      int64_t* replayed = nullptr);

}  // namespace rlaif::trainer
