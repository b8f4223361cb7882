// Records kept in the rlaifd store, and their codecs.
//
// Every record encodes to a self-describing JSON object (with a "v" schema
// version) so that operators can read a dump and old records stay decodable.
// Decode never throws: malformed bytes give kCorruption.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::storage {

// A sampled prompt taken from a log line.
struct PromptRecord {
  std::string id;            // HexId(Hash64(normalized text)) (see daemon ingest)
  std::string text;          // the prompt as sent to the generator
  std::string logged_response;  // the response seen in the log, "" if none
  std::string source_path;   // file the line came from
  uint64_t source_offset = 0;   // byte offset of the line in that file
  int64_t ingested_at_ms = 0;
};

// One generated response.
struct ResponseRecord {
  std::string text;
  std::string model;
  int64_t seed = 0;
  double temperature = 0;
  double latency_ms = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  // The endpoint's finish_reason: "stop", "length" (cut off at max_tokens),
  // ...; "" when it sent none (and in records older than this field).
  std::string finish_reason;
};

// Two responses to the same prompt.
struct PairRecord {
  std::string id;         // HexId(HashFields({prompt_id, generator_fingerprint, sample_index}))
  std::string prompt_id;
  std::string prompt;     // copy of the prompt text (pairs are self-contained)
  ResponseRecord a;
  ResponseRecord b;
  std::string generator;  // generator fingerprint (model + parameters)
  int64_t created_at_ms = 0;
};

// The judge's verdict for one pair on one dimension.
struct LabelRecord {
  std::string pair_id;
  std::string dimension;
  std::string judge;      // judge fingerprint (model + template version)
  double p_a = 0.5;       // probability that response A is better, in [0,1]
  bool tie = false;       // inconsistent or explicit tie: not trained on by default
  std::string verdict_ab; // raw verdict with A shown first, e.g. "A"
  std::string verdict_ba; // raw verdict with B shown first ("" if one order only)
  std::string source = "ai";  // "ai" | "human"
  int64_t created_at_ms = 0;
};

// Committed read position of one log file.
struct SourceCheckpoint {
  std::string path;          // path when last seen
  uint64_t device = 0;
  uint64_t inode = 0;
  std::string fingerprint;   // hex hash of the first bytes (up to 1 KiB) of the file
  uint64_t fingerprint_len = 0;  // how many bytes the fingerprint covers
  uint64_t offset = 0;       // bytes consumed (always at a line boundary)
  uint64_t lines = 0;        // lines consumed
  int64_t updated_at_ms = 0;
};

// What could not be processed, with why. Never silently dropped.
struct DeadLetter {
  std::string stage;    // "ingest" | "generate" | "judge" | "train"
  std::string reason;   // short machine reason, e.g. "bad_json", "identical_responses"
  std::string detail;   // human message
  std::string ref;      // file:offset, prompt id or pair id
  std::string raw;      // offending input, truncated to 4 KiB
  int64_t at_ms = 0;
};

// One model version in the registry.
struct ModelRecord {
  std::string version;    // e.g. "v0003-20261127T094500"
  // "candidate" | "live" | "rejected" | "held" (passed the gate, or bypassed
  // it, but waits for an operator) | "retired" | "rolled_back"
  std::string state;
  std::string dir;        // checkpoint directory
  std::string parent;     // version live when this one was trained, "" if none
  double accuracy = 0;    // held-out accuracy
  double loss = 0;        // held-out loss
  int64_t holdout_pairs = 0;
  int64_t train_pairs = 0;
  std::string metrics_json;  // full metrics object, JSON text
  std::string reason;     // gate decision, human readable
  int64_t created_at_ms = 0;
  int64_t promoted_at_ms = 0;
  // When its checkpoint directory was deleted to keep trainer.keep_models
  // (the entry stays: its metrics, reason and name are history); 0 = on disk.
  int64_t files_deleted_at_ms = 0;
};

// Audit trail entry (promotions, rollbacks, config loads, training runs).
struct EventRecord {
  int64_t at_ms = 0;
  std::string kind;     // "promote" | "rollback" | "train" | "start" | ...
  std::string actor;    // "scheduler", token name, "cli"
  std::string message;
  std::string data_json;  // extra fields, JSON object text ("{}" if none)
};

// Codecs. Encode* never fails; Decode* returns kCorruption on bad input.
std::string EncodePrompt(const PromptRecord& r);
// EncodePrompt into `out` (replacing its content, reusing its capacity).
void EncodePromptInto(const PromptRecord& r, std::string* out);
Result<PromptRecord> DecodePrompt(const std::string& bytes);
std::string EncodePair(const PairRecord& r);
Result<PairRecord> DecodePair(const std::string& bytes);
std::string EncodeLabel(const LabelRecord& r);
Result<LabelRecord> DecodeLabel(const std::string& bytes);
std::string EncodeSource(const SourceCheckpoint& r);
Result<SourceCheckpoint> DecodeSource(const std::string& bytes);
std::string EncodeDeadLetter(const DeadLetter& r);
Result<DeadLetter> DecodeDeadLetter(const std::string& bytes);
std::string EncodeModel(const ModelRecord& r);
Result<ModelRecord> DecodeModel(const std::string& bytes);
std::string EncodeEvent(const EventRecord& r);
Result<EventRecord> DecodeEvent(const std::string& bytes);

}  // namespace rlaif::storage
