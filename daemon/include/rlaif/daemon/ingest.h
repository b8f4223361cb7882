// Ingest: tails log files matching the configured globs, parses `simple`
// lines ({"prompt": ..., "response": ...}), samples, and commits the prompts
// together with the file's new offset in one atomic batch, so that every line
// is counted once across restarts and kill -9.
//
// Files are identified by device + inode + a fingerprint of their first bytes;
// a file whose identity changed under the same path is read from its start, a
// file that shrank below the committed offset (truncation) is re-read from 0.
// A partial last line waits for its newline. Bad lines are counted by reason
// and dead-lettered with file:offset; they never stop ingest.
//
// Thread safety: PollOnce is called from one thread (the ingest loop);
// Sources() may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/metrics.h"
#include "rlaif/common/status.h"
#include "rlaif/storage/store.h"

namespace rlaif::daemon {

struct IngestPassStats {
  int64_t lines = 0;      // complete lines consumed
  int64_t bytes = 0;      // bytes consumed
  int64_t stored = 0;     // new prompts written
  int64_t rejected = 0;   // dead-lettered lines
  int64_t sampled_out = 0;
  int64_t duplicates = 0;
};

struct SourceStatus {
  std::string path;
  uint64_t inode = 0;
  uint64_t offset = 0;    // committed
  uint64_t size = 0;      // current file size
  int64_t lag_bytes = 0;  // size - offset
  int64_t last_commit_ms = 0;
};

// Parses one `simple` log line. On success sets prompt (and response, "" if
// absent). On failure returns kInvalidArgument whose message starts with the
// reason: "bad_json", "not_object", "missing_prompt", "bad_prompt_type",
// "bad_response_type", "empty_prompt".
Status ParseSimpleLine(const std::string& line, std::string* prompt, std::string* response);

// Stable id of a prompt: HexId(Hash64(text with surrounding whitespace trimmed)).
std::string PromptId(const std::string& text);

class Ingestor {
 public:
  // `store` and `metrics` must outlive the Ingestor.
  Ingestor(std::vector<SourceConfig> sources, SamplingConfig sampling, storage::Store& store,
           MetricsRegistry& metrics);

  // Reads every matching file from its committed offset to its current end,
  // committing in batches of at most `max_batch_bytes`. Store errors are
  // returned (the pass stops; nothing beyond the last commit is lost).
  Result<IngestPassStats> PollOnce();

  std::vector<SourceStatus> Sources() const;

 private:
  Status IngestFile(const SourceConfig& source, const std::string& path, IngestPassStats* stats);

  std::vector<SourceConfig> sources_;
  SamplingConfig sampling_;
  storage::Store& store_;
  MetricsRegistry& metrics_;
  size_t max_batch_bytes_ = 4 << 20;
  mutable std::mutex mu_;  // guards status_
  std::vector<SourceStatus> status_;
};

}  // namespace rlaif::daemon
