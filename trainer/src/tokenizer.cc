#include "rlaif/trainer/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <sstream>
#include <unordered_map>

#include "hf_tokenizer.h"
#include "unicode_nfc.h"

namespace rlaif::trainer {

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFormatName = "rlaif-byte-bpe";
constexpr const char* kPretokenizerName = "rlaif-chunks-v1";
// Bounded so that a stream of unique junk cannot grow memory without limit;
// frequent chunks arrive early and stay.
constexpr size_t kMaxCachedChunks = 1 << 18;
// And bounded in bytes (keys + ids): Hugging Face pre-tokens run to 1 KiB.
constexpr size_t kMaxCachedBytes = size_t{64} << 20;

enum class ByteClass { kLetter, kDigit, kSpace, kOther };

ByteClass Classify(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return ByteClass::kLetter;
  if (c >= '0' && c <= '9') return ByteClass::kDigit;
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
    return ByteClass::kSpace;
  }
  return ByteClass::kOther;
}

inline uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
inline int32_t PairLeft(uint64_t key) { return static_cast<int32_t>(key >> 32); }
inline int32_t PairRight(uint64_t key) { return static_cast<int32_t>(key & 0xffffffffu); }

// Replaces every left-to-right occurrence of (a, b) in `syms` by `merged`.
// Returns true if anything was merged.
bool MergePair(std::vector<int32_t>& syms, int32_t a, int32_t b, int32_t merged) {
  size_t out = 0;
  bool changed = false;
  for (size_t i = 0; i < syms.size();) {
    if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
      syms[out++] = merged;
      i += 2;
      changed = true;
    } else {
      syms[out++] = syms[i++];
    }
  }
  syms.resize(out);
  return changed;
}

}  // namespace

std::vector<std::string_view> SplitChunks(std::string_view text) {
  std::vector<std::string_view> chunks;
  const size_t n = text.size();
  size_t i = 0;
  auto cls = [&](size_t k) { return Classify(static_cast<unsigned char>(text[k])); };
  while (i < n) {
    size_t start = i;
    ByteClass c = cls(i);
    if (c == ByteClass::kSpace) {
      // A single space before a non-space starts the next word's chunk.
      if (text[i] == ' ' && i + 1 < n && cls(i + 1) != ByteClass::kSpace) {
        c = cls(i + 1);
        i += 1;
      } else {
        size_t j = i;
        while (j < n && cls(j) == ByteClass::kSpace && j - start < BpeTokenizer::kMaxChunkBytes) {
          ++j;
        }
        // Leave a trailing ' ' to lead the following word (as GPT-2's "\s+(?!\S)").
        if (j < n && cls(j) != ByteClass::kSpace && j - start > 1 && text[j - 1] == ' ') --j;
        chunks.push_back(text.substr(start, j - start));
        i = j;
        continue;
      }
    }
    while (i < n && cls(i) == c && i - start < BpeTokenizer::kMaxChunkBytes) ++i;
    chunks.push_back(text.substr(start, i - start));
  }
  return chunks;
}

std::vector<int32_t> BuildRewardSequence(const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& response, int max_len,
                                         int32_t bos) {
  if (bos >= 0) {
    std::vector<int32_t> seq = BuildRewardSequence(prompt, response, std::max(max_len, 5) - 1);
    seq.insert(seq.begin(), bos);
    return seq;
  }
  const size_t avail = static_cast<size_t>(std::max(max_len, 4)) - 2;  // SEP + END
  const size_t response_share = static_cast<size_t>(max_len) * 3 / 4;
  const size_t response_keep = std::min(
      {response.size(), avail, std::max(response_share, avail - std::min(avail, prompt.size()))});
  const size_t prompt_keep = std::min(prompt.size(), avail - response_keep);
  std::vector<int32_t> seq;
  seq.reserve(prompt_keep + response_keep + 2);
  seq.insert(seq.end(), prompt.end() - static_cast<std::ptrdiff_t>(prompt_keep), prompt.end());
  seq.push_back(BpeTokenizer::kSep);
  seq.insert(seq.end(), response.begin(),
             response.begin() + static_cast<std::ptrdiff_t>(response_keep));
  seq.push_back(BpeTokenizer::kEnd);
  return seq;
}

// Merge ranks (immutable after construction) and the chunk cache (synchronised).
struct BpeTokenizer::EncodeCache {
  std::unordered_map<uint64_t, int32_t> ranks;     // pair -> merge index
  std::unordered_map<std::string, int32_t> whole;  // bytes -> id, with ignore_merges
  // kSentencePiece: one-character tokens, their UTF-8 ("▁" as is) -> id.
  std::unordered_map<std::string, int32_t> chars;
  // kSentencePiece: the one-byte characters' tokens and the "<0xHH>" ones
  // (-1: none).
  int32_t one_byte_chars[256];
  int32_t fallback[256];
  // Non-special added tokens by their first byte, longest first.
  std::vector<std::pair<std::string, int32_t>> added[256];
  bool has_added = false;
  mutable std::shared_mutex mu;
  mutable std::unordered_map<std::string, std::vector<int32_t>> chunks;  // guarded by mu
  mutable size_t bytes = 0;  // of the keys and ids in `chunks`; guarded by mu

  // Appends the ids of `piece` to `ids`: the cached ones, else encode(piece),
  // kept while the cache has room (pieces longer than hf::kMaxPretokenBytes,
  // a SentencePiece-style whole text, are not kept).
  template <typename Encode>
  void Append(std::string_view piece, const Encode& encode, std::vector<int32_t>* ids) const {
    if (piece.size() > hf::kMaxPretokenBytes) {
      const std::vector<int32_t> out = encode(piece);
      ids->insert(ids->end(), out.begin(), out.end());
      return;
    }
    std::string key(piece);
    {
      std::shared_lock lock(mu);
      auto it = chunks.find(key);
      if (it != chunks.end()) {
        ids->insert(ids->end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> out = encode(piece);
    ids->insert(ids->end(), out.begin(), out.end());
    std::unique_lock lock(mu);
    const size_t size = key.size() + out.size() * sizeof(int32_t);
    if (chunks.size() < kMaxCachedChunks && bytes + size <= kMaxCachedBytes &&
        chunks.emplace(std::move(key), std::move(out)).second) {
      bytes += size;
    }
  }
};

BpeTokenizer::BpeTokenizer() : ranks_and_cache_(std::make_unique<EncodeCache>()) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::BuildIndex() {
  token_bytes_.assign(kFirstMerge, std::string());
  for (int b = 0; b < 256; ++b) {
    token_bytes_[kFirstByte + b] = std::string(1, static_cast<char>(b));
    byte_ids_[b] = kFirstByte + b;
  }
  merge_ids_.clear();
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto& [a, b] = merges_[i];
    merge_ids_.push_back(static_cast<int32_t>(token_bytes_.size()));
    token_bytes_.push_back(token_bytes_[a] + token_bytes_[b]);
  }
  BuildRanks();
}

void BpeTokenizer::BuildRanks() {
  auto cache = std::make_unique<EncodeCache>();
  cache->ranks.reserve(merges_.size() * 2);
  for (size_t i = 0; i < merges_.size(); ++i) {
    // A pair listed twice takes its last rank, as Hugging Face's BPE does
    // (merges go into a map); trained tokenizers never repeat a pair.
    cache->ranks[PairKey(merges_[i].first, merges_[i].second)] = static_cast<int32_t>(i);
  }
  if (ignore_merges_) {
    for (size_t id = 0; id < token_bytes_.size(); ++id) {
      if (!token_bytes_[id].empty()) {
        cache->whole.emplace(token_bytes_[id], static_cast<int32_t>(id));
      }
    }
  }
  ranks_and_cache_ = std::move(cache);
}

std::vector<std::string_view> BpeTokenizer::Pretokenize(std::string_view text) const {
  switch (pretokenizer_) {
    case Pretokenizer::kGpt2:
      return hf::SplitGpt2(text);
    case Pretokenizer::kLlama3:
      return hf::SplitLlama3(text, max_digits_);
    case Pretokenizer::kChunks:
    case Pretokenizer::kSentencePiece:  // EncodeSentencePiece
      break;
  }
  return SplitChunks(text);
}

std::string BpeTokenizer::description() const {
  if (is_hugging_face()) return hf_description_;
  return "byte-level BPE trained here (" + std::to_string(vocab_size()) + " ids)";
}

Result<BpeTokenizer> BpeTokenizer::FromHuggingFace(const std::string& json, hf::BpeModel&& model) {
  BpeTokenizer tok;
  tok.pretokenizer_ = model.pretokenizer == hf::Pretokenizer::kGpt2 ? Pretokenizer::kGpt2
                      : model.pretokenizer == hf::Pretokenizer::kLlama3
                          ? Pretokenizer::kLlama3
                          : Pretokenizer::kSentencePiece;
  tok.sp_prepend_ = static_cast<uint8_t>(model.sp_prepend);
  tok.sp_split_ = model.sp_split;
  tok.sp_prepend_first_only_ = model.sp_prepend_first_only;
  tok.sp_unk_ = model.unk_id >= 0 ? kFirstByte + model.unk_id : -1;
  tok.sp_fuse_unk_ = model.fuse_unk;
  tok.max_digits_ = model.max_digits;
  tok.add_prefix_space_ = model.add_prefix_space;
  tok.ignore_merges_ = model.ignore_merges;
  tok.nfc_ = model.nfc;
  tok.template_bos_ = model.template_bos >= 0 ? kFirstByte + model.template_bos : -1;
  // Hugging Face id h is id h + kFirstByte here: 0-2 stay PAD, END, SEP.
  tok.token_bytes_.assign(kFirstByte, std::string());
  for (auto& bytes : model.token_bytes) tok.token_bytes_.push_back(std::move(bytes));
  for (int b = 0; b < 256; ++b) {
    tok.byte_ids_[b] = model.byte_ids[b] >= 0 ? kFirstByte + model.byte_ids[b] : -1;
  }
  tok.merges_.reserve(model.merges.size());
  for (size_t r = 0; r < model.merges.size(); ++r) {
    tok.merges_.emplace_back(kFirstByte + model.merges[r].first,
                             kFirstByte + model.merges[r].second);
    tok.merge_ids_.push_back(kFirstByte + model.merge_ids[r]);
  }
  tok.BuildRanks();
  EncodeCache& cache = *tok.ranks_and_cache_;
  for (int b = 0; b < 256; ++b) {
    cache.one_byte_chars[b] = -1;
    cache.fallback[b] =
        model.fallback_ids[b] >= 0 && tok.pretokenizer_ == Pretokenizer::kSentencePiece
            ? kFirstByte + model.fallback_ids[b]
            : -1;
  }
  for (const auto& [text, id] : model.char_tokens) {
    if (text.size() == 1)
      cache.one_byte_chars[static_cast<unsigned char>(text[0])] = kFirstByte + id;
    cache.chars.emplace(text, kFirstByte + id);
  }
  for (const auto& [text, id] : model.text_added_tokens) {
    cache.added[static_cast<unsigned char>(text[0])].emplace_back(text, kFirstByte + id);
    cache.has_added = true;
  }
  for (auto& list : cache.added) {
    std::stable_sort(list.begin(), list.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
  tok.hf_json_ = json;
  tok.hf_description_ = std::move(model.description);
  if (tok.vocab_size() < kFirstMerge) {
    return Status::InvalidArgument("tokenizer.json has " + std::to_string(tok.vocab_size()) +
                                   " ids with this build's 3 special ids; at least " +
                                   std::to_string(kFirstMerge) + " are needed");
  }
  return tok;
}

Result<BpeTokenizer> BpeTokenizer::Train(const std::vector<std::string_view>& texts,
                                         int vocab_size) {
  if (vocab_size < kFirstMerge) {
    return Status::InvalidArgument("tokenizer vocab_size " + std::to_string(vocab_size) +
                                   " is below the minimum " + std::to_string(kFirstMerge) +
                                   " (3 special tokens + 256 bytes)");
  }
  // 1. Distinct chunks with their frequencies, in a deterministic order.
  std::unordered_map<std::string_view, int64_t> chunk_freq;
  for (std::string_view text : texts) {
    for (std::string_view chunk : SplitChunks(text)) ++chunk_freq[chunk];
  }
  std::vector<std::pair<std::string_view, int64_t>> sorted(chunk_freq.begin(), chunk_freq.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<int32_t>> words(sorted.size());
  std::vector<int64_t> freq(sorted.size());
  for (size_t w = 0; w < sorted.size(); ++w) {
    for (unsigned char c : sorted[w].first) words[w].push_back(kFirstByte + c);
    freq[w] = sorted[w].second;
  }
  chunk_freq.clear();

  BpeTokenizer tok;
  tok.BuildIndex();  // byte tokens; merged tokens are appended below
  std::vector<std::string>& bytes = tok.token_bytes_;

  // 2. Pair counts and, per pair, the words that may contain it (may hold
  // duplicates and stale entries; both are skipped when merging).
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t key = PairKey(s[i], s[i + 1]);
      pair_count[key] += freq[w];
      auto& list = where[key];
      if (list.empty() || list.back() != static_cast<int32_t>(w)) {
        list.push_back(static_cast<int32_t>(w));
      }
    }
  }

  // 3. Max-heap of (count, pair) with lazy invalidation: an entry whose count
  // no longer matches pair_count is re-pushed with the current count.
  struct Entry {
    int64_t count;
    uint64_t pair;
  };
  auto worse = [&bytes](const Entry& x, const Entry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string& xa = bytes[PairLeft(x.pair)];
    const std::string& ya = bytes[PairLeft(y.pair)];
    if (xa != ya) return xa > ya;  // lexicographically smaller pair wins the tie
    return bytes[PairRight(x.pair)] > bytes[PairRight(y.pair)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  {
    // Push in key order so the heap's internal layout does not depend on hash order.
    std::vector<uint64_t> keys;
    keys.reserve(pair_count.size());
    for (const auto& [key, count] : pair_count) keys.push_back(key);
    std::sort(keys.begin(), keys.end());
    for (uint64_t key : keys) heap.push({pair_count[key], key});
  }

  std::unordered_map<uint64_t, int64_t> delta;
  std::vector<uint64_t> touched;
  while (static_cast<int>(bytes.size()) < vocab_size && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto it = pair_count.find(top.pair);
    const int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current != top.count) {
      if (current > 0) heap.push({current, top.pair});
      continue;
    }
    if (current < 2) break;  // a merge seen once is noise, not vocabulary
    const int32_t a = PairLeft(top.pair), b = PairRight(top.pair);
    const int32_t merged = static_cast<int32_t>(bytes.size());
    tok.merges_.emplace_back(a, b);
    bytes.push_back(bytes[a] + bytes[b]);

    std::vector<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    delta.clear();
    for (int32_t w : affected) {
      auto& s = words[w];
      bool present = false;
      for (size_t i = 0; i + 1 < s.size() && !present; ++i) present = s[i] == a && s[i + 1] == b;
      if (!present) continue;  // duplicate or stale entry
      const int64_t f = freq[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[PairKey(s[i], s[i + 1])] -= f;
      MergePair(s, a, b, merged);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        uint64_t key = PairKey(s[i], s[i + 1]);
        delta[key] += f;
        // Only pairs with the new id are new to this word.
        if (s[i] == merged || s[i + 1] == merged) {
          auto& list = where[key];
          if (list.empty() || list.back() != w) list.push_back(w);
        }
      }
    }
    touched.clear();
    for (const auto& [key, d] : delta) {
      if (d != 0) touched.push_back(key);
    }
    std::sort(touched.begin(), touched.end());  // deterministic heap pushes
    for (uint64_t key : touched) {
      int64_t& count = pair_count[key];
      count += delta[key];
      if (count <= 0) {
        pair_count.erase(key);
      } else if (PairLeft(key) == merged || PairRight(key) == merged) {
        heap.push({count, key});  // decreased counts are caught lazily at pop time
      }
    }
  }
  tok.BuildIndex();
  return tok;
}

// Hugging Face's BPE (Word::merge_all): a queue of (rank, position) merges,
// one occurrence at a time, lowest rank first and leftmost among equals; a
// merge pushes the pairs it forms with its neighbours. This differs from
// merging every occurrence of the best pair at once when a merge creates a
// pair of lower rank than one already queued (tiktoken-converted
// vocabularies have such merges: a merge using a token created later).
std::vector<int32_t> BpeTokenizer::MergeOneAtATime(std::vector<int32_t> syms) const {
  const auto& ranks = ranks_and_cache_->ranks;
  const int n = static_cast<int>(syms.size());
  std::vector<int> prev(n), next(n);
  std::vector<bool> removed(n, false);
  for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
  struct Merge {
    int32_t rank;
    int pos;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Merge, std::vector<Merge>, std::greater<Merge>> queue;
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = ranks.find(PairKey(syms[pos], syms[next[pos]]));
    if (it != ranks.end()) queue.push({it->second, pos});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    if (removed[top.pos] || next[top.pos] < 0) continue;
    const int right = next[top.pos];
    // Stale: the pair at this position changed since it was queued.
    auto it = ranks.find(PairKey(syms[top.pos], syms[right]));
    if (it == ranks.end() || merge_ids_[it->second] != merge_ids_[top.rank]) continue;
    syms[top.pos] = merge_ids_[top.rank];
    removed[right] = true;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    push(prev[top.pos]);
    push(top.pos);
  }
  std::vector<int32_t> out;
  out.reserve(syms.size());
  for (int i = 0; i >= 0 && i < n; i = next[i]) out.push_back(syms[i]);
  return out;
}

std::vector<int32_t> BpeTokenizer::EncodeChunk(std::string_view chunk) const {
  std::vector<int32_t> syms;
  if (ignore_merges_) {
    auto it = ranks_and_cache_->whole.find(std::string(chunk));
    if (it != ranks_and_cache_->whole.end()) return {it->second};
  }
  syms.reserve(chunk.size());
  for (unsigned char c : chunk) syms.push_back(byte_ids_[c]);
  if (is_hugging_face()) return MergeOneAtATime(std::move(syms));
  // This project's tokenizers learned their merges in order: applying every
  // occurrence of the best pair at once is the same as one at a time.
  const auto& ranks = ranks_and_cache_->ranks;
  while (syms.size() > 1) {
    int32_t best_rank = -1;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      auto it = ranks.find(PairKey(syms[i], syms[i + 1]));
      if (it != ranks.end() && (best_rank < 0 || it->second < best_rank)) best_rank = it->second;
    }
    if (best_rank < 0) break;
    const auto& [a, b] = merges_[best_rank];
    MergePair(syms, a, b, merge_ids_[best_rank]);
  }
  return syms;
}

// One word of SentencePiece-style BPE: its characters' tokens (a character
// outside the vocabulary, or an invalid byte, as its bytes' "<0xHH>"
// tokens), merged as Hugging Face merges.
std::vector<int32_t> BpeTokenizer::EncodeSentencePieceWord(std::string_view word) const {
  const auto& chars = ranks_and_cache_->chars;
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  const EncodeCache& cache = *ranks_and_cache_;
  // A character with neither a token nor every byte's "<0xHH>" is the
  // unknown token (parsing made sure there is one where some "<0xHH>" is
  // missing), as Hugging Face's BPE places it: held until the next character
  // that has a token of its own (byte-fallback tokens go in before it) or
  // the end; with fuse_unk, unknowns held together are one.
  bool unk_held = false;
  auto flush = [&] {
    if (unk_held) syms.push_back(sp_unk_), unk_held = false;
  };
  for (std::string_view c : hf::SplitCharacters(word)) {
    int32_t id = -1;
    if (c.size() == 1) {
      id = cache.one_byte_chars[static_cast<unsigned char>(c[0])];
    } else if (auto it = chars.find(std::string(c)); it != chars.end()) {
      id = it->second;
    }
    if (id >= 0) {
      flush();
      syms.push_back(id);
      continue;
    }
    bool all = true;
    for (unsigned char b : c) all = all && cache.fallback[b] >= 0;
    if (all) {
      for (unsigned char b : c) syms.push_back(cache.fallback[b]);
      continue;
    }
    if (unk_held && !sp_fuse_unk_) syms.push_back(sp_unk_);
    unk_held = true;
  }
  flush();
  return MergeOneAtATime(std::move(syms));
}

// Spaces become "▁", with one in front as the tokenizer's rule says; then
// the whole text is one word, or (Metaspace split) a word starts at each
// "▁". Words up to kMaxPretokenBytes are cached; longer ones (a whole text)
// are merged in O(n log n) and not cut, unlike byte-level pre-tokens.
std::vector<int32_t> BpeTokenizer::EncodeSentencePiece(std::string_view text, bool first) const {
  static constexpr std::string_view kMeta = "\xe2\x96\x81";
  std::string s;
  s.reserve(text.size() + text.size() / 4 + kMeta.size());
  const auto prepend = static_cast<hf::SpPrepend>(sp_prepend_);
  if ((prepend == hf::SpPrepend::kNonEmpty && !text.empty()) ||
      (prepend == hf::SpPrepend::kIfMissing && (first || !sp_prepend_first_only_) &&
       !text.empty() && text[0] != ' ' && text.substr(0, kMeta.size()) != kMeta)) {
    s += kMeta;
  }
  for (char c : text) {
    if (c == ' ') {
      s += kMeta;
    } else {
      s += c;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(s.size() / 3 + 1);
  const auto word_ids = [this](std::string_view w) { return EncodeSentencePieceWord(w); };
  auto encode = [&](std::string_view word) {
    if (!word.empty()) ranks_and_cache_->Append(word, word_ids, &ids);
  };
  if (!sp_split_) {
    encode(s);
    return ids;
  }
  size_t start = 0;  // Metaspace split, "merged with next": each "▁" starts a word
  for (size_t p = s.find(kMeta, 1); p != std::string::npos; p = s.find(kMeta, p + 1)) {
    encode(std::string_view(s).substr(start, p - start));
    start = p;
  }
  encode(std::string_view(s).substr(start));
  return ids;
}

bool BpeTokenizer::has_text_added_tokens() const { return ranks_and_cache_->has_added; }

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text) const {
  const EncodeCache& cache = *ranks_and_cache_;
  if (!cache.has_added || !added_tokens_in_text_) return EncodeSegment(text, /*first=*/true);
  // Non-special added tokens, leftmost-longest (Hugging Face's added
  // vocabulary); each stretch of text between them is normalized and
  // pre-tokenized on its own, as there.
  std::vector<int32_t> ids;
  size_t start = 0;
  for (size_t p = 0; p < text.size(); ++p) {
    for (const auto& [token, id] : cache.added[static_cast<unsigned char>(text[p])]) {
      if (text.compare(p, token.size(), token) != 0) continue;
      if (p > start) {
        const auto part = EncodeSegment(text.substr(start, p - start), start == 0);
        ids.insert(ids.end(), part.begin(), part.end());
      }
      ids.push_back(id);
      start = p + token.size();
      p = start - 1;
      break;
    }
  }
  if (start < text.size() || text.empty()) {
    const auto part = EncodeSegment(text.substr(start), start == 0);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::vector<int32_t> BpeTokenizer::EncodeSegment(std::string_view text, bool first) const {
  if (pretokenizer_ == Pretokenizer::kSentencePiece) return EncodeSentencePiece(text, first);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  const EncodeCache& cache = *ranks_and_cache_;
  const auto chunk_ids = [this](std::string_view c) { return EncodeChunk(c); };
  std::string normalized;  // NFC (Qwen2's normalizer), before pre-tokenization as in Hugging Face
  if (nfc_) {
    normalized = NfcNormalize(text);
    text = normalized;
  }
  std::string prefixed;  // GPT-2's add_prefix_space
  if (add_prefix_space_ && !text.empty() && text[0] != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    text = prefixed;
  }
  for (std::string_view chunk : Pretokenize(text)) {
    if (chunk.size() == 1) {  // a byte is its own token (merges need two)
      ids.push_back(byte_ids_[static_cast<unsigned char>(chunk[0])]);
      continue;
    }
    cache.Append(chunk, chunk_ids, &ids);
  }
  return ids;
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id >= kFirstByte && id < static_cast<int32_t>(token_bytes_.size())) out += token_bytes_[id];
  }
  return out;
}

std::string BpeTokenizer::ToJson() const {
  if (is_hugging_face()) return hf_json_;
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [a, b] : merges_) merges.push_back({a, b});
  nlohmann::json j = {
      {"format", kFormatName},
      {"format_version", kFormatVersion},
      {"pretokenizer", kPretokenizerName},
      {"max_chunk_bytes", kMaxChunkBytes},
      {"special_tokens", {{"pad", kPad}, {"end", kEnd}, {"sep", kSep}}},
      {"first_byte_id", kFirstByte},
      {"vocab_size", vocab_size()},
      {"merges", std::move(merges)},
  };
  return j.dump();
}

Status BpeTokenizer::SaveFile(const std::string& path) const {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError("cannot write tokenizer file " + path);
  out << ToJson();
  out.close();
  if (!out) return Status::IoError("error writing tokenizer file " + path);
  return Status::Ok();
}

// Deepest nesting of brackets outside strings in JSON text.
static size_t JsonDepth(std::string_view text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

Result<BpeTokenizer> BpeTokenizer::FromJson(const std::string& json) {
  // nlohmann's dump and copy recurse once per level: a hostile file nested
  // 200,000 deep would overflow the stack after parsing. Real files nest < 10.
  if (JsonDepth(json) > 64) return Status::Corruption("tokenizer JSON nests deeper than 64 levels");
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::Corruption("tokenizer JSON does not parse");
  }
  if (!j.contains("format") && hf::IsTokenizerJson(j)) {
    auto model = hf::ParseTokenizerJson(j);
    if (!model.ok()) return model.status();
    return FromHuggingFace(json, std::move(*model));
  }
  // Integer fields are read only when they are JSON integers: nlohmann's
  // get<int>() of a float such as 1e300 or -1.5 is an out-of-range cast,
  // undefined behaviour (found by tests/fuzz/tokenizer_fuzz.cc).
  auto int_at = [](const nlohmann::json& obj, const char* key) -> std::optional<int64_t> {
    if (!obj.is_object()) return std::nullopt;
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_integer()) return std::nullopt;
    return it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX}
               ? std::nullopt
               : std::optional<int64_t>(it->get<int64_t>());
  };
  try {
    if (j.value("format", std::string()) != kFormatName) {
      return Status::Corruption(std::string("tokenizer format is not \"") + kFormatName + "\"");
    }
    if (int_at(j, "format_version") != kFormatVersion) {
      return Status::InvalidArgument("unsupported tokenizer format_version " +
                                     j.value("format_version", nlohmann::json()).dump() +
                                     "; this build reads " + std::to_string(kFormatVersion));
    }
    if (j.value("pretokenizer", std::string()) != kPretokenizerName ||
        int_at(j, "max_chunk_bytes") != static_cast<int64_t>(kMaxChunkBytes) ||
        int_at(j, "first_byte_id") != kFirstByte) {
      return Status::InvalidArgument(
          "tokenizer pre-tokenizer or id layout differs from this build");
    }
    const auto& sp = j.at("special_tokens");
    if (int_at(sp, "pad") != kPad || int_at(sp, "end") != kEnd || int_at(sp, "sep") != kSep) {
      return Status::InvalidArgument("tokenizer special token ids differ from this build");
    }
    BpeTokenizer tok;
    const auto& merges = j.at("merges");
    if (!merges.is_array()) return Status::Corruption("tokenizer \"merges\" is not an array");
    tok.merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const auto& m = merges[i];
      if (!m.is_array() || m.size() != 2 || !m[0].is_number_integer() ||
          !m[1].is_number_integer()) {
        return Status::Corruption("tokenizer merge " + std::to_string(i) + " is not a pair of ids");
      }
      const int64_t a = m[0].get<int64_t>(), b = m[1].get<int64_t>();
      const int64_t limit = kFirstMerge + static_cast<int64_t>(i);  // only earlier ids
      if (a < kFirstByte || b < kFirstByte || a >= limit || b >= limit) {
        return Status::Corruption("tokenizer merge " + std::to_string(i) +
                                  " refers to id out of range");
      }
      tok.merges_.emplace_back(static_cast<int32_t>(a), static_cast<int32_t>(b));
    }
    tok.BuildIndex();
    if (j.contains("vocab_size") && int_at(j, "vocab_size") != tok.vocab_size()) {
      return Status::Corruption("tokenizer vocab_size does not match its merges");
    }
    return tok;
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("tokenizer JSON is malformed: ") + e.what());
  }
}

Result<BpeTokenizer> BpeTokenizer::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot open tokenizer file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError("read error in tokenizer file " + path);
  return FromJson(ss.str());
}

}  // namespace rlaif::trainer
