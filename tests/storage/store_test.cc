// Store on a real RocksDB database in a temporary directory.
#include "rlaif/storage/store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rlaif/common/disk.h"
#include "test_util.h"

namespace rlaif::storage {
namespace {

using rlaif::testing::TempDir;

PromptRecord Prompt(const std::string& id, uint64_t offset = 0) {
  PromptRecord p;
  p.id = id;
  p.text = "prompt " + id;
  p.source_path = "/logs/a.jsonl";
  p.source_offset = offset;
  p.ingested_at_ms = 1000;
  return p;
}

SourceCheckpoint Checkpoint(const std::string& path, uint64_t offset) {
  SourceCheckpoint c;
  c.path = path;
  c.device = 1;
  c.inode = 42;
  c.fingerprint = "abcd";
  c.fingerprint_len = 4;
  c.offset = offset;
  c.lines = offset / 10;
  c.updated_at_ms = 5;
  return c;
}

PairRecord Pair(const std::string& id, const std::string& prompt_id) {
  PairRecord p;
  p.id = id;
  p.prompt_id = prompt_id;
  p.prompt = "prompt " + prompt_id;
  p.a.text = "answer a";
  p.b.text = "answer b";
  p.generator = "gen";
  return p;
}

LabelRecord Label(const std::string& pair_id, const std::string& dimension) {
  return LabelRecord{.pair_id = pair_id,
                     .dimension = dimension,
                     .judge = "judge-1",
                     .p_a = 0.9,
                     .verdict_ab = "A",
                     .verdict_ba = "",
                     .source = "ai",
                     .created_at_ms = 0};
}

ModelRecord Model(const std::string& version, int64_t created_at_ms) {
  ModelRecord m;
  m.version = version;
  m.state = "candidate";
  m.dir = "/models/" + version;
  m.created_at_ms = created_at_ms;
  return m;
}

// PurgeOlderThan's stats, or its failure.
Result<PurgeStats> Purge(Store& store, int64_t cutoff_ms,
                         const std::function<bool()>& cancelled = nullptr) {
  PurgeStats stats;
  Status st = store.PurgeOlderThan(cutoff_ms, cancelled, &stats);
  if (!st.ok()) return st;
  return stats;
}

// Prompts p0..p(n-1), ingested long ago (at 1000 ms).
std::vector<PromptRecord> OldPrompts(int n) {
  std::vector<PromptRecord> prompts;
  for (int i = 0; i < n; ++i) {
    PromptRecord p = Prompt("p" + std::to_string(i));
    p.ingested_at_ms = 1000;
    prompts.push_back(p);
  }
  return prompts;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    store_.reset();  // releases the RocksDB lock before opening again
    auto s = Store::Open({.path = dir_.Sub("db")});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  void Ingest(const std::vector<PromptRecord>& prompts, IngestCommitStats* stats = nullptr,
              const std::vector<DeadLetter>& dead = {}) {
    IngestCommitStats local;
    Status s = store_->CommitIngest(Checkpoint("/logs/a.jsonl", 100), prompts, dead, &local);
    ASSERT_TRUE(s.ok()) << s.ToString();
    if (stats != nullptr) *stats = local;
  }

  std::vector<WorkItem> Peek(Stage stage, size_t max = 100) {
    auto items = store_->PeekQueue(stage, max);
    EXPECT_TRUE(items.ok()) << items.status().ToString();
    return items.ok() ? *items : std::vector<WorkItem>{};
  }

  std::vector<DeadLetter> DeadLetters() {
    std::vector<DeadLetter> out;
    Status s = store_->ForEachDeadLetter([&](const DeadLetter& d) {
      out.push_back(d);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::vector<LabelledPair> LabelledPairs() {
    std::vector<LabelledPair> out;
    Status s = store_->ForEachLabelledPair([&](const LabelledPair& lp) {
      out.push_back(lp);
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  // Closes the store and runs `edit` on its RocksDB database opened
  // directly (every family, by name), as an older rlaifd would have left it.
  using Families = std::map<std::string, rocksdb::ColumnFamilyHandle*>;
  void EditRaw(const std::function<void(rocksdb::DB*, const Families&)>& edit) {
    store_.reset();
    rocksdb::DBOptions o;
    std::vector<std::string> names;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(o, dir_.Sub("db"), &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* raw = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir_.Sub("db"), cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    Families by_name;
    for (size_t i = 0; i < names.size(); ++i) by_name[names[i]] = handles[i];
    edit(db.get(), by_name);
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    ASSERT_TRUE(db->Close().ok());
  }

  // Gives up on every queued prompt (an old generate dead letter each).
  void DeadLetterGenerateQueue() {
    for (const WorkItem& item : Peek(Stage::kGenerate, 1000)) {
      ASSERT_TRUE(
          store_->DeadLetterWork(Stage::kGenerate, item, {"generate", "x", "x", item.id, "", 1000})
              .ok());
    }
  }

  // The queued generate item for `prompt_id`.
  WorkItem GenerateItem(const std::string& prompt_id) {
    for (const WorkItem& item : Peek(Stage::kGenerate)) {
      if (item.id == prompt_id) return item;
    }
    ADD_FAILURE() << "no generate work for " << prompt_id;
    return {};
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, OpenRejectsEmptyPath) {
  auto s = Store::Open({});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, SecondOpenOfSameDirectoryFailsCleanly) {
  auto second = Store::Open({.path = dir_.Sub("db")});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(dir_.Sub("db")), std::string::npos)
      << second.status().message();
  // The first handle is unaffected.
  EXPECT_TRUE(store_->AppendEvent({0, "start", "test", "still writable", "{}"}).ok());
}

TEST_F(StoreTest, IngestDedupesAndRecordsCheckpoint) {
  IngestCommitStats stats;
  DeadLetter bad{"ingest", "bad_json", "not JSON", "/logs/a.jsonl:7", "{", 0};
  Ingest({Prompt("p1"), Prompt("p2"), Prompt("p1")}, &stats, {bad});
  EXPECT_EQ(stats.stored, 2);
  EXPECT_EQ(stats.duplicates, 1);

  Ingest({Prompt("p2"), Prompt("p3")}, &stats);
  EXPECT_EQ(stats.stored, 1);
  EXPECT_EQ(stats.duplicates, 1);

  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.prompts, 3);
  EXPECT_EQ(c.queue_generate, 3);
  EXPECT_EQ(c.dead, 1);

  auto p = store_->GetPrompt("p3");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->has_value());
  EXPECT_EQ((*p)->text, "prompt p3");
  auto missing = store_->GetPrompt("nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  auto src = store_->GetSource("/logs/a.jsonl");
  ASSERT_TRUE(src.ok());
  ASSERT_TRUE(src->has_value());
  EXPECT_EQ((*src)->offset, 100u);
  EXPECT_EQ((*src)->inode, 42u);
  EXPECT_FALSE(store_->GetSource("/logs/other").value().has_value());
  ASSERT_TRUE(store_->CommitIngest(Checkpoint("/logs/b.jsonl", 7), {}, {}, nullptr).ok());
  auto sources = store_->ListSources();
  ASSERT_TRUE(sources.ok());
  ASSERT_EQ(sources->size(), 2u);
  EXPECT_EQ((*sources)[1].path, "/logs/b.jsonl");

  std::vector<DeadLetter> dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, "bad_json");
  EXPECT_GT(dead[0].at_ms, 0);  // stamped by the store when the caller left it 0

  EXPECT_EQ(store_->CommitIngest(Checkpoint("", 0), {}, {}, nullptr).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, EverythingPersistsAcrossReopen) {
  Ingest({Prompt("p1"), Prompt("p2")}, nullptr, {DeadLetter{"ingest", "r", "d", "ref", "", 9}});
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {Pair("x1", "p1")}).ok());
  ASSERT_TRUE(store_->CommitLabels(Peek(Stage::kJudge)[0], {Label("x1", "helpful")}).ok());
  ASSERT_TRUE(store_->PutModel(Model("v1", 1)).ok());
  ASSERT_TRUE(store_->SetLive("v1", {0, "promote", "test", "first", "{}"}).ok());
  ASSERT_TRUE(store_->MarkTrained(1).ok());
  const StoreCounts before = store_->Counts();

  Reopen();
  const StoreCounts after = store_->Counts();
  EXPECT_EQ(after.prompts, 2);
  EXPECT_EQ(after.pairs, 1);
  EXPECT_EQ(after.labels, 1);
  EXPECT_EQ(after.dead, 1);
  EXPECT_EQ(after.queue_generate, 1);
  EXPECT_EQ(after.queue_judge, 0);
  EXPECT_EQ(after.labels_since_train, 0);
  EXPECT_EQ(after.prompts, before.prompts);
  EXPECT_EQ(after.labels_since_train, before.labels_since_train);

  EXPECT_TRUE(store_->GetPrompt("p2").value().has_value());
  EXPECT_TRUE(store_->GetPair("x1").value().has_value());
  EXPECT_TRUE(store_->HasLabel("x1", "helpful", "judge-1").value());
  EXPECT_EQ(store_->LiveVersion().value(), "v1");
  EXPECT_EQ(Peek(Stage::kGenerate).size(), 1u);
  EXPECT_EQ(store_->RecentEvents(10).value().size(), 1u);

  // Dead letters and events written after reopening get fresh keys: nothing
  // written before is overwritten, even with the same timestamp.
  ASSERT_TRUE(store_->PutDeadLetter(DeadLetter{"ingest", "r2", "d", "ref", "", 9}).ok());
  ASSERT_TRUE(store_->AppendEvent({0, "start", "test", "", "{}"}).ok());
  EXPECT_EQ(DeadLetters().size(), 2u);
  EXPECT_EQ(store_->Counts().dead, 2);
  EXPECT_EQ(store_->RecentEvents(10).value().size(), 2u);
}

TEST(StoreBlobCompressionTest, ValuesReadBackWhicheverWayTheirBlobFilesWereWritten) {
  TempDir dir;
  const std::string path = dir.Sub("store");
  PromptRecord big = Prompt("big");
  big.text = std::string(4000, 'x') + " compressible";  // over min_blob_size: a blob
  for (bool compress : {true, false, true}) {
    auto s = Store::Open({.path = path, .compress_blobs = compress});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    // Every value written so far (by earlier opens, flushed on close) reads back.
    auto got = (*s)->GetPrompt("big");
    ASSERT_TRUE(got.ok());
    if (got->has_value()) {
      EXPECT_EQ((*got)->text, big.text);
    }
    big.id = "big" + std::to_string(compress) + std::to_string((*s)->Counts().prompts);
    ASSERT_TRUE((*s)->CommitIngest(Checkpoint("/logs/a.jsonl", 1), {big}, {}, nullptr).ok());
    ASSERT_TRUE((*s)->GetPrompt(big.id).value().has_value());
  }
  auto s = Store::Open({.path = path});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->Counts().prompts, 3);
  int n = 0;
  ASSERT_TRUE((*s)->ForEachPrompt([&](const PromptRecord& p) {
                    EXPECT_EQ(p.text, big.text);
                    ++n;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(n, 3);
}

TEST_F(StoreTest, QueueIsOldestFirstAndPeekHonoursMax) {
  // Ids in reverse alphabetical order, so key order within one millisecond
  // would not explain the result.
  for (const char* id : {"z", "y", "x"}) {
    Ingest({Prompt(id)});
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  auto items = Peek(Stage::kGenerate);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].id, "z");
  EXPECT_EQ(items[1].id, "y");
  EXPECT_EQ(items[2].id, "x");
  EXPECT_LT(items[0].enqueued_at_ms, items[2].enqueued_at_ms);
  EXPECT_GT(items[0].enqueued_at_ms, 0);

  auto two = Peek(Stage::kGenerate, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[1].id, "y");
  EXPECT_TRUE(Peek(Stage::kGenerate, 0).empty());
  EXPECT_TRUE(Peek(Stage::kJudge).empty());
  EXPECT_EQ(Peek(Stage::kGenerate).size(), 3u);  // peeking does not consume
}

TEST_F(StoreTest, CommitPairsMovesWorkToJudgeQueue) {
  Ingest({Prompt("p1"), Prompt("p2")});
  WorkItem item = GenerateItem("p1");
  ASSERT_TRUE(store_->CommitPairs(item, {Pair("x1", "p1"), Pair("x2", "p1")}).ok());

  auto gen = Peek(Stage::kGenerate);
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_EQ(gen[0].id, "p2");
  std::set<std::string> judge_ids;
  for (const WorkItem& w : Peek(Stage::kJudge)) judge_ids.insert(w.id);
  EXPECT_EQ(judge_ids, (std::set<std::string>{"x1", "x2"}));

  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.pairs, 2);
  EXPECT_EQ(c.queue_generate, 1);
  EXPECT_EQ(c.queue_judge, 2);
  auto pair = store_->GetPair("x2");
  ASSERT_TRUE(pair.ok() && pair->has_value());
  EXPECT_EQ((*pair)->prompt_id, "p1");
  EXPECT_EQ((*pair)->b.text, "answer b");
}

TEST_F(StoreTest, CommitPairsRedoDoesNotDoubleCount) {
  Ingest({Prompt("p1")});
  WorkItem item = GenerateItem("p1");
  const std::vector<PairRecord> pairs = {Pair("x1", "p1"), Pair("x2", "p1"), Pair("x1", "p1")};
  ASSERT_TRUE(store_->CommitPairs(item, pairs).ok());
  ASSERT_TRUE(store_->CommitPairs(item, pairs).ok());  // redo after a crash

  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.pairs, 2);
  EXPECT_EQ(c.queue_generate, 0);
  EXPECT_EQ(c.queue_judge, 2);
  EXPECT_EQ(Peek(Stage::kJudge).size(), 2u);
  EXPECT_TRUE(Peek(Stage::kGenerate).empty());
}

TEST_F(StoreTest, CompletingWithAnItemFromTheOtherQueueIsRejected) {
  Ingest({Prompt("p1")});
  WorkItem gen = GenerateItem("p1");
  EXPECT_EQ(store_->CommitLabels(gen, {Label("x1", "d")}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Counts().labels, 0);
  EXPECT_EQ(store_->Counts().queue_generate, 1);
}

TEST_F(StoreTest, LabelsJoinWithTheirPairs) {
  Ingest({Prompt("p1")});
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {Pair("x1", "p1"), Pair("x2", "p1")}).ok());
  auto judge = Peek(Stage::kJudge);
  ASSERT_EQ(judge.size(), 2u);

  for (const WorkItem& w : judge) {
    std::vector<LabelRecord> labels = {Label(w.id, "helpful"), Label(w.id, "safe")};
    ASSERT_TRUE(store_->CommitLabels(w, labels).ok());
    ASSERT_TRUE(store_->CommitLabels(w, labels).ok());  // redo: no double count
  }
  // A human label without a queue item, for a pair that does not exist
  // (or that store retention deleted after the caller read it): refused,
  // and nothing of the commit is written, not even its valid labels.
  LabelRecord orphan = Label("ghost", "helpful");
  orphan.source = "human";
  LabelRecord valid = Label("x1", "style");
  valid.source = "human";
  EXPECT_EQ(store_->CommitLabels(WorkItem{}, {valid, orphan}).code(), StatusCode::kNotFound);
  EXPECT_FALSE(store_->HasLabel("x1", "style", "judge-1").value());

  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.labels, 4);
  EXPECT_EQ(c.queue_judge, 0);
  EXPECT_EQ(c.labels_since_train, 4);
  EXPECT_TRUE(store_->HasLabel("x1", "safe", "judge-1").value());
  EXPECT_FALSE(store_->HasLabel("x1", "safe", "other-judge").value());
  EXPECT_FALSE(store_->HasLabel("x3", "safe", "judge-1").value());

  std::vector<LabelledPair> joined = LabelledPairs();
  ASSERT_EQ(joined.size(), 4u);
  for (const LabelledPair& lp : joined) {
    EXPECT_EQ(lp.pair.id, lp.label.pair_id);
    EXPECT_EQ(lp.pair.prompt_id, "p1");
    EXPECT_DOUBLE_EQ(lp.label.p_a, 0.9);
  }

  int visited = 0;
  ASSERT_TRUE(store_->ForEachLabelledPair([&](const LabelledPair&) { return ++visited < 2; }).ok());
  EXPECT_EQ(visited, 2);  // stops when the callback returns false

  // One pair's labels, by dimension; not those of a pair whose id starts
  // with this one's.
  ASSERT_TRUE(store_->CommitPairs(WorkItem{}, {Pair("x", "p1")}).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("x", "helpful")}).ok());
  auto of_x1 = store_->LabelsOfPair("x1");
  ASSERT_TRUE(of_x1.ok()) << of_x1.status().ToString();
  ASSERT_EQ(of_x1->size(), 2u);
  EXPECT_EQ((*of_x1)[0].dimension, "helpful");
  EXPECT_EQ((*of_x1)[1].dimension, "safe");
  EXPECT_EQ(store_->LabelsOfPair("x")->size(), 1u);
  EXPECT_TRUE(store_->LabelsOfPair("x3")->empty());
}

TEST_F(StoreTest, DeadLetterWorkRemovesTheItem) {
  Ingest({Prompt("p1"), Prompt("p2")});
  WorkItem item = GenerateItem("p1");
  DeadLetter dead{"generate", "identical_responses", "both responses equal", "p1", "", 0};
  ASSERT_TRUE(store_->DeadLetterWork(Stage::kGenerate, item, dead).ok());
  ASSERT_TRUE(store_->DeadLetterWork(Stage::kGenerate, item, dead).ok());  // already handled

  auto gen = Peek(Stage::kGenerate);
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_EQ(gen[0].id, "p2");
  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.queue_generate, 1);
  EXPECT_EQ(c.dead, 1);
  std::vector<DeadLetter> letters = DeadLetters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].reason, "identical_responses");
  EXPECT_EQ(store_->DeadLetterWork(Stage::kJudge, gen[0], dead).code(),
            StatusCode::kInvalidArgument);
}

// A dimension added after pairs were judged: the pairs this judge labelled
// but not on every dimension are queued again (up to a bound; the rest on
// the next call), never those already queued or dead-lettered, nor those
// labelled only by others; the counters follow.
TEST_F(StoreTest, QueueJudgeBackfillQueuesJudgedPairsThatLackADimension) {
  Ingest({Prompt("p1")});
  std::vector<PairRecord> pairs;
  for (const char* id : {"a", "b", "c", "d", "e", "f", "g"}) pairs.push_back(Pair(id, "p1"));
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), pairs).ok());
  auto judge_item = [&](const std::string& id) {
    for (const WorkItem& item : Peek(Stage::kJudge)) {
      if (item.id == id) return item;
    }
    ADD_FAILURE() << "no judge work for " << id;
    return WorkItem{};
  };
  // a, b, c: judged on x. d: on x and y. e: on x so far, still queued.
  // f: labelled by an earlier judge only. g: judged on x, then dead-lettered.
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(store_->CommitLabels(judge_item(id), {Label(id, "x")}).ok());
  }
  ASSERT_TRUE(store_->CommitLabels(judge_item("d"), {Label("d", "x"), Label("d", "y")}).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("e", "x")}).ok());
  LabelRecord old = Label("f", "x");
  old.judge = "judge-0";
  ASSERT_TRUE(store_->CommitLabels(judge_item("f"), {old}).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("g", "x")}).ok());
  ASSERT_TRUE(store_
                  ->DeadLetterWork(Stage::kJudge, judge_item("g"),
                                   {"judge", "upstream_rejected", "detail", "g", "", 0})
                  .ok());
  ASSERT_EQ(store_->Counts().queue_judge, 1);  // e
  const std::vector<std::string> dims = {"x", "y"};

  // Nothing lacks x; an unknown judge has labelled nothing.
  auto none = store_->QueueJudgeBackfill(dims, "x", "judge-1", 100);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->queued, 0);
  EXPECT_FALSE(none->more);
  EXPECT_EQ(store_->QueueJudgeBackfill(dims, "", "judge-9", 100)->queued, 0);

  auto first = store_->QueueJudgeBackfill(dims, "y", "judge-1", 2);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->queued, 2);
  EXPECT_TRUE(first->more);
  EXPECT_EQ(first->already_queued, 1);  // e
  EXPECT_EQ(first->dead_lettered, 1);   // g
  EXPECT_EQ(first->missing, (std::map<std::string, int64_t>{{"y", 2}}));
  auto rest = store_->QueueJudgeBackfill(dims, "", "judge-1", 100);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(rest->queued, 1);
  EXPECT_FALSE(rest->more);
  EXPECT_EQ(rest->already_queued, 3);
  auto again = store_->QueueJudgeBackfill(dims, "", "judge-1", 100);
  EXPECT_EQ(again->queued, 0);

  std::set<std::string> queued;
  for (const WorkItem& item : Peek(Stage::kJudge)) queued.insert(item.id);
  EXPECT_EQ(queued, (std::set<std::string>{"a", "b", "c", "e"}));
  EXPECT_EQ(store_->Counts().queue_judge, 4);
  Reopen();
  EXPECT_EQ(store_->Counts().queue_judge, 4);
  EXPECT_EQ(store_->Counts().dead, 1);
}

// Re-queueing dead letters: by stage and reason, oldest first, up to a
// bound; ingest dead letters and those whose record is gone stay; the
// counters follow; it survives a reopen.
TEST_F(StoreTest, RequeueDeadLettersQueuesTheirItemsAgain) {
  Ingest({Prompt("p1"), Prompt("p2"), Prompt("p3")});
  for (const char* id : {"p1", "p2", "p3"}) {
    DeadLetter d{"generate", std::string(id) == "p3" ? "upstream_rejected" : "identical_responses",
                 "detail",   id,
                 "",         0};
    ASSERT_TRUE(store_->DeadLetterWork(Stage::kGenerate, GenerateItem(id), d).ok());
  }
  ASSERT_TRUE(store_->PutDeadLetter({"ingest", "bad_json", "x", "app.jsonl:0", "{", 0}).ok());
  ASSERT_TRUE(store_->PutDeadLetter({"generate", "identical_responses", "x", "gone", "", 0}).ok());
  ASSERT_EQ(store_->Counts().dead, 5);
  ASSERT_EQ(store_->Counts().queue_generate, 0);

  // The judge stage has none; a reason filter; a bound of 1 (oldest first).
  auto none = store_->RequeueDeadLetters(Stage::kJudge, "", 100);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->requeued, 0);
  auto one = store_->RequeueDeadLetters(Stage::kGenerate, "identical_responses", 1);
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->requeued, 1);
  auto gen = Peek(Stage::kGenerate);
  ASSERT_EQ(gen.size(), 1u);
  EXPECT_EQ(gen[0].id, "p1");
  auto rest = store_->RequeueDeadLetters(Stage::kGenerate, "identical_responses", 100);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->requeued, 1);  // p2
  EXPECT_EQ(rest->skipped, 1);   // "gone": no such prompt, kept
  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.queue_generate, 2);
  EXPECT_EQ(c.dead, 3);  // p3 (another reason), the ingest line, "gone"

  // The re-queued item is an ordinary work item: it can fail again.
  gen = Peek(Stage::kGenerate);
  ASSERT_EQ(gen.size(), 2u);
  ASSERT_TRUE(store_
                  ->DeadLetterWork(Stage::kGenerate, gen[1],
                                   {"generate", "identical_responses", "again", gen[1].id, "", 0})
                  .ok());
  Reopen();
  c = store_->Counts();
  EXPECT_EQ(c.queue_generate, 1);
  EXPECT_EQ(c.dead, 4);
  std::multiset<std::string> refs;
  for (const DeadLetter& d : DeadLetters()) refs.insert(d.ref);
  EXPECT_EQ(refs, (std::multiset<std::string>{"p2", "p3", "app.jsonl:0", "gone"}));
}

// Rejected log lines are dead letters of their own, bounded by
// max_rejected_lines: the oldest go first, the other stages' dead letters
// never, the counts follow (also across a reopen), and the export stays in
// time order across both kinds.
TEST_F(StoreTest, RejectedLinesAreBoundedOldestFirst) {
  store_.reset();
  auto opened = Store::Open({.path = dir_.Sub("db"), .max_rejected_lines = 5});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
  Ingest({Prompt("p1")});
  ASSERT_TRUE(store_
                  ->DeadLetterWork(Stage::kGenerate, GenerateItem("p1"),
                                   {"generate", "identical_responses", "x", "p1", "", 0})
                  .ok());
  int64_t pruned = 0;
  int line = 0;
  auto reject = [&](int n) {
    std::vector<DeadLetter> dead;
    for (int i = 0; i < n; ++i) {
      dead.push_back({"ingest", "bad_json", "x", "a.jsonl:" + std::to_string(line++), "{", 0});
    }
    IngestCommitStats stats;
    Ingest({}, &stats, dead);
    pruned += stats.rejects_pruned;
  };
  for (int i = 0; i < 4; ++i) reject(2);  // 8 lines, 3 over
  EXPECT_EQ(pruned, 3);
  EXPECT_EQ(store_->Counts().dead, 6);  // 5 lines + the generate dead letter
  auto refs = [&] {
    std::vector<std::string> out;
    for (const DeadLetter& d : DeadLetters()) out.push_back(d.ref);
    return out;
  };
  EXPECT_EQ(refs(), (std::vector<std::string>{"p1", "a.jsonl:3", "a.jsonl:4", "a.jsonl:5",
                                              "a.jsonl:6", "a.jsonl:7"}));

  // A batch over the bound on its own: its oldest are not written; the next
  // prune finds the oldest past the previous prune's deletions.
  reject(7);  // lines 8..14: the 5 stored go, and lines 8 and 9
  EXPECT_EQ(store_->Counts().dead, 6);
  reject(1);  // line 15: line 10 goes
  EXPECT_EQ(pruned, 3 + 5 + 2 + 1);
  EXPECT_EQ(refs(), (std::vector<std::string>{"p1", "a.jsonl:11", "a.jsonl:12", "a.jsonl:13",
                                              "a.jsonl:14", "a.jsonl:15"}));

  // After a reopen (the in-memory floor is gone) and with a clock stepped
  // back (keys below the previous prune's floor): still the bound, and the
  // keys above the floor go first.
  store_.reset();
  opened = Store::Open({.path = dir_.Sub("db"), .max_rejected_lines = 5});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
  EXPECT_EQ(store_->Counts().dead, 6);
  reject(1);  // line 16: line 11 goes
  ASSERT_TRUE(store_->PutDeadLetter({"ingest", "bad_json", "x", "old:0", "{", 1}).ok());
  ASSERT_TRUE(store_->PutDeadLetter({"ingest", "bad_json", "x", "old:1", "{", 1}).ok());
  EXPECT_EQ(store_->Counts().dead, 6);
  std::vector<std::string> now = refs();
  EXPECT_EQ(now.size(), 6u);
  EXPECT_EQ(std::count(now.begin(), now.end(), "a.jsonl:12"), 0);
  EXPECT_EQ(std::count(now.begin(), now.end(), "a.jsonl:13"), 0);
  reject(5);  // lines 17..21: all older ones go, "old:*" included
  EXPECT_EQ(refs(), (std::vector<std::string>{"p1", "a.jsonl:17", "a.jsonl:18", "a.jsonl:19",
                                              "a.jsonl:20", "a.jsonl:21"}));
  EXPECT_EQ(store_->Counts().dead, 6);

  // Requeue never matches rejected lines, and the generate dead letter is intact.
  auto r = store_->RequeueDeadLetters(Stage::kGenerate, "", 100);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requeued, 1);
  EXPECT_EQ(store_->Counts().dead, 5);
}

// A store from before count/labels_committed: it starts at the label
// count (nothing was deleted then), so the count since the last run holds.
TEST_F(StoreTest, StoreFromBeforeTheCommittedLabelsCounterKeepsItsCountSinceTraining) {
  Ingest({Prompt("p1")});
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {Pair("pair1", "p1")}).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("pair1", "a")}).ok());
  ASSERT_TRUE(store_->MarkTrained(1).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("pair1", "b")}).ok());
  ASSERT_EQ(store_->Counts().labels_since_train, 1);
  EditRaw([](rocksdb::DB* db, const Families& cf) {
    ASSERT_TRUE(db->Delete({}, cf.at("meta"), "count/labels_committed").ok());
  });
  Reopen();
  EXPECT_EQ(store_->Counts().labels_committed, 2);
  EXPECT_EQ(store_->Counts().labels_since_train, 1);
}

// A store written before rejected lines had their own family: it opens, its
// old rejected lines stay readable (and outside the bound), new ones are
// bounded, and the counts carry on.
TEST_F(StoreTest, StoreFromBeforeTheRejectsFamilyOpens) {
  EditRaw([](rocksdb::DB* db, const Families& cf) {
    ASSERT_TRUE(db->DropColumnFamily(cf.at("rejects")).ok());
    std::string key(16, '\0');  // time 0, sequence 0: the oldest key
    ASSERT_TRUE(db->Put({}, cf.at("dead"), key,
                        EncodeDeadLetter({"ingest", "bad_json", "x", "legacy:0", "{", 1}))
                    .ok());
    ASSERT_TRUE(db->Put({}, cf.at("meta"), "count/dead", "1").ok());
  });
  auto opened = Store::Open({.path = dir_.Sub("db"), .max_rejected_lines = 2});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  store_ = std::move(*opened);
  EXPECT_EQ(store_->Counts().dead, 1);
  std::vector<DeadLetter> dead;
  for (int i = 0; i < 3; ++i)
    dead.push_back({"ingest", "bad_json", "x", "new:" + std::to_string(i), "{", 0});
  IngestCommitStats stats;
  Ingest({}, &stats, dead);
  EXPECT_EQ(stats.rejects_pruned, 1);  // new:0, over the bound within its own batch
  std::vector<std::string> refs;
  for (const DeadLetter& d : DeadLetters()) refs.push_back(d.ref);
  EXPECT_EQ(refs, (std::vector<std::string>{"legacy:0", "new:1", "new:2"}));
  EXPECT_EQ(store_->Counts().dead, 3);
}

TEST_F(StoreTest, RegistryPromotesAndRetires) {
  EXPECT_EQ(store_->LiveVersion().value(), "");
  // Created out of name order: ListModels sorts by creation time.
  ASSERT_TRUE(store_->PutModel(Model("b-second", 200)).ok());
  ASSERT_TRUE(store_->PutModel(Model("a-first", 100)).ok());
  auto models = store_->ListModels();
  ASSERT_TRUE(models.ok());
  ASSERT_EQ(models->size(), 2u);
  EXPECT_EQ((*models)[0].version, "a-first");
  EXPECT_EQ((*models)[1].version, "b-second");

  ASSERT_TRUE(store_->SetLive("a-first", {1000, "promote", "scheduler", "gate passed", "{}"}).ok());
  EXPECT_EQ(store_->LiveVersion().value(), "a-first");
  auto first = store_->GetModel("a-first").value();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->state, "live");
  EXPECT_EQ(first->promoted_at_ms, 1000);

  ASSERT_TRUE(store_->SetLive("b-second", {2000, "promote", "cli", "manual", "{}"}).ok());
  EXPECT_EQ(store_->LiveVersion().value(), "b-second");
  EXPECT_EQ(store_->GetModel("a-first").value()->state, "retired");
  EXPECT_EQ(store_->GetModel("b-second").value()->state, "live");

  Status unknown = store_->SetLive("nope", {3000, "promote", "cli", "", "{}"});
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.message().find("nope"), std::string::npos);
  EXPECT_EQ(store_->LiveVersion().value(), "b-second");
  EXPECT_EQ(store_->GetModel("b-second").value()->state, "live");

  auto events = store_->RecentEvents(10).value();
  ASSERT_EQ(events.size(), 2u);  // the failed promotion left no event
  EXPECT_EQ(events[0].actor, "cli");
  EXPECT_EQ(events[1].actor, "scheduler");
  EXPECT_FALSE(store_->GetModel("nope").value().has_value());

  // One the gate refused, made live by hand: its reason says so.
  ModelRecord refused = Model("c-refused", 300);
  refused.state = "rejected";
  refused.reason = "refused: regresses";
  ASSERT_TRUE(store_->PutModel(refused).ok());
  ASSERT_TRUE(
      store_->SetLive("c-refused", {4000, "promote", "alice", "checked by hand", "{}"}).ok());
  EXPECT_EQ(store_->GetModel("c-refused").value()->reason,
            "promoted by alice (checked by hand) over the gate's decision: refused: regresses");
}

TEST_F(StoreTest, EventsAreNewestFirst) {
  for (int i = 0; i < 5; ++i) {
    // Equal timestamps for the last three: the sequence number keeps them apart.
    int64_t at = i < 2 ? 100 + i : 500;
    ASSERT_TRUE(store_->AppendEvent({at, "train", "scheduler", std::to_string(i), "{}"}).ok());
  }
  auto events = store_->RecentEvents(3);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[0].message, "4");
  EXPECT_EQ((*events)[1].message, "3");
  EXPECT_EQ((*events)[2].message, "2");
  EXPECT_EQ(store_->RecentEvents(100).value().size(), 5u);
  EXPECT_EQ(store_->RecentEvents(100).value().back().message, "0");
  EXPECT_TRUE(store_->RecentEvents(0).value().empty());
}

// Retention: what is older than the cutoff goes (a prompt, a pair with
// its labels, dead letters of every stage), except work still queued and a
// pair labelled since the cutoff; the counters follow, labels_since_train
// does not move for labels already trained on, and a second pass finds
// nothing.
TEST_F(StoreTest, PurgeOlderThanDeletesOldRecordsButNotQueuedOrRecentlyLabelled) {
  constexpr int64_t kCutoff = 10000;
  auto prompt = [](const std::string& id, int64_t at) {
    PromptRecord p = Prompt(id);
    p.ingested_at_ms = at;
    return p;
  };
  Ingest({prompt("p_old1", 1000), prompt("p_old2", 1000), prompt("p_new", 20000),
          prompt("p_oldq", 1000)},
         nullptr,
         {{"ingest", "bad_json", "x", "a.jsonl:1", "{", 1000},
          {"ingest", "bad_json", "x", "a.jsonl:2", "{", 20000}});
  auto pair = [](const std::string& id, const std::string& prompt_id, int64_t at) {
    PairRecord p = Pair(id, prompt_id);
    p.created_at_ms = at;
    return p;
  };
  ASSERT_TRUE(
      store_->CommitPairs(GenerateItem("p_old1"), {pair("pair_old1", "p_old1", 1000)}).ok());
  ASSERT_TRUE(store_
                  ->CommitPairs(GenerateItem("p_old2"), {pair("pair_old2", "p_old2", 1000),
                                                         pair("pair_oldq", "p_old2", 1000)})
                  .ok());
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p_new"), {pair("pair_new", "p_new", 20000)}).ok());
  auto judge_item = [&](const std::string& id) {
    for (const WorkItem& item : Peek(Stage::kJudge)) {
      if (item.id == id) return item;
    }
    ADD_FAILURE() << "no judge work for " << id;
    return WorkItem{};
  };
  auto label = [](const std::string& pair_id, int64_t at) {
    LabelRecord l = Label(pair_id, "overall");
    l.created_at_ms = at;
    return l;
  };
  ASSERT_TRUE(store_->CommitLabels(judge_item("pair_old1"), {label("pair_old1", 2000)}).ok());
  ASSERT_TRUE(store_->CommitLabels(judge_item("pair_old2"), {label("pair_old2", 2000)}).ok());
  ASSERT_TRUE(store_->CommitLabels(judge_item("pair_new"), {label("pair_new", 21000)}).ok());
  LabelRecord human = label("pair_old2", 15000);  // a human label since the cutoff keeps it
  human.judge = "human";
  human.source = "human";
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {human}).ok());
  Ingest({}, nullptr, {{"generate", "identical_responses", "x", "p9", "", 1000}});
  StoreCounts before = store_->Counts();
  ASSERT_EQ(before.prompts, 4);
  ASSERT_EQ(before.pairs, 4);
  ASSERT_EQ(before.labels, 4);
  ASSERT_EQ(before.dead, 3);
  ASSERT_TRUE(store_->MarkTrained(before.labels).ok());
  LabelRecord second = label("pair_new", 22000);
  second.dimension = "style";
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {second}).ok());
  ASSERT_EQ(store_->Counts().labels_since_train, 1);

  auto purged = Purge(*store_, kCutoff, nullptr);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(purged->pairs, 1);               // pair_old1
  EXPECT_EQ(purged->labels, 1);              // its label
  EXPECT_EQ(purged->prompts, 1);  // p_old1 (p_oldq waits for generation, p_old2 for its pair)
  EXPECT_EQ(purged->dead, 2);                // the old rejected line, the old generate dead letter
  EXPECT_EQ(purged->kept_recent_labels, 1);  // pair_old2
  // pair_oldq (judge queue), p_oldq (generate queue), p_old2 (the prompt of a queued pair)
  EXPECT_EQ(purged->kept_queued, 3);
  StoreCounts after = store_->Counts();
  EXPECT_EQ(after.prompts, 3);
  EXPECT_EQ(after.pairs, 3);
  EXPECT_EQ(after.labels, 4);
  EXPECT_EQ(after.dead, 1);
  EXPECT_EQ(after.labels_since_train, 1);
  EXPECT_FALSE(store_->GetPair("pair_old1")->has_value());
  EXPECT_FALSE(store_->HasLabel("pair_old1", "overall", "judge-1").value());
  // A human label for it, read before the pass (the API's GetPair), comes
  // too late: refused, not an orphan.
  LabelRecord late = label("pair_old1", 30000);
  late.judge = "human";
  late.source = "human";
  EXPECT_EQ(store_->CommitLabels(WorkItem{}, {late}).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetPair("pair_old2")->has_value());
  EXPECT_TRUE(store_->GetPair("pair_oldq")->has_value());
  EXPECT_TRUE(store_->GetPrompt("p_oldq")->has_value());
  EXPECT_FALSE(store_->GetPrompt("p_old1")->has_value());
  std::vector<DeadLetter> letters = DeadLetters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].at_ms, 20000);

  auto again = Purge(*store_, kCutoff, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->Deleted(), 0);
  Reopen();  // the counters were committed with the deletions
  StoreCounts reopened = store_->Counts();
  EXPECT_EQ(reopened.prompts, 3);
  EXPECT_EQ(reopened.pairs, 3);
  EXPECT_EQ(reopened.labels, 4);
  EXPECT_EQ(reopened.dead, 1);
  EXPECT_TRUE(store_->GetPrompt("p_old2")->has_value());
  EXPECT_EQ(reopened.labels_since_train, 1);
}

// A purge during a training run: the run's MarkTrained takes the labels
// committed when it started, and deleted labels do not make the next run
// wait for labels that never come.
TEST_F(StoreTest, PurgeDuringARunKeepsTheCountSinceTraining) {
  Ingest({Prompt("p1")});
  PairRecord old = Pair("pair1", "p1");
  old.created_at_ms = 1000;
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {old}).ok());
  LabelRecord l = Label("pair1", "overall");
  l.created_at_ms = 1000;
  ASSERT_TRUE(store_->CommitLabels(Peek(Stage::kJudge)[0], {l}).ok());
  const int64_t run_started_with = store_->Counts().labels_committed;  // the run takes its data
  ASSERT_TRUE(Purge(*store_, 10000, nullptr).ok());
  EXPECT_EQ(store_->Counts().labels, 0);
  ASSERT_TRUE(store_->MarkTrained(run_started_with).ok());  // the run ends
  Ingest({Prompt("p2")});
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p2"), {Pair("pair2", "p2")}).ok());
  LabelRecord fresh = Label("pair2", "overall");
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {fresh}).ok());
  EXPECT_EQ(store_->Counts().labels_since_train, 1);
}

// Batches: hundreds of old records go in several writes; a record queued
// again while the purge runs (a backfill, a re-queued dead letter) is kept.
TEST_F(StoreTest, PurgeOlderThanWorksInBatchesAndKeepsWhatIsQueuedMeanwhile) {
  std::vector<PromptRecord> prompts = OldPrompts(150);
  std::vector<DeadLetter> rejected;
  for (int i = 0; i < 600; ++i) {
    rejected.push_back({"ingest", "bad_json", "x", "a.jsonl:" + std::to_string(i), "{", 1000 + i});
  }
  Ingest(prompts, nullptr, rejected);
  // The prompts leave the generate queue: p0 as a pair (labelled, old), the
  // others as dead letters (old).
  PairRecord pair = Pair("pair0", "p0");
  pair.created_at_ms = 1000;
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p0"), {pair}).ok());
  LabelRecord l = Label("pair0", "overall");
  l.created_at_ms = 1000;
  ASSERT_TRUE(store_->CommitLabels(Peek(Stage::kJudge)[0], {l}).ok());
  DeadLetterGenerateQueue();
  ASSERT_EQ(store_->Counts().queue_generate, 0);
  ASSERT_EQ(store_->Counts().dead, 600 + 149);
  // While the purge reads, pair0 is queued to be judged on a new dimension.
  bool backfilled = false;
  auto purged = Purge(*store_, 10000, [&] {
    if (!backfilled) {
      backfilled = true;
      auto r = store_->QueueJudgeBackfill({"overall", "style"}, "", "judge-1", 100);
      EXPECT_TRUE(r.ok() && r->queued == 1);
    }
    return false;
  });
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(purged->pairs, 0);
  EXPECT_EQ(purged->kept_queued, 2);  // pair0, and p0 (its prompt)
  EXPECT_EQ(purged->prompts, 149);
  EXPECT_EQ(purged->dead, 600 + 149);
  StoreCounts c = store_->Counts();
  EXPECT_EQ(c.prompts, 1);
  EXPECT_EQ(c.pairs, 1);
  EXPECT_EQ(c.dead, 0);
  EXPECT_EQ(c.queue_judge, 1);
  EXPECT_TRUE(DeadLetters().empty());
}

// Bytes of the store's data files (SST and blob files; not the WAL, whose
// preallocated blocks come and go with flushes). RocksDB deletes obsolete
// files in the background, so a file listed may be gone before it is sized:
// it counts nothing.
uint64_t DataFileBytes(const std::string& path) {
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    const std::string ext = e.path().extension().string();
    if (ext != ".sst" && ext != ".blob") continue;
    std::error_code ec;
    const uintmax_t size = e.file_size(ec);
    if (!ec) bytes += size;
  }
  return bytes;
}

// Retention is for disk space: the space of what a pass deletes returns
// within the pass, without an operator's compaction and without new writes
// pushing the deletions out of the memtable. As in production, the old
// records are spread (random keys) among newer ones that were written after
// them and compacted together with them.
TEST(StorePurgeSpaceTest, SpaceOfPurgedRecordsReturns) {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto opened = Store::Open({.path = path, .write_buffer_bytes = 2 << 20, .min_free_bytes = 0});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Store> store = std::move(*opened);
  std::mt19937_64 rng(7);
  auto text = [&](size_t n) {  // incompressible, as LZ4 sees real text's blocks
    std::string t(n, ' ');
    for (char& c : t) c = static_cast<char>('a' + rng() % 26);
    return t;
  };
  auto id = [&] {  // like content hashes: old and new keys interleave
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
    return std::string(buf);
  };
  int64_t old_records = 0;
  auto write = [&](int prompts, int64_t at_ms) {
    for (int batch = 0; batch < prompts / 100; ++batch) {
      std::vector<PromptRecord> ps;
      for (int i = 0; i < 100; ++i) {
        PromptRecord p = Prompt(id());
        p.text = text(1500);
        p.ingested_at_ms = at_ms;
        ps.push_back(p);
      }
      ASSERT_TRUE(store->CommitIngest(Checkpoint("/logs/a.jsonl", 100), ps, {}, nullptr).ok());
      auto items = store->PeekQueue(Stage::kGenerate, 1000);
      ASSERT_TRUE(items.ok());
      for (const WorkItem& item : *items) {
        PairRecord pair = Pair(id(), item.id);
        pair.prompt = text(1500);
        pair.a.text = text(1500);
        pair.b.text = text(1500);
        pair.created_at_ms = at_ms;
        ASSERT_TRUE(store->CommitPairs(item, {pair}).ok());
        auto judge = store->PeekQueue(Stage::kJudge, 1);
        ASSERT_TRUE(judge.ok() && judge->size() == 1u);
        LabelRecord l = Label(pair.id, "overall");
        l.created_at_ms = at_ms;
        ASSERT_TRUE(store->CommitLabels((*judge)[0], {l}).ok());
        if (at_ms < 10000) old_records += 3;
      }
    }
  };
  write(2000, 1000);     // the old half
  write(2000, 1000000);  // then as much, newer
  const uint64_t before = DataFileBytes(path);
  auto purged = Purge(*store, 10000);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  ASSERT_EQ(purged->Deleted(), old_records);
  // The files the compaction made obsolete are deleted by a background
  // thread, maybe just after the pass returns: give it a few seconds.
  uint64_t after = DataFileBytes(path);
  for (int i = 0; i < 50 && after > before * 0.65; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = DataFileBytes(path);
  }
  std::printf(
      "store of %lld records, %lld old: data files %.1f MB before the purge, %.1f MB "
      "after it (%.2f s compacting)\n",
      static_cast<long long>(store->Counts().prompts + store->Counts().pairs +
                             store->Counts().labels + old_records),
      static_cast<long long>(old_records), before / 1e6, after / 1e6, purged->compact_s);
  // Most of the old half's space is back: all but the blob files that
  // also hold newer values (those go when their newer values do).
  EXPECT_LE(after, before * 0.65) << "the space of the deleted records did not return";
  EXPECT_EQ(store->Counts().prompts, 2000);
}

// The identity backup_keep counts backups by: made once, the same after a
// reopen and in a checkpoint (a backup, and a store restored from it);
// another store has another.
TEST_F(StoreTest, IdentityIsKeptByReopenAndCheckpoint) {
  const std::string id = store_->Identity();
  EXPECT_EQ(id.size(), 32u) << id;
  Reopen();
  EXPECT_EQ(store_->Identity(), id);
  ASSERT_TRUE(store_->CreateCheckpoint(dir_.Sub("copy")).ok());
  auto copy = Store::Open({.path = dir_.Sub("copy")});
  ASSERT_TRUE(copy.ok()) << copy.status().ToString();
  EXPECT_EQ((*copy)->Identity(), id);
  auto other = Store::Open({.path = dir_.Sub("other")});
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->Identity(), id);
}

// A stop during a pass: what was committed stays deleted and counted, the
// pass says it was cancelled, and no compaction holds up the shutdown.
TEST_F(StoreTest, PurgeStoppedMidwayKeepsItsCountsAndSkipsTheCompaction) {
  Ingest(OldPrompts(300));
  DeadLetterGenerateQueue();
  PurgeStats stats;  // stopped once a first batch of prompts is deleted
  Status st = store_->PurgeOlderThan(
      10000, [&] { return store_->Counts().prompts < 300; }, &stats);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(stats.cancelled);
  EXPECT_EQ(stats.prompts, 64);  // one batch, then the stop
  EXPECT_EQ(stats.compact_s, 0);
  EXPECT_EQ(store_->Counts().prompts, 300 - 64);
  // The next pass deletes the rest.
  auto rest = Purge(*store_, 10000);
  ASSERT_TRUE(rest.ok());
  EXPECT_FALSE(rest->cancelled);
  EXPECT_EQ(rest->prompts, 300 - 64);
  EXPECT_EQ(store_->Counts().prompts, 0);
}

TEST_F(StoreTest, MarkTrainedCountsLabelsSinceTheSnapshot) {
  Ingest({Prompt("p1")});
  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {Pair("x1", "p1")}).ok());
  auto add_labels = [&](const std::string& pair, std::vector<std::string> dims) {
    std::vector<LabelRecord> labels;
    for (const std::string& d : dims) labels.push_back(Label(pair, d));
    ASSERT_TRUE(store_->CommitLabels(WorkItem{}, labels).ok());
  };
  add_labels("x1", {"a", "b", "c"});
  EXPECT_EQ(store_->Counts().labels_since_train, 3);

  ASSERT_TRUE(store_->MarkTrained(2).ok());  // one label arrived during the run
  EXPECT_EQ(store_->Counts().labels_since_train, 1);
  add_labels("x1", {"d", "e"});
  EXPECT_EQ(store_->Counts().labels_since_train, 3);
  EXPECT_EQ(store_->Counts().labels, 5);

  Reopen();
  EXPECT_EQ(store_->Counts().labels_since_train, 3);
  ASSERT_TRUE(store_->MarkTrained(5).ok());
  EXPECT_EQ(store_->Counts().labels_since_train, 0);
  EXPECT_EQ(store_->MarkTrained(-1).code(), StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, IterationSeesASnapshot) {
  Ingest({Prompt("p1"), Prompt("p2")});
  int seen = 0;
  Status scan = store_->ForEachPrompt([&](const PromptRecord&) {
    if (seen++ == 0) {
      // Writes during the scan are not visible to it.
      Status s = store_->CommitIngest(Checkpoint("/logs/a.jsonl", 200),
                                      {Prompt("p3"), Prompt("p0")}, {}, nullptr);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return true;
  });
  ASSERT_TRUE(scan.ok()) << scan.ToString();
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(store_->Counts().prompts, 4);

  ASSERT_TRUE(store_->CommitPairs(GenerateItem("p1"), {Pair("x1", "p1")}).ok());
  ASSERT_TRUE(store_->CommitLabels(WorkItem{}, {Label("x1", "helpful")}).ok());
  int joined = 0;
  scan = store_->ForEachLabelledPair([&](const LabelledPair&) {
    if (joined++ == 0) {
      EXPECT_TRUE(store_->CommitPairs(GenerateItem("p2"), {Pair("x2", "p2")}).ok());
      EXPECT_TRUE(store_->CommitLabels(WorkItem{}, {Label("x2", "helpful")}).ok());
    }
    return true;
  });
  ASSERT_TRUE(scan.ok()) << scan.ToString();
  EXPECT_EQ(joined, 1);
  EXPECT_EQ(LabelledPairs().size(), 2u);

  int pairs = 0;
  scan = store_->ForEachPair([&](const PairRecord&) { return ++pairs < 1; });
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(pairs, 1);  // stopped early
}

TEST_F(StoreTest, ConcurrentIngestCountsEachPromptOnce) {
  constexpr int kThreads = 4;
  constexpr int kPrompts = 50;
  std::vector<std::thread> threads;
  std::vector<int64_t> stored(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPrompts; ++i) {
        IngestCommitStats stats;
        // Every thread ingests the same ids: only one commit may store each.
        // Built with append: `"lit" + std::to_string()` trips a GCC 12
        // -Wrestrict false positive here.
        std::string path = "/logs/t", id = "p";
        path += std::to_string(t);
        id += std::to_string(i);
        Status s = store_->CommitIngest(Checkpoint(path, i), {Prompt(id)}, {}, &stats);
        EXPECT_TRUE(s.ok()) << s.ToString();
        stored[t] += stats.stored;
      }
    });
  }
  for (auto& th : threads) th.join();
  int64_t total = 0;
  for (int64_t s : stored) total += s;
  EXPECT_EQ(total, kPrompts);
  EXPECT_EQ(store_->Counts().prompts, kPrompts);
  EXPECT_EQ(store_->Counts().queue_generate, kPrompts);
  EXPECT_EQ(Peek(Stage::kGenerate, 1000).size(), static_cast<size_t>(kPrompts));
}

}  // namespace
}  // namespace rlaif::storage
