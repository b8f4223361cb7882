// Ingest: tails log files matching the configured globs, parses their lines
// (see line_parser.h for the formats), filters, samples and redacts them (see
// redactor.h), and commits the prompts together with the file's new offset in
// one atomic batch, so that every line is counted once across restarts and
// kill -9.
//
// Files are followed by identity (device + inode + a fingerprint of their
// first bytes, up to 1 KiB), not by name:
//  - rename + create: the renamed file is read to its end through the
//    descriptor kept open across polls, then released (closed) once a poll
//    finds nothing new in it, or at once if it was deleted; the new file is
//    read from its start.
//  - rotated while rlaifd was down: the committed checkpoint of a file that is
//    no longer at its path is looked up in the same directory by device +
//    inode (+ fingerprint), e.g. as app.jsonl.1, even if that name does not
//    match the glob, and the file is read from its committed offset to its end.
//  - deleted while open: read to its end through the open descriptor.
//  - copytruncate / truncation in place: a file smaller than its committed
//    offset, or whose first bytes changed, was truncated (or rewritten). On
//    the poll that sees it (the first poll after a restart included), its
//    directory is searched for the copy logrotate made: a regular file not
//    known by identity whose first fingerprint_len bytes hash to the old
//    checkpoint's fingerprint and whose size is at least the committed offset
//    (newest mtime wins). That copy gets its own checkpoint (under its path,
//    with its identity) starting at the old committed offset, committed before
//    anything is read, and is read from there to its end like a rotated file;
//    as a known identity it is never read again as a new file, even by a glob
//    that matches it. The truncated file is then read from 0. Without such a
//    copy the file is just re-read from 0. Lines written between logrotate's
//    copy and its truncate exist in neither file and are lost (no tailer can
//    see them). Lines re-read from identical content are not stored twice
//    (same prompt id with dedupe; same file+offset id without).
//  - inode reuse: a different fingerprint makes a different file.
// A file's checkpoint is stored under its current path (moved along when the
// file is renamed), so a rotation chain never overwrites the checkpoint of a
// file that still exists. A partial last line waits for its newline (in a
// rotated file that was released, the unterminated tail is taken as a line).
// Descriptors: one per file matching a glob, held while it matches, plus one
// per rotated-away or deleted file until it is drained (gauge
// rlaif_ingest_open_files); all are closed by the destructor.
// Bad lines are counted by reason (rlaif_ingest_rejected_total{reason}) and
// dead-lettered with file:offset; they never stop ingest.
//
// Thread safety: PollOnce is called from one thread (the ingest loop);
// Sources() may be called from any thread.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/metrics.h"
#include "rlaif/common/status.h"
#include "rlaif/daemon/line_parser.h"
#include "rlaif/daemon/redactor.h"
#include "rlaif/storage/store.h"

namespace rlaif::daemon {

struct IngestPassStats {
  int64_t lines = 0;     // complete lines consumed
  int64_t bytes = 0;     // bytes consumed
  int64_t stored = 0;    // new prompts written
  int64_t rejected = 0;  // dead-lettered lines
  int64_t sampled_out = 0;
  int64_t duplicates = 0;
  int64_t filtered = 0;  // skipped by the model filters or the length bounds
  int64_t logged_pairs = 0;   // pairs stored from `rewrite` / `ab` lines (no generation)
  int64_t logged_labels = 0;  // labels stated by those lines
  // Backpressure (sampling.max_pending): prompts not queued while the pool was
  // full ("pause") plus queued prompts dropped to make room ("keep_newest").
  int64_t backpressured = 0;
};

// Dimension of labels stated by log lines that name none.
inline constexpr const char* kLoggedPairDimension = "overall";

struct SourceStatus {
  std::string path;
  uint64_t inode = 0;
  uint64_t offset = 0;    // committed
  uint64_t size = 0;      // current file size
  int64_t lag_bytes = 0;  // size - offset
  int64_t last_commit_ms = 0;
  uint64_t device = 0;
  std::string fingerprint;     // hex hash of the first bytes
  bool rotated = false;        // no longer at a path matching the glob (being drained)
  bool deleted = false;        // unlinked; read through the open descriptor
  int64_t rotations_seen = 0;  // replacements/truncations seen at this path since start
};

// Parses one `simple` log line. On success sets prompt (and response, "" if
// absent). On failure returns kInvalidArgument whose message starts with the
// reason (see line_parser.h): "bad_json", "invalid_utf8", "not_object",
// "missing_prompt", "bad_prompt_type", "bad_response_type", "empty_prompt", ...
Status ParseSimpleLine(const std::string& line, std::string* prompt, std::string* response);

// Stable id of a prompt: HexId(Hash64(text with surrounding whitespace trimmed)).
std::string PromptId(const std::string& text);

// Raises this process's soft limit on open files to its hard limit (each
// followed log file holds a descriptor; the usual soft limit is 1,024) and
// logs the result. Called at the start of `rlaifd run` and `rlaif-ingest`.
void RaiseOpenFileLimit();

class Ingestor {
 public:
  // `store` and `metrics` must outlive the Ingestor. Sources whose format or
  // redaction patterns are invalid (ParseConfig rejects them) are skipped
  // with an error log.
  Ingestor(std::vector<SourceConfig> sources, SamplingConfig sampling, storage::Store& store,
           MetricsRegistry& metrics);
  ~Ingestor();
  Ingestor(const Ingestor&) = delete;
  Ingestor& operator=(const Ingestor&) = delete;

  // Reads every followed file from its committed offset to its current end,
  // committing in batches of at most `max_batch_bytes`. Store errors are
  // returned (the pass stops; nothing beyond the last commit is lost).
  Result<IngestPassStats> PollOnce();
  // Asked between batches: when it returns true (shutdown, pause) the pass
  // stops after its last commit, and the rest is read by a later pass; a
  // backlog of gigabytes does not hold up SIGTERM or a pause.
  void SetInterrupt(std::function<bool()> interrupted) { interrupted_ = std::move(interrupted); }

  // A config reload's sampling: the next PollOnce applies it whole, but
  // `dedupe` (prompt ids; kept until a restart). A changed stratum starts
  // its hourly shares afresh. Any thread.
  void SetSampling(SamplingConfig sampling);

  // Reads nothing, but re-measures the followed files' sizes for Sources()
  // (their lag) while polls are not running (paused, store not writable):
  // a pause must not hide a growing backlog. Call from the PollOnce thread.
  void RefreshSizes();

  std::vector<SourceStatus> Sources() const;
  // Per configured source (config order): its glob, how many regular files
  // it matched at the last poll (-1: the source is not read, its format was
  // refused), and since when (monotonic seconds) it has matched none (-1
  // while it matches some). Empty before the first poll.
  struct GlobStatus {
    std::string glob;
    int files = 0;
    double empty_since_s = -1;
  };
  std::vector<GlobStatus> Globs() const;

  // Files whose descriptors were held open (tailed or drained) after the last poll.
  size_t OpenFiles() const;

  // Waits up to `max_seconds` for a new file in a followed directory: returns
  // true as soon as inotify reports a file created in (or moved into) the
  // directory of a source glob whose watch is "auto", false after the full
  // wait (or at once after Wake()). Without inotify (the kernel refused it, or
  // every source has watch "poll") it just sleeps. The watched directories are
  // those that existed at the last PollOnce. Call from the PollOnce thread.
  bool WaitForNewFiles(double max_seconds);
  // Ends a WaitForNewFiles in progress, and the next one too. Any thread.
  void Wake();
  // "inotify" when WaitForNewFiles uses inotify, else "poll".
  std::string WatchMode() const;

 private:
  struct FileKey {
    uint64_t dev = 0, ino = 0;
    auto operator<=>(const FileKey&) const = default;
  };
  struct Tracked;  // a followed file with its open descriptor
  struct Located;  // a file found at a path in this poll

  Status LoadCheckpoints();
  // Copytruncate recovery (see above): for each located file that was
  // truncated or rewritten since its checkpoint, finds and checkpoints the copy
  // holding its unread lines, adding it to `found`. `truncated` receives the
  // keys of truncated files whose copy was found.
  Status RecoverTruncationCopies(std::map<FileKey, Located>& found, std::set<FileKey>* truncated);
  std::optional<std::pair<std::string, struct stat>> FindTruncationCopy(
      const std::string& dir, const FileKey& original, const storage::SourceCheckpoint& old,
      std::string* copy_head) const;
  Status Rehome();
  Status IngestOne(Located& loc, IngestPassStats* stats);
  Status ReadToEnd(Tracked& t, bool final_tail, IngestPassStats* stats);
  Status Commit(Tracked& t, const storage::SourceCheckpoint& next,
                const storage::IngestBatch& batch, IngestPassStats* stats, uint64_t lines,
                uint64_t bytes);
  // Adds the pair (and the label, if stated) of a `rewrite` / `ab` line.
  void AddLoggedPair(const storage::PromptRecord& prompt, const ParsedLine& line, int64_t now_ms,
                     storage::IngestBatch* batch) const;
  // True for a `sampling.rate` share of hashes (LineSampleHash of the raw line, or
  // the prompt's hash with sampling.key "prompt").
  bool SampleKeeps(uint64_t prompt_hash) const;
  std::optional<storage::SourceCheckpoint> FindByIdentity(const FileKey& key,
                                                          const std::string& head) const;
  bool KeepModel(const std::string& model) const;
  bool KeepMetadata(const ParsedLine& line) const;
  // False once the line's stratum has had its hourly share (then counted).
  bool UnderStratumCap(const ParsedLine& line);
  void PublishStatus();
  static std::optional<Redactor> MakeRedactor(const SamplingConfig& sampling);
  // Takes what SetSampling left (PollOnce thread).
  void ApplyNextSampling();
  // Logs rejected lines without flooding: the first at once, then at most one
  // warning a minute with the count since the last one and the first's
  // reason, file:offset and parser detail (never the line's text). Called
  // with nothing, it reports what waited out the minute.
  void NoteRejections(const std::vector<storage::DeadLetter>& dead);
  // Adds inotify watches for the directories of the sources' globs (idempotent).
  void WatchDirectories();

  std::vector<SourceConfig> sources_;
  std::vector<std::optional<LineParser>> parsers_;  // per source; nullopt = invalid
  SamplingConfig sampling_;
  std::optional<Redactor> redactor_;  // nullopt = redaction off
  storage::Store& store_;
  MetricsRegistry& metrics_;
  size_t max_batch_bytes_ = 4 << 20;

  // Owned by the PollOnce thread.
  bool loaded_ = false;
  // Per source: start_at "end" applies on this first poll (the store has no
  // checkpoint of the source yet). Set by LoadCheckpoints.
  std::vector<bool> start_at_end_;
  std::map<std::string, storage::SourceCheckpoint> records_;  // mirror of the store's sources
  std::map<FileKey, std::unique_ptr<Tracked>> files_;
  std::map<std::string, int64_t> rotations_by_path_;
  std::string chunk_;   // read buffer, reused across reads
  ParsedLine parsed_;   // parse output, reused across lines
  int64_t pending_room_ = -1;  // prompts the "pause" policy still admits; -1 = no bound
  Counter* backpressure_paused_ = nullptr;
  Counter* backpressure_evicted_ = nullptr;
  bool rejects_pruned_logged_ = false;  // the first prune of rejected lines is logged
  std::function<bool()> interrupted_;   // see SetInterrupt
  std::set<std::string> overlap_warned_;     // files matched by two sources, warned about
  // Compressed files skipped (warned about once): identity -> size when seen;
  // a file of the same identity and another size (inode reuse) is looked at again.
  std::map<FileKey, uint64_t> compressed_;
  double glob_error_said_at_ = -1;  // MonotonicSeconds() of the last glob-error warning
  // Files that could not be opened: path -> (reason, when it was last said).
  std::map<std::string, std::pair<std::string, double>> open_failures_;
  int64_t rejected_unlogged_ = 0;       // rejections since the last warning
  storage::DeadLetter first_unlogged_;  // the first of them
  static constexpr double kNeverLogged = -1e18;
  double last_reject_log_s_ = kNeverLogged;        // MonotonicSeconds of the last warning
  int64_t stratum_hour_ = -1;                      // clock hour of stratum_counts_
  std::map<std::string, int64_t> stratum_counts_;  // prompts kept this hour, by stratum

  int inotify_fd_ = -1;  // -1 = no inotify (unavailable or not wanted)
  int wake_fd_ = -1;     // eventfd written by Wake()
  std::map<int, std::set<size_t>> watch_sources_;  // inotify watch descriptor -> sources

  mutable std::mutex mu_;                        // guards status_, globs_, next_sampling_
  std::optional<SamplingConfig> next_sampling_;  // see SetSampling
  std::vector<SourceStatus> status_;
  std::vector<GlobStatus> globs_;
};

}  // namespace rlaif::daemon
