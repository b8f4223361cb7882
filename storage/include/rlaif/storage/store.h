// The rlaifd store: one RocksDB database with a column family per record kind.
//
// Column families: meta, sources, prompts, pairs, labels, queue, models, dead,
// events. Every stage reads its work from the `queue` family and commits its
// result together with the removal of its work item in one atomic WriteBatch,
// so a crash loses nothing committed and repeats only work in flight.
//
//   auto store = rlaif::storage::Store::Open({.path = dir});
//   if (!store.ok()) return store.status();
//   (*store)->CommitIngest(checkpoint, prompts, dead, &stats);
//   for (auto& item : (*store)->PeekQueue(Stage::kGenerate, 16)) { ... }
//
// Thread safety: all methods may be called concurrently; writes are serialized
// internally. Keys:
//   prompts: prompt_id             pairs: pair_id
//   labels:  pair_id/dimension/judge
//   queue:   <stage byte><enqueue ms, 8 bytes big-endian><id>
//   models:  version               events: <ms big-endian><seq>
//   dead:    <ms big-endian><seq>  sources: path
//   meta:    counters ("count/prompts", ...) and registry state ("live_version").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/storage/records.h"

namespace rlaif::storage {

enum class Stage : uint8_t { kGenerate = 1, kJudge = 2 };

struct StoreOptions {
  std::string path;        // required: database directory (created if missing)
  bool sync = false;       // fsync the WAL on every commit (default: WAL without fsync;
                           // survives process crash/kill -9, not power loss)
  // Memory for memtables across all column families (RocksDB's write buffer
  // manager; a family flushes early when the total is reached), bytes.
  // 0 = RocksDB's defaults (64 MiB per family, up to 2 each, no total bound).
  size_t write_buffer_bytes = 0;

  // Writes are refused (kIoError, nothing reaches RocksDB) while less than this
  // is free on the store's filesystem. -1 = 5% of the filesystem, clamped to
  // [1 MiB, 128 MiB]; 0 = no guard. Why: RocksDB 7.8 (Debian bookworm) aborts
  // on a write after a failed WAL write (an assertion fixed upstream in 9.1,
  // facebook/rocksdb#12448), so a full disk must be seen before RocksDB is.
  int64_t min_free_bytes = -1;

  // LZ4 on blob files (the prompt and pair values): less disk (the 1 GiB
  // bench log: 0.82 GB instead of 1.24 GB) for more CPU on every flush (about
  // 10% of ingest at rate 1.0). Applies to blob files written from now on;
  // files already written keep their compression and stay readable either way.
  bool compress_blobs = true;

  // Garbage collection of blob files (where prompt and pair values live):
  // compactions rewrite the live values of the oldest quarter of the blob
  // files into new ones. Off, also with a retention: PurgeOlderThan deletes
  // the oldest records, so the oldest blob files become garbage whole and
  // are dropped without it (measured: StorePurgeSpaceTest), while with it
  // compactions keep copying soon-deleted values into new files, where
  // newer values then pin them.
  bool blob_gc = false;

  // Dead letters of rejected log lines (stage "ingest": the line's text, cut
  // to 4 KiB, with file:offset and the reason) kept at most; the oldest are
  // deleted first. 0 = no bound. A source in the wrong format rejects every
  // line it has, so without a bound they fill the disk. Every rejection is
  // still counted (rlaif_ingest_rejected_total); what is pruned is counted in
  // IngestCommitStats::rejects_pruned.
  int64_t max_rejected_lines = 100000;
};

// A unit of pending work. `key` is opaque and passed back on completion.
struct WorkItem {
  std::string key;
  std::string id;          // prompt_id (kGenerate) or pair_id (kJudge)
  int64_t enqueued_at_ms = 0;
};

struct StoreCounts {
  int64_t prompts = 0;
  int64_t pairs = 0;
  int64_t labels = 0;        // all label records (ai + human), incl. ties
  int64_t dead = 0;
  int64_t queue_generate = 0;
  int64_t queue_judge = 0;
  int64_t labels_since_train = 0;  // labels committed since the last MarkTrained
  // Every label ever committed (labels minus those the retention deleted);
  // what MarkTrained takes.
  int64_t labels_committed = 0;
};

// What PurgeOlderThan deleted, and what it kept although old.
struct PurgeStats {
  int64_t prompts = 0;
  int64_t pairs = 0;
  int64_t labels = 0;
  int64_t dead = 0;                // dead letters of every stage (rejected log lines included)
  int64_t kept_queued =
      0;  // old prompts or pairs still queued, and prompts of queued or kept pairs
  int64_t kept_recent_labels = 0;  // old pairs labelled at or after the cutoff: kept
  bool cancelled = false;          // stopped by `cancelled` before the end
  double compact_s = 0;            // time spent compacting the space of the deletions back
  int64_t Deleted() const { return prompts + pairs + labels + dead; }
};

struct IngestCommitStats {
  int64_t stored = 0;      // new prompts written
  int64_t duplicates = 0;  // prompts whose id was already stored (skipped)
  int64_t pairs = 0;       // new pairs written (IngestBatch::pairs)
  int64_t labels = 0;      // new labels written (IngestBatch::labels)
  int64_t evicted = 0;     // queued prompts dropped by max_generate_queue
  int64_t rejects_pruned = 0;  // oldest rejected lines' dead letters deleted
                               // (StoreOptions::max_rejected_lines)
};

// What one ingest commit writes besides the source checkpoint (CommitIngestBatch).
struct IngestBatch {
  std::vector<PromptRecord> prompts;       // stored if new, and queued for generation
  std::vector<PromptRecord> pair_prompts;  // stored if new, not queued (their pairs are logged)
  std::vector<PairRecord> pairs;           // stored if new; queued for judging unless labelled
  std::vector<LabelRecord> labels;         // stored if new (labels of `pairs`, stated by the log)
  std::vector<DeadLetter> dead;
  // > 0: after this batch at most this many prompts wait for generation; the
  // oldest queued ones are dropped (their prompts stay stored). 0 = no bound.
  int64_t max_generate_queue = 0;
};

// A labelled pair joined for training/export.
struct LabelledPair {
  PairRecord pair;
  LabelRecord label;
};

class Store {
 public:
  // Opens or creates the database. kIoError with RocksDB's message on failure
  // (e.g. another process holds the lock).
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  virtual ~Store() = default;

  // Ingest: writes `prompts` that are not yet stored (by id), enqueues each new
  // one for generation, writes the dead letters, and records `checkpoint`
  // under checkpoint.path -- all in one atomic batch.
  virtual Status CommitIngest(const SourceCheckpoint& checkpoint,
                              const std::vector<PromptRecord>& prompts,
                              const std::vector<DeadLetter>& dead,
                              IngestCommitStats* stats) = 0;
  // CommitIngest with pairs and labels taken from the log lines themselves
  // (no generation, see IngestBatch), all in one atomic batch. A pair with a
  // label in `batch.labels` is not queued for judging. Records already stored
  // are skipped, so a redo after a crash writes and counts nothing twice.
  virtual Status CommitIngestBatch(const SourceCheckpoint& checkpoint, const IngestBatch& batch,
                                   IngestCommitStats* stats) = 0;
  virtual Result<std::optional<SourceCheckpoint>> GetSource(const std::string& path) = 0;
  virtual Result<std::vector<SourceCheckpoint>> ListSources() = 0;

  // Oldest first, at most `max` items. Items stay queued until completed.
  virtual Result<std::vector<WorkItem>> PeekQueue(Stage stage, size_t max) = 0;

  // Generation done: writes the pairs, enqueues each for judging, removes `item`.
  // Pairs that already exist are not rewritten or re-enqueued.
  // Idempotent: a redo after a crash (item already gone, pairs already stored)
  // counts nothing twice. kInvalidArgument if `item` is from the judge queue.
  virtual Status CommitPairs(const WorkItem& item, const std::vector<PairRecord>& pairs) = 0;
  // Judging done: writes the labels, removes `item` from the judge queue.
  // Labels already stored are skipped (a redo counts nothing twice). An empty
  // `item.key` removes nothing: labels not tied to queued work (human labels).
  // kNotFound, writing nothing, if a label's pair is not stored (never was,
  // or a retention pass deleted it after the caller read it).
  virtual Status CommitLabels(const WorkItem& item, const std::vector<LabelRecord>& labels) = 0;
  // Gives up on `item`: removes it from `stage`'s queue and stores the dead letter.
  // If `item` is no longer queued (completed or dead-lettered already), does
  // nothing and returns OK.
  virtual Status DeadLetterWork(Stage stage, const WorkItem& item, const DeadLetter& dead) = 0;
  // Stores a dead letter that is not tied to a queue item.
  virtual Status PutDeadLetter(const DeadLetter& dead) = 0;
  // Gives dead-lettered work another chance: each dead letter of `stage`
  // (kGenerate: a prompt id in `ref`; kJudge: a pair id) whose reason is
  // `reason` ("" = any) is removed and its item queued again, oldest first,
  // in one atomic batch. At most `max` dead letters are looked at; one whose
  // prompt or pair is no longer stored is kept and counted in `skipped`.
  // Ingest dead letters (bad log lines) have no item and are never matched.
  // The scan runs on a snapshot outside the write lock.
  struct RequeueStats {
    int64_t requeued = 0;
    int64_t skipped = 0;
  };
  virtual Result<RequeueStats> RequeueDeadLetters(Stage stage, const std::string& reason,
                                                  size_t max) = 0;

  // Judges stored pairs on dimensions they lack (a dimension added to the
  // config after they were judged): each pair that has a label by `judge`
  // (so it was judged by this judge) but none by `judge` on one of
  // `dimensions` (on `only_dimension` if not empty) is queued for judging
  // again, at most `max` of them, in one atomic batch. The judge stage then
  // asks only for the missing dimensions. Pairs already queued or
  // dead-lettered for judging are left alone (counted), and so are pairs
  // labelled only by others (logged or human labels, an earlier judge
  // model). The scan runs on a snapshot outside the write lock; one backfill
  // at a time (kAlreadyExists while another runs).
  struct BackfillStats {
    int64_t queued = 0;
    int64_t already_queued = 0;
    int64_t dead_lettered = 0;
    bool more = false;                       // stopped at `max`: more pairs lack a dimension
    std::map<std::string, int64_t> missing;  // dimension -> queued pairs that lack it
  };
  virtual Result<BackfillStats> QueueJudgeBackfill(const std::vector<std::string>& dimensions,
                                                   const std::string& only_dimension,
                                                   const std::string& judge, size_t max) = 0;

  virtual Result<std::optional<PromptRecord>> GetPrompt(const std::string& id) = 0;
  virtual Result<std::optional<PairRecord>> GetPair(const std::string& id) = 0;
  // True if a label for (pair, dimension, judge) is committed.
  virtual Result<bool> HasLabel(const std::string& pair_id, const std::string& dimension,
                                const std::string& judge) = 0;
  // The labels of one pair (every dimension and judge), in key order: by
  // dimension, then judge. Empty when it has none (or is not stored).
  virtual Result<std::vector<LabelRecord>> LabelsOfPair(const std::string& pair_id) = 0;

  virtual StoreCounts Counts() = 0;

  // Iterates a consistent snapshot. The callback returns false to stop early.
  virtual Status ForEachPrompt(const std::function<bool(const PromptRecord&)>& fn) = 0;
  virtual Status ForEachPair(const std::function<bool(const PairRecord&)>& fn) = 0;
  virtual Status ForEachLabelledPair(const std::function<bool(const LabelledPair&)>& fn) = 0;
  // Every label, without its pair (no pair reads: cheap), in key order: one
  // pair's labels are adjacent, by dimension, then judge.
  virtual Status ForEachLabel(const std::function<bool(const LabelRecord&)>& fn) = 0;
  virtual Status ForEachDeadLetter(const std::function<bool(const DeadLetter&)>& fn) = 0;

  // Training bookkeeping: resets labels_since_train to 0 minus nothing else.
  // `labels_at_snapshot` is StoreCounts::labels_committed when the run took
  // its data; labels that arrived during the run still count toward the
  // next one.
  virtual Status MarkTrained(int64_t labels_at_snapshot) = 0;

  // Retention (config store.max_age_days): deletes what is older than
  // `cutoff_ms` — prompts (ingested_at_ms) not queued for generation; pairs
  // (created_at_ms) not queued for judging and without a label at or after
  // the cutoff (a human label or a backfill keeps a pair), with their
  // labels; dead letters (at_ms) of every stage. The counters follow, and
  // labels_since_train is unchanged by labels already trained on. Reads the
  // prompts and pairs once (a full scan, on a snapshot, not cached); writes
  // in batches, releasing the writers' lock between them, and stops between
  // batches when `cancelled` returns true (what was deleted stays deleted).
  // `*stats` says what was deleted and kept, also when it fails midway (the
  // batches committed before the error stay deleted).
  // Disk space: after a pass that deleted something, the families deleted
  // from are flushed, and compacted (down to the last level, with blob
  // garbage collection: StoreOptions::blob_gc) when the deletions are at
  // least 1% of their records; a stop cancels the compaction.
  virtual Status PurgeOlderThan(int64_t cutoff_ms, const std::function<bool()>& cancelled,
                                PurgeStats* stats) = 0;

  // Model registry.
  virtual Status PutModel(const ModelRecord& model) = 0;
  virtual Result<std::optional<ModelRecord>> GetModel(const std::string& version) = 0;
  // All versions, oldest first.
  virtual Result<std::vector<ModelRecord>> ListModels() = 0;
  // "" when no model is live.
  virtual Result<std::string> LiveVersion() = 0;
  // Marks `version` live (and the previous live one "retired") and appends
  // `event`, atomically. kNotFound if the version is unknown.
  virtual Status SetLive(const std::string& version, const EventRecord& event) = 0;

  virtual Status AppendEvent(const EventRecord& event) = 0;

  // kIoError (with the free and reserved space) while the store's filesystem
  // has less free space than the reserve, so that writes would be refused;
  // writes nothing (a statvfs), cheap enough for every status request.
  virtual Status FreeSpaceStatus() const = 0;

  // Whether the store takes writes again after a failed one (disk full, I/O
  // error): resumes RocksDB (which stops writing after such an error) and
  // commits one small meta record with the WAL. kIoError while it cannot.
  virtual Status CheckWritable() = 0;
  // Newest first, at most `max`.
  virtual Result<std::vector<EventRecord>> RecentEvents(size_t max) = 0;

  // Online backup: writes a consistent point-in-time copy of the whole store
  // (every column family, including what is still only in the WAL) to `dir`,
  // which must not exist; its parent must. Uses rocksdb::Checkpoint: SST files
  // are hard-linked when `dir` is on the same filesystem, copied otherwise.
  // Writers are not blocked. The copy opens with Open() like any store.
  // kAlreadyExists if `dir` exists, kIoError with RocksDB's message otherwise.
  virtual Status CreateCheckpoint(const std::string& dir) = 0;
  // This store's identity: a random id made when it was first opened (by
  // this version or later), kept by a checkpoint (backup) and a restore of
  // it; "" if it could not be recorded (a full disk at that open).
  virtual std::string Identity() = 0;

  // Reads the whole store: every SST block's checksum (RocksDB's
  // VerifyChecksum), then every record of every column family, values and
  // the blob files holding them included. kCorruption naming the family and
  // key (or file) at the first damage. Used by `rlaifd restore` before it
  // says a restore is good; it reads everything once, so it is not for a
  // running daemon's hot path.
  virtual Status VerifyIntegrity() = 0;
};

}  // namespace rlaif::storage
