// RocksDB implementation of rlaif::storage::Store.
//
// Ownership and concurrency: RocksStore owns the DB and its column family
// handles. Reads go straight to RocksDB (thread-safe). Writes take write_mu_,
// so read-check-then-write sequences (skip stored prompts, count only new
// labels, retire the previous live model) see no interleaving writer. Counters
// are persisted in the meta family in the same WriteBatch as the records they
// count, so after a crash disk and counts agree; counters_ caches them.
#include "rlaif/storage/store.h"

#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/snapshot.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>

#include "rlaif/common/clock.h"

namespace rlaif::storage {

namespace {

enum Cf : size_t {
  kMeta,
  kSources,
  kPrompts,
  kPairs,
  kLabels,
  kQueue,
  kModels,
  kDead,  // dead letters of the generate and judge stages (and, from stores
          // written before `rejects` existed, of ingest)
  kEvents,
  kRejects,  // ingest's dead letters (rejected log lines), bounded by
             // StoreOptions::max_rejected_lines, oldest deleted first
  kNumCf
};
constexpr std::array<const char*, kNumCf> kCfNames = {"meta",   "sources", "prompts", "pairs",
                                                      "labels", "queue",   "models",  "dead",
                                                      "events", "rejects"};

constexpr char kLiveVersionKey[] = "live_version";
constexpr char kNextSeqKey[] = "seq/next";
// A random id made when the store is first opened: a checkpoint (backup)
// and a restore of it keep it, unlike RocksDB's own DB identity.
constexpr char kStoreIdKey[] = "store_id";
constexpr size_t kMaxDeadRawBytes = 4096;

// Persisted counters. labels_since_train is derived (labels_committed -
// labels_at_train) rather than stored, so MarkTrained needs no knowledge of
// labels in flight; labels_committed only grows (the retention deleting old
// labels, even during a run, does not move it), so neither does the count
// since the last run.
struct Counters {
  int64_t prompts = 0;
  int64_t pairs = 0;
  int64_t labels = 0;
  int64_t dead = 0;     // every dead letter, rejected lines included
  int64_t rejects = 0;  // rejected lines' dead letters in kRejects
  int64_t queue_generate = 0;
  int64_t queue_judge = 0;
  int64_t labels_at_train = 0;
  int64_t labels_committed = 0;  // every label ever committed (labels counts those kept)
};

struct CounterField {
  const char* key;  // meta key; the value is decimal ASCII so dumps stay readable
  int64_t Counters::*field;
};
constexpr CounterField kCounterFields[] = {
    {"count/prompts", &Counters::prompts},
    {"count/pairs", &Counters::pairs},
    {"count/labels", &Counters::labels},
    {"count/dead", &Counters::dead},
    {"count/rejects", &Counters::rejects},
    {"count/queue_generate", &Counters::queue_generate},
    {"count/queue_judge", &Counters::queue_judge},
    {"count/labels_at_train", &Counters::labels_at_train},
    {"count/labels_committed", &Counters::labels_committed},
};

void AppendBigEndian64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8)
    out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t ReadBigEndian64(std::string_view s) {  // s.size() >= 8
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

std::string QueueKey(Stage stage, int64_t ms, std::string_view id) {
  std::string key(1, static_cast<char>(stage));
  AppendBigEndian64(static_cast<uint64_t>(ms), &key);
  key.append(id);
  return key;
}

std::string SeqKey(int64_t ms, uint64_t seq) {
  std::string key;
  AppendBigEndian64(static_cast<uint64_t>(ms), &key);
  AppendBigEndian64(seq, &key);
  return key;
}

std::string LabelKey(std::string_view pair_id, std::string_view dimension, std::string_view judge) {
  std::string key;
  key.reserve(pair_id.size() + dimension.size() + judge.size() + 2);
  key.append(pair_id).append("/").append(dimension).append("/").append(judge);
  return key;
}

const char* StageName(Stage stage) { return stage == Stage::kGenerate ? "generate" : "judge"; }

// Keys may hold binary (queue, dead, events); escape them for messages.
std::string Printable(std::string_view key) {
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out.append(buf);
    }
  }
  return out;
}

// Runs `f`, turning any exception into kInternal: nothing is thrown across the
// module boundary (callbacks passed to ForEach* included).
template <typename F>
auto Guarded(const char* op, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("storage ") + op + ": unexpected exception: " + e.what());
  } catch (...) {
    return Status::Internal(std::string("storage ") + op + ": unexpected non-standard exception");
  }
}

// RocksDB's own log, sent to rlaifd's log (warnings and errors) instead of a
// LOG file in the store directory. Why: on a full disk a failed write to that
// file makes RocksDB 7.8 abort the process at its next log line (assertion
// `sync_without_flush_called_` in WritableFileWriter, reached from
// ErrorHandler::SetBGError; found by tests/storage/store_disk_full_test.cc).
class SpdlogRocksLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogRocksLogger(std::string path)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), path_(std::move(path)) {}

  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[2048];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    // Every online backup (a RocksDB Checkpoint, which holds file deletions
    // while it links the files) logs these two at warning level: routine.
    const bool routine = level < rocksdb::InfoLogLevel::ERROR_LEVEL &&
                         (std::strstr(buf, "File Deletions Disabled") != nullptr ||
                          std::strstr(buf, "File Deletions Enable") != nullptr);
    spdlog::log(routine                                       ? spdlog::level::debug
                : level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? spdlog::level::err
                                                              : spdlog::level::warn,
                "rocksdb {}: {}", path_, buf);
  }

 private:
  const std::string path_;
};

}  // namespace

class RocksStore final : public Store {
 public:
  RocksStore(StoreOptions options, std::unique_ptr<rocksdb::DB> db,
             std::vector<rocksdb::ColumnFamilyHandle*> all_handles,
             std::array<rocksdb::ColumnFamilyHandle*, kNumCf> handles)
      : options_(std::move(options)),
        db_(std::move(db)),
        all_handles_(std::move(all_handles)),
        handles_(handles) {
    write_options_.sync = options_.sync;
  }

  ~RocksStore() override {
    for (auto* h : all_handles_) db_->DestroyColumnFamilyHandle(h);
    rocksdb::Status s = db_->Close();
    if (!s.ok()) spdlog::warn("closing store {}: {}", options_.path, s.ToString());
  }

  // Loads the counters and the dead/event key sequence. Called once by Open.
  Status Init() {
    RLAIF_RETURN_IF_ERROR(LoadCounters());
    // The store's identity, made once (stores from before it get one now).
    auto id = GetRaw(kMeta, kStoreIdKey);
    if (!id.ok()) return id.status();
    if (id->has_value()) {
      store_id_ = **id;
    } else {
      std::random_device rd;
      char buf[33];
      std::snprintf(buf, sizeof buf, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
      const rocksdb::Status s = db_->Put(write_options_, handles_[kMeta], kStoreIdKey, buf);
      if (s.ok()) {
        store_id_ = buf;
      } else {  // e.g. a full disk: no identity this time (backup_keep then deletes nothing)
        spdlog::warn("store {}: cannot record its identity: {}", options_.path, s.ToString());
      }
    }
    auto seq = GetRaw(kMeta, kNextSeqKey);
    if (!seq.ok()) return seq.status();
    if (seq->has_value()) {
      auto parsed = ParseCounter(kNextSeqKey, **seq);
      if (!parsed.ok()) return parsed.status();
      next_seq_ = static_cast<uint64_t>(*parsed);
    }
    // Also look at the newest keys, in case meta lags (it never should).
    for (Cf c : {kDead, kEvents, kRejects}) {
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), handles_[c]));
      it->SeekToLast();
      if (it->Valid() && it->key().size() == 16) {
        next_seq_ = std::max(next_seq_, ReadBigEndian64(it->key().ToStringView().substr(8)) + 1);
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading the newest sequence key");
    }
    return Status::Ok();
  }

  Status CommitIngest(const SourceCheckpoint& checkpoint, const std::vector<PromptRecord>& prompts,
                      const std::vector<DeadLetter>& dead, IngestCommitStats* stats) override {
    IngestBatch batch;
    batch.prompts = prompts;
    batch.dead = dead;
    return CommitIngestBatch(checkpoint, batch, stats);
  }

  Status CommitIngestBatch(const SourceCheckpoint& checkpoint, const IngestBatch& in,
                           IngestCommitStats* stats) override {
    return Guarded("CommitIngest", [&]() -> Status {
      if (checkpoint.path.empty()) {
        return Status::InvalidArgument("CommitIngest: checkpoint.path is empty");
      }
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      IngestCommitStats local;
      rocksdb::WriteBatch batch;
      const int64_t now = NowMs();
      std::unordered_set<std::string_view> seen;
      std::vector<std::string> queued;  // generate-queue keys added by this batch, oldest first
      struct ToPut {
        const PromptRecord* p;
        bool enqueue;
      };
      std::vector<ToPut> to_put;
      to_put.reserve(in.prompts.size() + in.pair_prompts.size());
      for (const auto* list : {&in.prompts, &in.pair_prompts}) {
        const bool enqueue = list == &in.prompts;
        for (const PromptRecord& p : *list) {
          if (p.id.empty()) {
            return Status::InvalidArgument("CommitIngest: prompt from " + p.source_path + ":" +
                                           std::to_string(p.source_offset) + " has an empty id");
          }
          if (!seen.insert(p.id).second) {
            ++local.duplicates;
            continue;
          }
          auto exists = Exists(kPrompts, p.id);
          if (!exists.ok()) return exists.status();
          if (*exists) {
            ++local.duplicates;
            continue;
          }
          to_put.push_back({&p, enqueue});
          ++next.prompts;
          ++local.stored;
          if (enqueue) {
            queued.push_back(QueueKey(Stage::kGenerate, now, p.id));
            ++next.queue_generate;
          }
        }
      }
      // Written in key order: each memtable insert then starts from where the
      // previous one ended (RocksDB keeps the last insert position), instead
      // of searching the skip list from its top for every random content-hash
      // key. Keys in one batch are distinct, so the order changes nothing else.
      std::sort(to_put.begin(), to_put.end(),
                [](const ToPut& a, const ToPut& b) { return a.p->id < b.p->id; });
      std::string value;
      for (const ToPut& t : to_put) {
        EncodePromptInto(*t.p, &value);
        batch.Put(handles_[kPrompts], t.p->id, value);
        if (t.enqueue) batch.Put(handles_[kQueue], QueueKey(Stage::kGenerate, now, t.p->id), "");
      }
      std::unordered_set<std::string_view> labelled;
      for (const LabelRecord& l : in.labels) labelled.insert(l.pair_id);
      for (const PairRecord& p : in.pairs) {
        if (p.id.empty()) {
          return Status::InvalidArgument("CommitIngest: a logged pair for prompt " + p.prompt_id +
                                         " has an empty id");
        }
        if (!seen.insert(p.id).second) continue;
        auto exists = Exists(kPairs, p.id);
        if (!exists.ok()) return exists.status();
        if (*exists) continue;
        batch.Put(handles_[kPairs], p.id, EncodePair(p));
        ++next.pairs;
        ++local.pairs;
        // A new logged pair of a stored prompt: a retention pass keeps that prompt.
        if (purging_) queued_while_purging_.insert(p.prompt_id);
        if (!labelled.count(p.id)) {
          batch.Put(handles_[kQueue], QueueKey(Stage::kJudge, now, p.id), "");
          ++next.queue_judge;
        }
      }
      std::unordered_set<std::string> label_keys;
      for (const LabelRecord& l : in.labels) {
        if (l.pair_id.empty() || l.dimension.empty() || l.judge.empty()) {
          return Status::InvalidArgument(
              "CommitIngest: a label needs pair_id, dimension and judge (got '" + l.pair_id +
              "', '" + l.dimension + "', '" + l.judge + "')");
        }
        std::string key = LabelKey(l.pair_id, l.dimension, l.judge);
        if (!label_keys.insert(key).second) continue;
        auto exists = Exists(kLabels, key);
        if (!exists.ok()) return exists.status();
        if (*exists) continue;
        batch.Put(handles_[kLabels], key, EncodeLabel(l));
        ++next.labels;
        ++next.labels_committed;
        ++local.labels;
      }
      if (in.max_generate_queue > 0 && next.queue_generate > in.max_generate_queue) {
        RLAIF_RETURN_IF_ERROR(EvictOldestGenerate(next.queue_generate - in.max_generate_queue,
                                                  &batch, &next, &local.evicted));
        // Still over (this batch alone is bigger than the bound): its oldest go too.
        for (size_t i = 0; i < queued.size() && next.queue_generate > in.max_generate_queue; ++i) {
          batch.Delete(handles_[kQueue], queued[i]);
          --next.queue_generate;
          ++local.evicted;
        }
      }
      // Rejected lines over the bound within this batch alone are not
      // written at all (the oldest of them), so the bound always holds.
      int64_t skip = 0;
      if (options_.max_rejected_lines > 0) {
        skip = std::count_if(in.dead.begin(), in.dead.end(),
                             [](const DeadLetter& d) { return d.stage == "ingest"; }) -
               options_.max_rejected_lines;
      }
      for (const DeadLetter& d : in.dead) {
        if (skip > 0 && d.stage == "ingest") {
          --skip;
          ++local.rejects_pruned;
          continue;
        }
        AddDeadLetter(d, &batch, &next);
      }
      std::string floor;
      RLAIF_RETURN_IF_ERROR(PruneRejects(&batch, &next, &local.rejects_pruned, &floor));
      batch.Put(handles_[kSources], checkpoint.path, EncodeSource(checkpoint));
      RLAIF_RETURN_IF_ERROR(Commit(&batch, next, "ingest commit for " + checkpoint.path));
      if (!floor.empty()) rejects_floor_ = std::move(floor);
      if (stats != nullptr) *stats = local;
      return Status::Ok();
    });
  }

  Result<std::optional<SourceCheckpoint>> GetSource(const std::string& path) override {
    return Guarded("GetSource", [&] { return GetRecord(kSources, path, DecodeSource); });
  }

  Result<std::vector<SourceCheckpoint>> ListSources() override {
    return Guarded("ListSources", [&]() -> Result<std::vector<SourceCheckpoint>> {
      std::vector<SourceCheckpoint> out;
      RLAIF_RETURN_IF_ERROR(
          Scan<SourceCheckpoint>(kSources, DecodeSource, [&](const SourceCheckpoint& s) {
            out.push_back(s);
            return true;
          }));
      return out;
    });
  }

  Result<std::vector<WorkItem>> PeekQueue(Stage stage, size_t max) override {
    return Guarded("PeekQueue", [&]() -> Result<std::vector<WorkItem>> {
      std::vector<WorkItem> out;
      if (max == 0) return out;
      const std::string prefix(1, static_cast<char>(stage));
      const std::string upper(1, static_cast<char>(static_cast<uint8_t>(stage) + 1));
      rocksdb::Slice upper_slice(upper);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper_slice;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kQueue]));
      for (it->Seek(prefix); it->Valid() && out.size() < max; it->Next()) {
        std::string_view key = it->key().ToStringView();
        if (key.size() <= 9) {
          return Status::Corruption("malformed queue key '" + Printable(key) + "' in store " +
                                    options_.path);
        }
        out.push_back(WorkItem{std::string(key), std::string(key.substr(9)),
                               static_cast<int64_t>(ReadBigEndian64(key.substr(1)))});
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading the work queue");
      return out;
    });
  }

  Status CommitPairs(const WorkItem& item, const std::vector<PairRecord>& pairs) override {
    return Guarded("CommitPairs", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      auto removed = RemoveWorkItem(Stage::kGenerate, item, &batch, &next);
      if (!removed.ok()) return removed.status();
      const int64_t now = NowMs();
      std::unordered_set<std::string_view> seen;
      for (const PairRecord& p : pairs) {
        if (p.id.empty()) {
          return Status::InvalidArgument("CommitPairs: a pair for prompt " + p.prompt_id +
                                         " has an empty id");
        }
        if (!seen.insert(p.id).second) continue;
        auto exists = Exists(kPairs, p.id);
        if (!exists.ok()) return exists.status();
        if (*exists) continue;  // a redo: already written and enqueued once
        batch.Put(handles_[kPairs], p.id, EncodePair(p));
        batch.Put(handles_[kQueue], QueueKey(Stage::kJudge, now, p.id), "");
        ++next.pairs;
        ++next.queue_judge;
      }
      return Commit(&batch, next, "pairs commit for prompt " + item.id);
    });
  }

  Status CommitLabels(const WorkItem& item, const std::vector<LabelRecord>& labels) override {
    return Guarded("CommitLabels", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      auto removed = RemoveWorkItem(Stage::kJudge, item, &batch, &next);
      if (!removed.ok()) return removed.status();
      std::unordered_set<std::string> seen;
      for (const LabelRecord& l : labels) {
        if (l.pair_id.empty() || l.dimension.empty() || l.judge.empty()) {
          return Status::InvalidArgument(
              "CommitLabels: a label needs pair_id, dimension and judge (got '" + l.pair_id +
              "', '" + l.dimension + "', '" + l.judge + "')");
        }
        std::string key = LabelKey(l.pair_id, l.dimension, l.judge);
        if (!seen.insert(key).second) continue;
        // Checked under write_mu_, which a retention pass holds while it
        // deletes: a label is never written for a pair deleted after the
        // caller read it (an orphan no training run could use).
        auto pair_exists = Exists(kPairs, l.pair_id);
        if (!pair_exists.ok()) return pair_exists.status();
        if (!*pair_exists) {
          return Status::NotFound("CommitLabels: no pair with id " + l.pair_id +
                                  " (never stored, or deleted by store retention)");
        }
        auto exists = Exists(kLabels, key);
        if (!exists.ok()) return exists.status();
        if (*exists) continue;
        batch.Put(handles_[kLabels], key, EncodeLabel(l));
        ++next.labels;
        ++next.labels_committed;
      }
      return Commit(&batch, next, "labels commit for pair " + item.id);
    });
  }

  Status DeadLetterWork(Stage stage, const WorkItem& item, const DeadLetter& dead) override {
    return Guarded("DeadLetterWork", [&]() -> Status {
      if (item.key.empty()) {
        return Status::InvalidArgument("DeadLetterWork: work item for '" + item.id +
                                       "' has an empty key");
      }
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      auto removed = RemoveWorkItem(stage, item, &batch, &next);
      if (!removed.ok()) return removed.status();
      if (!*removed) {
        // Completed or dead-lettered already (a redo, or two workers on one
        // item): a second dead letter would only duplicate the first outcome.
        spdlog::info("dead letter for {} item {} skipped: item no longer queued", StageName(stage),
                     item.id);
        return Status::Ok();
      }
      AddDeadLetter(dead, &batch, &next);
      return Commit(&batch, next,
                    std::string("dead-lettering ") + StageName(stage) + " item " + item.id);
    });
  }

  Status PutDeadLetter(const DeadLetter& dead) override {
    return Guarded("PutDeadLetter", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      AddDeadLetter(dead, &batch, &next);
      int64_t pruned = 0;
      std::string floor;
      RLAIF_RETURN_IF_ERROR(PruneRejects(&batch, &next, &pruned, &floor));
      RLAIF_RETURN_IF_ERROR(Commit(&batch, next, "dead letter write"));
      if (!floor.empty()) rejects_floor_ = std::move(floor);
      return Status::Ok();
    });
  }

  Result<RequeueStats> RequeueDeadLetters(Stage stage, const std::string& reason,
                                          size_t max) override {
    return Guarded("RequeueDeadLetters", [&]() -> Result<RequeueStats> {
      const char* stage_name = stage == Stage::kGenerate ? "generate" : "judge";
      const Cf records = stage == Stage::kGenerate ? kPrompts : kPairs;
      // The matching dead letters, from a snapshot and without the write
      // lock: the table may hold millions of bad log lines, and ingest must
      // not wait for the scan.
      std::vector<std::pair<std::string, std::string>> candidates;  // dead key, ref
      {
        rocksdb::ManagedSnapshot snapshot(db_.get());
        rocksdb::ReadOptions ro;
        ro.snapshot = snapshot.snapshot();
        ro.fill_cache = false;
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kDead]));
        for (it->SeekToFirst(); it->Valid() && candidates.size() < max; it->Next()) {
          Result<DeadLetter> d = DecodeDeadLetter(it->value().ToString());
          if (!d.ok()) return RecordCorruption(kDead, it->key().ToStringView(), d.status());
          if (d->stage != stage_name || (!reason.empty() && d->reason != reason)) continue;
          candidates.emplace_back(it->key().ToString(), d->ref);
        }
        if (!it->status().ok()) return FromRocks(it->status(), "reading the dead letters");
      }
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      RequeueStats out;
      const int64_t now = NowMs();
      for (const auto& [key, ref] : candidates) {
        auto still = Exists(kDead, key);  // not re-queued by a concurrent call
        if (!still.ok()) return still.status();
        if (!*still) continue;
        auto exists = Exists(records, ref);
        if (!exists.ok()) return exists.status();
        if (!*exists) {
          ++out.skipped;
          continue;
        }
        batch.Delete(handles_[kDead], key);
        --next.dead;
        batch.Put(handles_[kQueue], QueueKey(stage, now, ref), "");
        if (purging_) queued_while_purging_.insert(ref);
        ++(stage == Stage::kGenerate ? next.queue_generate : next.queue_judge);
        ++out.requeued;
      }
      if (out.requeued == 0) return out;
      RLAIF_RETURN_IF_ERROR(
          Commit(&batch, next, std::string("re-queueing ") + stage_name + " dead letters"));
      return out;
    });
  }

  Result<BackfillStats> QueueJudgeBackfill(const std::vector<std::string>& dimensions,
                                           const std::string& only_dimension,
                                           const std::string& judge, size_t max) override {
    return Guarded("QueueJudgeBackfill", [&]() -> Result<BackfillStats> {
      // Two at once would both find (and queue) the same pairs: the scan
      // runs outside the write lock.
      std::unique_lock<std::mutex> one(backfill_mu_, std::try_to_lock);
      if (!one.owns_lock()) {
        return Status::AlreadyExists(
            "a backfill is running; run it again once it has answered (queued pairs are "
            "counted as already_queued)");
      }
      BackfillStats out;
      std::vector<std::pair<std::string, std::vector<std::string>>> candidates;  // pair, missing
      {
        rocksdb::ManagedSnapshot snapshot(db_.get());
        rocksdb::ReadOptions ro;
        ro.snapshot = snapshot.snapshot();
        ro.fill_cache = false;
        // Pairs queued or dead-lettered for judging.
        std::set<std::string> queued, dead;
        {
          const std::string prefix(1, static_cast<char>(Stage::kJudge));
          std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kQueue]));
          for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
            if (it->key().size() > 9) queued.insert(it->key().ToString().substr(9));
          }
          if (!it->status().ok()) return FromRocks(it->status(), "reading the work queue");
        }
        {
          std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kDead]));
          for (it->SeekToFirst(); it->Valid(); it->Next()) {
            Result<DeadLetter> d = DecodeDeadLetter(it->value().ToString());
            if (!d.ok()) return RecordCorruption(kDead, it->key().ToStringView(), d.status());
            if (d->stage == "judge") dead.insert(d->ref);
          }
          if (!it->status().ok()) return FromRocks(it->status(), "reading the dead letters");
        }
        // Labels are keyed pair_id/dimension/judge: one pair's are adjacent.
        std::string pair;
        std::set<std::string> have;  // dimensions `judge` labelled `pair` on
        auto close_pair = [&] {
          if (pair.empty() || have.empty()) return;
          std::vector<std::string> missing;
          for (const auto& d : dimensions) {
            if (!have.count(d)) missing.push_back(d);
          }
          if (missing.empty()) return;
          if (!only_dimension.empty() &&
              std::find(missing.begin(), missing.end(), only_dimension) == missing.end()) {
            return;
          }
          if (queued.count(pair)) {
            ++out.already_queued;
          } else if (dead.count(pair)) {
            ++out.dead_lettered;
          } else if (candidates.size() >= max) {
            out.more = true;
          } else {
            candidates.emplace_back(pair, std::move(missing));
          }
        };
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kLabels]));
        for (it->SeekToFirst(); it->Valid(); it->Next()) {
          const std::string_view key = it->key().ToStringView();
          const size_t first = key.find('/'), last = key.rfind('/');
          if (first == std::string_view::npos || last == first) {
            return Status::Corruption("malformed label key '" + Printable(key) + "' in store " +
                                      options_.path);
          }
          const std::string_view id = key.substr(0, first);
          if (id != pair) {
            close_pair();
            pair = std::string(id);
            have.clear();
          }
          if (key.substr(last + 1) == judge) {
            have.insert(std::string(key.substr(first + 1, last - first - 1)));
          }
        }
        if (!it->status().ok()) return FromRocks(it->status(), "reading the labels");
        close_pair();
      }
      if (candidates.empty()) return out;
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      rocksdb::WriteBatch batch;
      const int64_t now = NowMs();
      for (const auto& [id, missing] : candidates) {
        auto pair = GetRecord(kPairs, id, DecodePair);
        if (!pair.ok()) return pair.status();
        if (!pair->has_value()) continue;
        batch.Put(handles_[kQueue], QueueKey(Stage::kJudge, now, id), "");
        if (purging_) {  // a retention pass keeps the pair and its prompt
          queued_while_purging_.insert(id);
          queued_while_purging_.insert((*pair)->prompt_id);
        }
        ++next.queue_judge;
        ++out.queued;
        for (const auto& d : missing) ++out.missing[d];
      }
      if (out.queued == 0) return out;
      RLAIF_RETURN_IF_ERROR(Commit(&batch, next, "queueing pairs to judge on missing dimensions"));
      return out;
    });
  }

  Result<std::optional<PromptRecord>> GetPrompt(const std::string& id) override {
    return Guarded("GetPrompt", [&] { return GetRecord(kPrompts, id, DecodePrompt); });
  }

  Result<std::optional<PairRecord>> GetPair(const std::string& id) override {
    return Guarded("GetPair", [&] { return GetRecord(kPairs, id, DecodePair); });
  }

  Result<bool> HasLabel(const std::string& pair_id, const std::string& dimension,
                        const std::string& judge) override {
    return Guarded("HasLabel",
                   [&] { return Exists(kLabels, LabelKey(pair_id, dimension, judge)); });
  }

  Result<std::vector<LabelRecord>> LabelsOfPair(const std::string& pair_id) override {
    return Guarded("LabelsOfPair", [&]() -> Result<std::vector<LabelRecord>> {
      std::vector<LabelRecord> out;
      const std::string prefix = pair_id + "/";
      std::unique_ptr<rocksdb::Iterator> it(
          db_->NewIterator(rocksdb::ReadOptions(), handles_[kLabels]));
      for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
        auto label = DecodeLabel(it->value().ToString());
        if (!label.ok()) return RecordCorruption(kLabels, it->key().ToStringView(), label.status());
        out.push_back(std::move(*label));
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading a pair's labels");
      return out;
    });
  }

  StoreCounts Counts() override {
    std::lock_guard lock(counts_mu_);
    StoreCounts c;
    c.prompts = counters_.prompts;
    c.pairs = counters_.pairs;
    c.labels = counters_.labels;
    c.dead = counters_.dead;
    c.queue_generate = counters_.queue_generate;
    c.queue_judge = counters_.queue_judge;
    c.labels_committed = counters_.labels_committed;
    c.labels_since_train =
        std::max<int64_t>(0, counters_.labels_committed - counters_.labels_at_train);
    return c;
  }

  Status ForEachPrompt(const std::function<bool(const PromptRecord&)>& fn) override {
    return Guarded("ForEachPrompt", [&] { return Scan<PromptRecord>(kPrompts, DecodePrompt, fn); });
  }

  Status ForEachPair(const std::function<bool(const PairRecord&)>& fn) override {
    return Guarded("ForEachPair", [&] { return Scan<PairRecord>(kPairs, DecodePair, fn); });
  }

  // Both families on one snapshot, merged by key: their keys come from one
  // sequence (time, then seq), so the merge is oldest first across stages.
  Status ForEachDeadLetter(const std::function<bool(const DeadLetter&)>& fn) override {
    return Guarded("ForEachDeadLetter", [&]() -> Status {
      rocksdb::ManagedSnapshot snapshot(db_.get());
      rocksdb::ReadOptions ro;
      ro.snapshot = snapshot.snapshot();
      ro.fill_cache = false;
      std::unique_ptr<rocksdb::Iterator> dead(db_->NewIterator(ro, handles_[kDead]));
      std::unique_ptr<rocksdb::Iterator> rejects(db_->NewIterator(ro, handles_[kRejects]));
      dead->SeekToFirst();
      rejects->SeekToFirst();
      while (dead->Valid() || rejects->Valid()) {
        const bool from_dead =
            !rejects->Valid() || (dead->Valid() && dead->key().compare(rejects->key()) < 0);
        rocksdb::Iterator* it = from_dead ? dead.get() : rejects.get();
        Result<DeadLetter> d = DecodeDeadLetter(it->value().ToString());
        if (!d.ok())
          return RecordCorruption(from_dead ? kDead : kRejects, it->key().ToStringView(),
                                  d.status());
        if (!fn(*d)) break;
        it->Next();
      }
      for (auto* it : {dead.get(), rejects.get()}) {
        if (!it->status().ok()) return FromRocks(it->status(), "scanning the dead letters");
      }
      return Status::Ok();
    });
  }

  Status ForEachLabel(const std::function<bool(const LabelRecord&)>& fn) override {
    return Guarded("ForEachLabel", [&]() -> Status {
      rocksdb::ManagedSnapshot snapshot(db_.get());
      rocksdb::ReadOptions ro;
      ro.snapshot = snapshot.snapshot();
      ro.fill_cache = false;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kLabels]));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        auto label = DecodeLabel(it->value().ToString());
        if (!label.ok()) return RecordCorruption(kLabels, it->key().ToStringView(), label.status());
        if (!fn(*label)) break;
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scanning labels");
      return Status::Ok();
    });
  }

  Status ForEachLabelledPair(const std::function<bool(const LabelledPair&)>& fn) override {
    return Guarded("ForEachLabelledPair", [&]() -> Status {
      rocksdb::ManagedSnapshot snapshot(db_.get());
      rocksdb::ReadOptions ro;
      ro.snapshot = snapshot.snapshot();
      ro.fill_cache = false;  // a full scan would evict the hot working set
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kLabels]));
      // Labels are keyed pair_id/..., so one pair's labels are adjacent: keep
      // the last pair looked up (or its absence) instead of re-reading it.
      LabelledPair joined;
      bool looked_up = false;
      bool have_pair = false;
      int64_t missing = 0;
      std::string first_missing;
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        auto label = DecodeLabel(it->value().ToString());
        if (!label.ok()) return RecordCorruption(kLabels, it->key().ToStringView(), label.status());
        if (!looked_up || label->pair_id != joined.pair.id) {
          looked_up = true;
          joined.pair = PairRecord();
          joined.pair.id = label->pair_id;
          auto pair = GetRecord(kPairs, label->pair_id, DecodePair, ro.snapshot);
          if (!pair.ok()) return pair.status();
          have_pair = pair->has_value();
          if (have_pair) joined.pair = std::move(**pair);
        }
        if (!have_pair) {
          if (missing++ == 0) first_missing = it->key().ToString();
          continue;
        }
        joined.label = std::move(*label);
        if (!fn(joined)) break;
      }
      if (!it->status().ok()) return FromRocks(it->status(), "scanning labels");
      if (missing > 0) {
        spdlog::warn("store {}: skipped {} label(s) whose pair is missing (first: {})",
                     options_.path, missing, Printable(first_missing));
      }
      return Status::Ok();
    });
  }

  Status PurgeOlderThan(int64_t cutoff_ms, const std::function<bool()>& cancelled,
                        PurgeStats* out) override {
    *out = PurgeStats{};
    return Guarded("PurgeOlderThan", [&]() -> Status {
      PurgeStats& stats = *out;
      const StoreCounts at_start = Counts();
      const std::function<bool()> stop = [&] {
        if (cancelled && cancelled()) stats.cancelled = true;
        return stats.cancelled;
      };
      const Status st = [&]() -> Status {
        {
          std::lock_guard lock(write_mu_);
          purging_ = true;
          queued_while_purging_.clear();
        }
        struct Done {
          RocksStore* self;
          ~Done() {
            std::lock_guard lock(self->write_mu_);
            self->purging_ = false;
            self->queued_while_purging_.clear();
          }
        } done{this};
        rocksdb::ReadOptions ro;
        ro.fill_cache = false;
        // What is queued now (work not done yet), and the prompts of queued
        // pairs (the judge may need a prompt's logged response).
        std::unordered_set<std::string> queued;
        std::unordered_set<std::string> keep_prompts;
        {
          std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kQueue]));
          for (it->SeekToFirst(); it->Valid(); it->Next()) {
            if (it->key().size() > 9) queued.insert(it->key().ToString().substr(9));
          }
          if (!it->status().ok()) return FromRocks(it->status(), "scanning the queue");
        }
        // Under the writers' lock, so that nothing is queued again or labelled
        // between the check and the delete.
        auto requeued = [&](const std::string& id) { return queued_while_purging_.count(id) > 0; };
        constexpr size_t kBatch = 64;
        std::vector<std::pair<std::string, std::string>> ids;  // id, the pair's prompt id
        auto flush_pairs = [&]() -> Status {
          std::lock_guard lock(write_mu_);
          Counters next = counters_;
          rocksdb::WriteBatch batch;
          rocksdb::ReadOptions now;
          for (const auto& [id, prompt_id] : ids) {
            if (requeued(id)) {
              ++stats.kept_queued;
              keep_prompts.insert(prompt_id);
              continue;
            }
            auto exists = Exists(kPairs, id);
            if (!exists.ok()) return exists.status();
            if (!*exists) continue;
            const std::string prefix = id + "/";
            std::vector<std::string> labels;
            bool recent = false;
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(now, handles_[kLabels]));
            for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
              auto label = DecodeLabel(it->value().ToString());
              if (!label.ok())
                return RecordCorruption(kLabels, it->key().ToStringView(), label.status());
              if (label->created_at_ms >= cutoff_ms) recent = true;
              labels.push_back(it->key().ToString());
            }
            if (!it->status().ok()) return FromRocks(it->status(), "reading labels");
            if (recent) {
              ++stats.kept_recent_labels;
              keep_prompts.insert(prompt_id);
              continue;
            }
            for (const auto& key : labels) batch.Delete(handles_[kLabels], key);
            batch.Delete(handles_[kPairs], id);
            next.labels -= static_cast<int64_t>(labels.size());
            --next.pairs;
          }
          ids.clear();
          // Counted once committed: a failed batch deleted nothing.
          const int64_t pairs = counters_.pairs - next.pairs;
          const int64_t labels = counters_.labels - next.labels;
          RLAIF_RETURN_IF_ERROR(Commit(&batch, next, "deleting pairs older than the retention"));
          stats.pairs += pairs;
          stats.labels += labels;
          return Status::Ok();
        };
        auto flush_prompts = [&]() -> Status {
          std::lock_guard lock(write_mu_);
          Counters next = counters_;
          rocksdb::WriteBatch batch;
          for (const auto& [id, unused] : ids) {
            if (requeued(id)) {
              ++stats.kept_queued;
              continue;
            }
            auto exists = Exists(kPrompts, id);
            if (!exists.ok()) return exists.status();
            if (!*exists) continue;
            batch.Delete(handles_[kPrompts], id);
            --next.prompts;
          }
          ids.clear();
          const int64_t prompts = counters_.prompts - next.prompts;
          RLAIF_RETURN_IF_ERROR(Commit(&batch, next, "deleting prompts older than the retention"));
          stats.prompts += prompts;
          return Status::Ok();
        };
        // Pairs first: which prompts queued or kept pairs need is known before
        // the prompts are read. The iterator is renewed every few thousand
        // records: one held for a whole scan would pin every file (and the
        // queue's deleted keys) it saw for as long.
        for (Cf c : {kPairs, kPrompts}) {
          std::string last;
          for (bool more = true; more;) {
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[c]));
            if (last.empty()) {
              it->SeekToFirst();
            } else {
              it->Seek(last);
              if (it->Valid() && it->key() == rocksdb::Slice(last)) it->Next();
            }
            more = false;
            for (size_t read = 0; it->Valid(); it->Next()) {
              if (++read > 4096) {
                more = true;
                break;
              }
              last = it->key().ToString();
              int64_t at = 0;
              std::string prompt_id;
              if (c == kPairs) {
                auto pair = DecodePair(it->value().ToString());
                if (!pair.ok()) return RecordCorruption(c, it->key().ToStringView(), pair.status());
                at = pair->created_at_ms;
                prompt_id = pair->prompt_id;
              } else {
                auto prompt = DecodePrompt(it->value().ToString());
                if (!prompt.ok())
                  return RecordCorruption(c, it->key().ToStringView(), prompt.status());
                at = prompt->ingested_at_ms;
              }
              const bool is_queued = queued.count(last) > 0;
              if (c == kPairs && is_queued) keep_prompts.insert(prompt_id);
              if (at >= cutoff_ms) continue;
              if (is_queued || (c == kPrompts && keep_prompts.count(last))) {
                ++stats.kept_queued;
                continue;
              }
              ids.emplace_back(last, std::move(prompt_id));
              if (ids.size() >= kBatch) {
                RLAIF_RETURN_IF_ERROR(c == kPairs ? flush_pairs() : flush_prompts());
                if (stop()) return Status::Ok();
              }
            }
            if (!it->status().ok()) {
              return FromRocks(it->status(), std::string("scanning ") + kCfNames[c]);
            }
            if (stop()) return Status::Ok();  // a stop does not wait for the end of a long scan
          }
          if (!ids.empty()) RLAIF_RETURN_IF_ERROR(c == kPairs ? flush_pairs() : flush_prompts());
          if (stop()) return Status::Ok();
        }
        // Dead letters: keys are <ms><seq>, oldest first. Each batch starts
        // past the last one's keys (not at the first key, which would step over
        // every deletion before it again).
        std::string upper;
        AppendBigEndian64(static_cast<uint64_t>(std::max<int64_t>(cutoff_ms, 0)), &upper);
        for (Cf c : {kDead, kRejects}) {
          std::string lower;
          for (;;) {
            std::lock_guard lock(write_mu_);
            Counters next = counters_;
            rocksdb::WriteBatch batch;
            rocksdb::Slice upper_slice(upper);
            rocksdb::Slice lower_slice(lower);
            rocksdb::ReadOptions bounded;
            bounded.iterate_upper_bound = &upper_slice;
            if (!lower.empty()) bounded.iterate_lower_bound = &lower_slice;
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(bounded, handles_[c]));
            size_t n = 0;
            std::string last;
            for (it->SeekToFirst(); it->Valid() && n < kBatch * 4; it->Next(), ++n) {
              batch.Delete(handles_[c], it->key());
              last = it->key().ToString();
            }
            if (!it->status().ok()) {
              return FromRocks(it->status(), std::string("scanning ") + kCfNames[c]);
            }
            if (n == 0) break;
            next.dead -= static_cast<int64_t>(n);
            if (c == kRejects) next.rejects -= static_cast<int64_t>(n);
            RLAIF_RETURN_IF_ERROR(
                Commit(&batch, next, "deleting dead letters older than the retention"));
            stats.dead += static_cast<int64_t>(n);
            lower = last + '\0';
            if (stop()) return Status::Ok();
          }
        }
        return Status::Ok();
      }();
      // Space back after whatever was deleted: also after an error or a
      // stop midway (what was committed stays deleted).
      // Not after a corruption: a compaction reads every block of the family
      // and would turn a damaged one into a store that takes no writes.
      if (st.code() == StatusCode::kCorruption) {
        spdlog::warn("store {}: no compaction after the retention's deletions: {}", options_.path,
                     st.ToString());
      } else if (!stats.cancelled) {
        stats.compact_s = ReclaimAfterPurge(stats, at_start, cancelled);
      }
      return st;
    });
  }

  // After a retention pass, the space of what it deleted: flushes the
  // families it deleted from (the deletions leave the memtable, which with
  // little ingest can take days to fill), then compacts each whose deletions
  // are at least 1% of its records down to the last level, where the
  // deleted values are dropped and blob files no record points to any more
  // are deleted (no blob garbage collection: a blob file that still holds a
  // kept value stays until that value goes too). The SST files hold keys
  // and blob references only for prompts and pairs, so the rewrite is small
  // next to the values. `cancelled` (a stop) cancels the compaction, checked
  // every 0.1 s (a flush waiting behind a write stall is not cancelled).
  // Errors are logged: the deletions stand, and RocksDB's own compactions
  // reclaim later. Returns the seconds it took.
  double ReclaimAfterPurge(const PurgeStats& stats, const StoreCounts& before,
                           const std::function<bool()>& cancelled) {
    if (stats.Deleted() == 0) return 0;
    const double t0 = MonotonicSeconds();
    struct Family {
      Cf cf;
      bool compact;
    };
    std::vector<Family> families;
    auto share = [](int64_t deleted, int64_t total) {
      return deleted > 0 && deleted * 100 >= total;
    };
    if (stats.prompts > 0) families.push_back({kPrompts, share(stats.prompts, before.prompts)});
    if (stats.pairs > 0) {
      families.push_back({kPairs, share(stats.pairs, before.pairs)});
      families.push_back({kLabels, share(stats.labels, before.labels)});
    }
    if (stats.dead > 0) {
      families.push_back({kDead, share(stats.dead, before.dead)});
      families.push_back({kRejects, share(stats.dead, before.dead)});
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    for (const Family& f : families) handles.push_back(handles_[f.cf]);
    // Waits behind a write stall rather than causing one for the writers.
    rocksdb::Status s = db_->Flush(rocksdb::FlushOptions(), handles);
    if (!s.ok()) {
      spdlog::warn("store {}: flushing after the retention's deletions: {}", options_.path,
                   s.ToString());
      return MonotonicSeconds() - t0;
    }
    std::atomic<bool> canceled{cancelled && cancelled()};
    std::atomic<bool> done{false};
    std::thread watcher([&] {  // CompactRange blocks; a stop must not wait for it
      while (!done.load()) {
        if (cancelled && cancelled()) canceled = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    struct Join {  // also if anything below throws: a joinable thread must not be destroyed
      std::atomic<bool>& done;
      std::thread& watcher;
      ~Join() {
        done = true;
        watcher.join();
      }
    } join{done, watcher};
    for (const Family& f : families) {
      if (!f.compact || canceled.load()) continue;
      // A compaction writes the family's files anew before it deletes the
      // old ones: on a disk too full for that (often why a retention was
      // set), RocksDB's own compactions reclaim later instead of this one
      // failing against a full disk.
      uint64_t sst_bytes = 0;
      db_->GetIntProperty(handles_[f.cf], "rocksdb.total-sst-files-size", &sst_bytes);
      struct statvfs fs {};
      if (statvfs(options_.path.c_str(), &fs) == 0) {
        const uint64_t unit = fs.f_frsize ? fs.f_frsize : fs.f_bsize;
        const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * unit;
        const uint64_t needed = sst_bytes + static_cast<uint64_t>(ReserveBytes(fs)) + (64ull << 20);
        if (free_bytes < needed) {
          spdlog::warn(
              "store {}: not compacting {} after the retention's deletions: {} MB free, "
              "it needs about {} MB; its space returns as RocksDB compacts on its own",
              options_.path, kCfNames[f.cf], free_bytes >> 20, needed >> 20);
          continue;
        }
      }
      rocksdb::CompactRangeOptions o;
      o.canceled = &canceled;
      s = db_->CompactRange(o, handles_[f.cf], nullptr, nullptr);
      if (!s.ok() && !canceled.load()) {
        spdlog::warn("store {}: compacting {} after the retention's deletions: {}", options_.path,
                     kCfNames[f.cf], s.ToString());
      }
    }
    return MonotonicSeconds() - t0;
  }

  Status MarkTrained(int64_t labels_at_snapshot) override {
    return Guarded("MarkTrained", [&]() -> Status {
      if (labels_at_snapshot < 0) {
        return Status::InvalidArgument("MarkTrained: labels_at_snapshot is negative (" +
                                       std::to_string(labels_at_snapshot) + ")");
      }
      std::lock_guard lock(write_mu_);
      Counters next = counters_;
      next.labels_at_train = labels_at_snapshot;
      rocksdb::WriteBatch batch;
      return Commit(&batch, next, "recording a training run");
    });
  }

  Status PutModel(const ModelRecord& model) override {
    return Guarded("PutModel", [&]() -> Status {
      if (model.version.empty()) return Status::InvalidArgument("PutModel: version is empty");
      std::lock_guard lock(write_mu_);
      rocksdb::WriteBatch batch;
      batch.Put(handles_[kModels], model.version, EncodeModel(model));
      return Commit(&batch, counters_, "registering model " + model.version);
    });
  }

  Result<std::optional<ModelRecord>> GetModel(const std::string& version) override {
    return Guarded("GetModel", [&] { return GetRecord(kModels, version, DecodeModel); });
  }

  Result<std::vector<ModelRecord>> ListModels() override {
    return Guarded("ListModels", [&]() -> Result<std::vector<ModelRecord>> {
      std::vector<ModelRecord> out;
      RLAIF_RETURN_IF_ERROR(Scan<ModelRecord>(kModels, DecodeModel, [&](const ModelRecord& m) {
        out.push_back(m);
        return true;
      }));
      // Keys sort by version name; "oldest first" is by creation time.
      std::stable_sort(out.begin(), out.end(), [](const ModelRecord& a, const ModelRecord& b) {
        return a.created_at_ms < b.created_at_ms;
      });
      return out;
    });
  }

  Status VerifyIntegrity() override {
    return Guarded("VerifyIntegrity", [&]() -> Status {
      rocksdb::Status s = db_->VerifyChecksum();
      if (!s.ok()) return Status::Corruption("store checksum verification: " + s.ToString());
      for (size_t c = 0; c < kNumCf; ++c) {
        rocksdb::ReadOptions ro;
        ro.verify_checksums = true;
        ro.fill_cache = false;
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[c]));
        // value() reads each record's value, from its blob file when it has one.
        for (it->SeekToFirst(); it->Valid(); it->Next()) (void)it->value();
        if (!it->status().ok()) {
          return Status::Corruption(std::string("reading every record of ") + kCfNames[c] + ": " +
                                    it->status().ToString());
        }
      }
      return Status::Ok();
    });
  }

  std::string Identity() override { return store_id_; }

  Status CreateCheckpoint(const std::string& dir) override {
    return Guarded("CreateCheckpoint", [&]() -> Status {
      std::error_code ec;
      if (std::filesystem::exists(dir, ec)) {
        return Status::AlreadyExists("checkpoint target " + dir + " already exists");
      }
      rocksdb::Checkpoint* raw = nullptr;
      rocksdb::Status s = rocksdb::Checkpoint::Create(db_.get(), &raw);
      if (!s.ok()) return FromRocks(s, "creating a checkpoint object");
      std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
      // log_size_for_flush = 0: flush the memtables first, so the copy needs
      // little WAL; with several column families RocksDB still copies the live
      // WAL, which keeps the families consistent with each other.
      s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
      if (!s.ok()) return FromRocks(s, "creating the checkpoint " + dir);
      return Status::Ok();
    });
  }

  Result<std::string> LiveVersion() override {
    return Guarded("LiveVersion", [&]() -> Result<std::string> {
      auto live = GetRaw(kMeta, kLiveVersionKey);
      if (!live.ok()) return live.status();
      return live->value_or("");
    });
  }

  Status SetLive(const std::string& version, const EventRecord& event) override {
    return Guarded("SetLive", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      auto model = GetRecord(kModels, version, DecodeModel);
      if (!model.ok()) return model.status();
      if (!model->has_value()) {
        return Status::NotFound("model version '" + version +
                                "' is not in the registry (list versions with `rlaifctl models`)");
      }
      auto previous = GetRaw(kMeta, kLiveVersionKey);
      if (!previous.ok()) return previous.status();
      const int64_t now = event.at_ms != 0 ? event.at_ms : NowMs();
      rocksdb::WriteBatch batch;
      if (previous->has_value() && **previous != version) {
        auto old = GetRecord(kModels, **previous, DecodeModel);
        if (!old.ok()) return old.status();
        if (old->has_value()) {
          (*old)->state = "retired";
          batch.Put(handles_[kModels], (*old)->version, EncodeModel(**old));
        } else {
          spdlog::warn("store {}: previous live model '{}' has no registry record", options_.path,
                       **previous);
        }
      }
      ModelRecord& live = **model;
      // A version the gate refused (or held) made live by hand: its reason
      // says so, not only the gate's verdict (which would read as if it
      // were not serving).
      if (live.state == "rejected" && live.reason.rfind("promoted by ", 0) != 0) {
        live.reason = "promoted by " + event.actor + " (" + event.message +
                      ") over the gate's decision: " + live.reason;
      }
      live.state = "live";
      live.promoted_at_ms = now;
      batch.Put(handles_[kModels], version, EncodeModel(live));
      batch.Put(handles_[kMeta], kLiveVersionKey, version);
      EventRecord e = event;
      e.at_ms = now;
      AddEvent(e, &batch);
      return Commit(&batch, counters_, "making model " + version + " live");
    });
  }

  Status AppendEvent(const EventRecord& event) override {
    return Guarded("AppendEvent", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      rocksdb::WriteBatch batch;
      EventRecord e = event;
      if (e.at_ms == 0) e.at_ms = NowMs();
      AddEvent(e, &batch);
      return Commit(&batch, counters_, "appending a " + e.kind + " event");
    });
  }

  Status CheckWritable() override {
    return Guarded("CheckWritable", [&]() -> Status {
      std::lock_guard lock(write_mu_);
      rocksdb::WriteBatch batch;
      batch.Put(handles_[kMeta], "writable_probe_at_ms", std::to_string(NowMs()));
      return Commit(&batch, counters_, "probing whether the store is writable");
    });
  }

  Result<std::vector<EventRecord>> RecentEvents(size_t max) override {
    return Guarded("RecentEvents", [&]() -> Result<std::vector<EventRecord>> {
      std::vector<EventRecord> out;
      std::unique_ptr<rocksdb::Iterator> it(
          db_->NewIterator(rocksdb::ReadOptions(), handles_[kEvents]));
      for (it->SeekToLast(); it->Valid() && out.size() < max; it->Prev()) {
        auto e = DecodeEvent(it->value().ToString());
        if (!e.ok()) return RecordCorruption(kEvents, it->key().ToStringView(), e.status());
        out.push_back(std::move(*e));
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading events");
      return out;
    });
  }

 private:
  // `what` names the operation, e.g. "ingest commit for /var/log/x.jsonl".
  Status FromRocks(const rocksdb::Status& s, const std::string& what) const {
    std::string msg = what + " failed on store " + options_.path + ": " + s.ToString();
    if (s.IsNoSpace()) msg += " (free space on that filesystem; writes resume once it is writable)";
    if (s.IsCorruption()) return Status::Corruption(msg);
    if (s.IsNotFound()) return Status::NotFound(msg);
    if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return Status::Unavailable(msg);
    return Status::IoError(msg);
  }

  Status RecordCorruption(Cf c, std::string_view key, const Status& decode) const {
    return Status::Corruption(std::string(kCfNames[c]) + " record '" + Printable(key) +
                              "' in store " + options_.path + ": " + decode.message());
  }

  Result<std::optional<std::string>> GetRaw(Cf c, const std::string& key,
                                            const rocksdb::Snapshot* snapshot = nullptr) const {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    std::string value;
    rocksdb::Status s = db_->Get(ro, handles_[c], key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) {
      return FromRocks(s, std::string("reading ") + kCfNames[c] + " key '" + Printable(key) + "'");
    }
    return std::optional<std::string>(std::move(value));
  }

  Result<bool> Exists(Cf c, const std::string& key) const {
    auto raw = GetRaw(c, key);
    if (!raw.ok()) return raw.status();
    return raw->has_value();
  }

  template <typename T>
  Result<std::optional<T>> GetRecord(Cf c, const std::string& key,
                                     Result<T> (*decode)(const std::string&),
                                     const rocksdb::Snapshot* snapshot = nullptr) const {
    auto raw = GetRaw(c, key, snapshot);
    if (!raw.ok()) return raw.status();
    if (!raw->has_value()) return std::optional<T>();
    Result<T> record = decode(**raw);
    if (!record.ok()) return RecordCorruption(c, key, record.status());
    return std::optional<T>(std::move(*record));
  }

  // Visits family `c` in key order on a snapshot; a record that fails to
  // decode stops the scan with kCorruption naming its key.
  template <typename T>
  Status Scan(Cf c, Result<T> (*decode)(const std::string&),
              const std::function<bool(const T&)>& fn) const {
    rocksdb::ManagedSnapshot snapshot(db_.get());
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot.snapshot();
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[c]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Result<T> record = decode(it->value().ToString());
      if (!record.ok()) return RecordCorruption(c, it->key().ToStringView(), record.status());
      if (!fn(*record)) break;
    }
    if (!it->status().ok()) return FromRocks(it->status(), std::string("scanning ") + kCfNames[c]);
    return Status::Ok();
  }

  Result<int64_t> ParseCounter(std::string_view key, const std::string& value) const {
    int64_t v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size()) {
      return Status::Corruption("meta key '" + std::string(key) + "' in store " + options_.path +
                                " holds '" + Printable(value) + "', not an integer");
    }
    return v;
  }

  Status LoadCounters() {
    Counters loaded;
    bool committed_known = false;
    for (const CounterField& f : kCounterFields) {
      auto raw = GetRaw(kMeta, f.key);
      if (!raw.ok()) return raw.status();
      if (!raw->has_value()) continue;
      auto v = ParseCounter(f.key, **raw);
      if (!v.ok()) return v.status();
      loaded.*f.field = *v;
      committed_known = committed_known || f.field == &Counters::labels_committed;
    }
    // A store from before the counter: nothing was ever deleted from it.
    if (!committed_known) loaded.labels_committed = loaded.labels;
    std::lock_guard lock(counts_mu_);
    counters_ = loaded;
    return Status::Ok();
  }

  // Deletes up to `n` of the oldest committed generate-queue items in `batch`
  // (items added by `batch` itself are newer than every committed one).
  // Requires write_mu_.
  Status EvictOldestGenerate(int64_t n, rocksdb::WriteBatch* batch, Counters* next,
                             int64_t* evicted) {
    const std::string prefix(1, static_cast<char>(Stage::kGenerate));
    const std::string upper(1, static_cast<char>(static_cast<uint8_t>(Stage::kGenerate) + 1));
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kQueue]));
    for (it->Seek(prefix); it->Valid() && *evicted < n; it->Next()) {
      batch->Delete(handles_[kQueue], it->key());
      --next->queue_generate;
      ++*evicted;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "reading the generate queue");
    return Status::Ok();
  }

  // Removes `item` from `stage`'s queue in `batch` if it is still queued.
  // Returns whether it was; an empty key means "no queue item" (e.g. a human
  // label) and returns false. Requires write_mu_.
  Result<bool> RemoveWorkItem(Stage stage, const WorkItem& item, rocksdb::WriteBatch* batch,
                              Counters* next) {
    if (item.key.empty()) return false;
    if (static_cast<uint8_t>(item.key[0]) != static_cast<uint8_t>(stage)) {
      return Status::InvalidArgument(std::string("work item for '") + item.id +
                                     "' is not from the " + StageName(stage) + " queue");
    }
    auto exists = Exists(kQueue, item.key);
    if (!exists.ok()) return exists.status();
    if (!*exists) return false;
    batch->Delete(handles_[kQueue], item.key);
    --(stage == Stage::kGenerate ? next->queue_generate : next->queue_judge);
    return true;
  }

  // Requires write_mu_. Sequence numbers are never reused, even if the batch
  // fails, so a gap is harmless and a collision impossible.
  std::string NextSeqKey(int64_t ms, rocksdb::WriteBatch* batch) {
    std::string key = SeqKey(ms, next_seq_++);
    batch->Put(handles_[kMeta], kNextSeqKey, std::to_string(next_seq_));
    return key;
  }

  // Requires write_mu_. A rejected log line (stage "ingest") goes to
  // kRejects, which PruneRejects bounds; every other dead letter to kDead.
  void AddDeadLetter(const DeadLetter& dead, rocksdb::WriteBatch* batch, Counters* next) {
    DeadLetter d = dead;
    if (d.at_ms == 0) d.at_ms = NowMs();
    if (d.raw.size() > kMaxDeadRawBytes) d.raw.resize(kMaxDeadRawBytes);
    const bool reject = d.stage == "ingest";
    batch->Put(handles_[reject ? kRejects : kDead], NextSeqKey(d.at_ms, batch),
               EncodeDeadLetter(d));
    ++next->dead;
    if (reject) ++next->rejects;
  }

  // Requires write_mu_. Deletes, in `batch`, the oldest rejected lines' dead
  // letters over options_.max_rejected_lines (0: no bound). They were
  // counted in rlaif_ingest_rejected_total when written, so what goes is the
  // text of the oldest examples, never a count. Those in `batch` itself are
  // not seen (CommitIngestBatch writes at most the bound of its own).
  // `*floor` is set to the first key kept: once the batch is committed the
  // caller stores it in rejects_floor_, and the next prune seeks there
  // instead of walking this one's tombstones (they stay until compaction).
  // Keys below the floor (a clock stepped back) are pruned after those above.
  Status PruneRejects(rocksdb::WriteBatch* batch, Counters* next, int64_t* pruned,
                      std::string* floor) {
    if (options_.max_rejected_lines <= 0 || next->rejects <= options_.max_rejected_lines) {
      return Status::Ok();
    }
    const int64_t n = next->rejects - options_.max_rejected_lines;
    int64_t done = 0;
    const rocksdb::Slice bound(rejects_floor_);
    for (const bool above : {true, false}) {
      if (!above && (rejects_floor_.empty() || done == n)) break;
      rocksdb::ReadOptions ro;
      if (!rejects_floor_.empty())
        (above ? ro.iterate_lower_bound : ro.iterate_upper_bound) = &bound;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, handles_[kRejects]));
      std::string last;
      for (it->SeekToFirst(); it->Valid() && done < n; it->Next()) {
        batch->Delete(handles_[kRejects], it->key());
        last = it->key().ToString();
        ++done;
      }
      if (!it->status().ok()) return FromRocks(it->status(), "reading the oldest rejected lines");
      // The next prune starts at the first key kept, or (everything stored
      // went) just past the last one deleted: never inside the tombstones.
      if (above && it->Valid()) {
        *floor = it->key().ToString();
      } else if (above && !last.empty()) {
        *floor = last + '\0';
      }
    }
    next->rejects -= done;
    next->dead -= done;
    *pruned += done;
    return Status::Ok();
  }

  void AddEvent(const EventRecord& event, rocksdb::WriteBatch* batch) {
    batch->Put(handles_[kEvents], NextSeqKey(event.at_ms, batch), EncodeEvent(event));
  }

  // Adds `next` counters to `batch`, writes it, and publishes `next` on
  // success. Requires write_mu_. A failed batch is not applied, so the cache
  // stays as it was; counters and records share batches, so they agree on disk.
  // kIoError when the store's filesystem has less free space than the reserve
  // (StoreOptions::min_free_bytes), so that RocksDB never meets a full disk.
  Status FreeSpaceStatus() const override { return CheckFreeSpace("writes"); }

  // StoreOptions::min_free_bytes for the filesystem `fs` describes.
  int64_t ReserveBytes(const struct statvfs& fs) const {
    const uint64_t unit = fs.f_frsize ? fs.f_frsize : fs.f_bsize;
    if (options_.min_free_bytes >= 0) return options_.min_free_bytes;
    return std::clamp<int64_t>(static_cast<int64_t>(fs.f_blocks * unit / 20), 1 << 20,
                               int64_t{128} << 20);
  }

  Status CheckFreeSpace(const std::string& what) const {
    if (options_.min_free_bytes == 0) return Status::Ok();
    struct statvfs fs {};
    if (statvfs(options_.path.c_str(), &fs) != 0) return Status::Ok();  // RocksDB will tell
    const uint64_t unit = fs.f_frsize ? fs.f_frsize : fs.f_bsize;
    const int64_t free_bytes = static_cast<int64_t>(fs.f_bavail * unit);
    const int64_t reserve = ReserveBytes(fs);
    if (free_bytes >= reserve) return Status::Ok();
    return Status::IoError(what + " refused on store " + options_.path +
                           ": no space left: " + std::to_string(free_bytes >> 10) +
                           " KiB free, below the reserve of " + std::to_string(reserve >> 10) +
                           " KiB (free space on that filesystem; writes resume once it is "
                           "writable)");
  }

  Status Commit(rocksdb::WriteBatch* batch, const Counters& next, const std::string& what) {
    RLAIF_RETURN_IF_ERROR(CheckFreeSpace(what));
    if (resume_needed_) {
      // A failed write (e.g. disk full) stops RocksDB writes until Resume.
      rocksdb::Status s = db_->Resume();
      if (!s.ok()) return FromRocks(s, what + " (resuming after an earlier write error)");
      resume_needed_ = false;
      spdlog::info("store {}: writable again", options_.path);
    }
    for (const CounterField& f : kCounterFields) {
      batch->Put(handles_[kMeta], f.key, std::to_string(next.*f.field));
    }
    rocksdb::Status s = db_->Write(write_options_, batch);
    if (!s.ok()) {
      resume_needed_ = true;
      return FromRocks(s, what);
    }
    std::lock_guard lock(counts_mu_);
    counters_ = next;
    return Status::Ok();
  }

  const StoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> all_handles_;  // every opened family; owned
  std::array<rocksdb::ColumnFamilyHandle*, kNumCf> handles_;
  rocksdb::WriteOptions write_options_;

  std::mutex write_mu_;         // serializes every write (and its read-checks)
  // While PurgeOlderThan runs (guarded by write_mu_): ids queued again since
  // it read the queue (RequeueDeadLetters, QueueJudgeBackfill), which it keeps.
  bool purging_ = false;
  std::string store_id_;  // meta kStoreIdKey, set by Init
  std::unordered_set<std::string> queued_while_purging_;
  std::mutex backfill_mu_;      // one QueueJudgeBackfill at a time (its scan is outside write_mu_)
  uint64_t next_seq_ = 0;       // guarded by write_mu_
  std::string rejects_floor_;   // guarded by write_mu_: first kRejects key after the last prune
  bool resume_needed_ = false;  // guarded by write_mu_
  // Written with both write_mu_ and counts_mu_ held; read under either.
  std::mutex counts_mu_;
  Counters counters_;
};

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  return Guarded("Open", [&]() -> Result<std::unique_ptr<Store>> {
    if (options.path.empty()) {
      return Status::InvalidArgument("store path is empty: set the storage path in the config");
    }
    std::error_code ec;
    std::filesystem::create_directories(options.path, ec);
    if (ec) {
      return Status::IoError("cannot create store directory " + options.path + ": " + ec.message());
    }
    rocksdb::DBOptions db_options;
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    db_options.info_log = std::make_shared<SpdlogRocksLogger>(options.path);
    // A WAL file goes only once every family with writes in it has flushed;
    // rarely written families (events, sources, meta) would keep old WAL
    // files for as long. RocksDB's default bound is 4x all write buffers
    // (here up to 5 GB); at this one it flushes the families holding the
    // oldest WAL. Measured in a drill: 5 WAL files, 314 MB, beside 190 MB
    // of values.
    db_options.max_total_wal_size = 256ull << 20;

    // Bloom filters: most existence checks (ingest dedupe, redo checks) miss.
    rocksdb::BlockBasedTableOptions table_options;
    table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table_options));
    // Compression: none for L0/L1, which are rewritten soon by compaction
    // (random content-hash keys make every L0->L1 compaction touch all of
    // L1), LZ4 below (cheaper than the default snappy; measured with
    // bench/ingest.sh, where snappy took ~20% of one core).
    {
      const auto supported = rocksdb::GetSupportedCompressions();
      const bool lz4 = std::find(supported.begin(), supported.end(),
                                 rocksdb::kLZ4Compression) != supported.end();
      const rocksdb::CompressionType deep = lz4 ? rocksdb::kLZ4Compression : cf_options.compression;
      cf_options.compression_per_level = {rocksdb::kNoCompression, rocksdb::kNoCompression, deep,
                                          deep, deep, deep, deep};
    }
    // Most point lookups miss (ingest dedupe, redo checks): a memtable bloom
    // filter answers them without walking the skip list.
    cf_options.memtable_whole_key_filtering = true;
    cf_options.memtable_prefix_bloom_size_ratio = 0.02;
    if (options.write_buffer_bytes > 0) {
      db_options.db_write_buffer_size = options.write_buffer_bytes;
      cf_options.write_buffer_size =
          std::min<size_t>(cf_options.write_buffer_size, options.write_buffer_bytes / 2);
    }

    // RocksDB refuses to open a database without naming all its families.
    std::vector<std::string> names;
    if (!rocksdb::DB::ListColumnFamilies(db_options, options.path, &names).ok()) names.clear();
    if (std::find(names.begin(), names.end(), rocksdb::kDefaultColumnFamilyName) == names.end()) {
      names.push_back(rocksdb::kDefaultColumnFamilyName);
    }
    for (const char* name : kCfNames) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    // Prompts and pairs are large values (KBs of text) under random
    // content-hash keys, written once and never updated: key-value separation
    // (blob files) writes each value once instead of rewriting it in every
    // compaction. Reads are unchanged for callers.
    rocksdb::ColumnFamilyOptions blob_options = cf_options;
    blob_options.enable_blob_files = true;
    blob_options.min_blob_size = 512;
    blob_options.enable_blob_garbage_collection = options.blob_gc;
    blob_options.blob_compression_type =
        options.compress_blobs ? cf_options.compression_per_level.back() : rocksdb::kNoCompression;
    for (const std::string& name : names) {
      const bool blobs = name == kCfNames[kPrompts] || name == kCfNames[kPairs];
      descriptors.emplace_back(name, blobs ? blob_options : cf_options);
    }

    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> all_handles;
    rocksdb::Status s =
        rocksdb::DB::Open(db_options, options.path, descriptors, &all_handles, &raw);
    if (!s.ok()) {
      std::string msg = "cannot open store " + options.path + ": " + s.ToString();
      const std::string what = s.ToString();
      if (what.find("Permission denied") != std::string::npos) {
        msg += " (the store is not writable by this process (uid " + std::to_string(getuid()) +
               "): after a restore or a copy as root, chown -R the data_dir to the service user)";
      } else if (what.find("Read-only file system") != std::string::npos) {
        msg += " (the data_dir is on a read-only filesystem)";
      } else if (what.find("lock") != std::string::npos) {
        msg += " (another rlaifd, or this process, has it open: stop it or use another path)";
      }
      return Status::IoError(msg);
    }
    std::unique_ptr<rocksdb::DB> db(raw);
    std::array<rocksdb::ColumnFamilyHandle*, kNumCf> handles{};
    for (size_t i = 0; i < names.size(); ++i) {
      for (size_t c = 0; c < kNumCf; ++c) {
        if (names[i] == kCfNames[c]) handles[c] = all_handles[i];
      }
    }
    auto store =
        std::make_unique<RocksStore>(options, std::move(db), std::move(all_handles), handles);
    RLAIF_RETURN_IF_ERROR(store->Init());
    StoreCounts c = store->Counts();
    spdlog::info("store {} open: {} prompts, {} pairs, {} labels, {} dead, queues {}/{}",
                 options.path, c.prompts, c.pairs, c.labels, c.dead, c.queue_generate,
                 c.queue_judge);
    return std::unique_ptr<Store>(std::move(store));
  });
}

}  // namespace rlaif::storage
