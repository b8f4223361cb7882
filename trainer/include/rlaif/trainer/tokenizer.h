// Byte-level BPE tokenizer of the reward model, trained on the stored corpus
// and saved with every checkpoint (tokenizer.json).
//
//   auto tok = BpeTokenizer::Train(texts, /*vocab_size=*/4096);
//   std::vector<int32_t> ids = tok->Encode("any bytes, even invalid UTF-8");
//   assert(tok->Decode(ids) == "any bytes, even invalid UTF-8");  // trained here
//   // (a SentencePiece-style tokenizer.json decodes with a leading space, and
//   // a character it has no token for may become <unk>)
//   auto seq = BuildRewardSequence(tok->Encode(prompt), tok->Encode(response), 256);
//
// Ids: 0 = PAD, 1 = END (appended to every sequence; the score is read there),
// 2 = SEP (between prompt and response), 3..258 = the 256 byte values, then one
// id per learned merge, in the order learned. Any byte string encodes.
//
// Text is first cut into chunks (SplitChunks: runs of letters, of digits, of
// other symbols, each optionally led by one space; whitespace runs), and merges
// never cross a chunk boundary. Training is deterministic: equal pair counts
// are broken by the lexicographic order of the pair's byte strings.
//
// A Hugging Face tokenizer.json (byte-level BPE: GPT-2, Llama 3, cl100k and
// Qwen style; SentencePiece-style BPE with byte fallback: Llama 2, Mistral,
// Gemma; trainer/src/hf_tokenizer.h lists what is read and refused) loads
// through the same FromJson/LoadFile, for users who bring a pretrained
// vocabulary. Its token id h is id h + kFirstByte here (ids 0-2 stay PAD, END,
// SEP); ToJson returns the file as it was read, so a checkpoint carries it
// unchanged. Special added tokens in the text are encoded as plain text,
// never as their ids; non-special ones are found in the text as Hugging Face
// finds them (has_text_added_tokens).
//
// Thread safety: a BpeTokenizer is immutable after Train/FromJson except for an
// internal, synchronised encode cache; Encode/Decode may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer {

namespace hf {
struct BpeModel;
}

class BpeTokenizer {
 public:
  static constexpr int32_t kPad = 0;
  static constexpr int32_t kEnd = 1;
  static constexpr int32_t kSep = 2;
  static constexpr int32_t kFirstByte = 3;
  static constexpr int32_t kFirstMerge = kFirstByte + 256;  // 259: the smallest vocabulary
  // Chunks longer than this are cut (bounds per-chunk work on pathological input).
  static constexpr size_t kMaxChunkBytes = 64;

  // Learns merges from `texts` until the vocabulary has `vocab_size` ids, or no
  // pair occurs at least twice. kInvalidArgument if vocab_size < kFirstMerge.
  static Result<BpeTokenizer> Train(const std::vector<std::string_view>& texts, int vocab_size);
  // Parses what ToJson wrote, or a Hugging Face tokenizer.json. kCorruption if
  // malformed or inconsistent; kInvalidArgument for a format or Hugging Face
  // feature this build does not read (the message says which).
  static Result<BpeTokenizer> FromJson(const std::string& json);
  // FromJson on a file's content; kIoError if unreadable.
  static Result<BpeTokenizer> LoadFile(const std::string& path);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Compact JSON (ASCII only): format, special ids, merges as id pairs; for a
  // Hugging Face tokenizer, the tokenizer.json it was read from.
  std::string ToJson() const;
  // Writes ToJson() to `path` (not atomically; checkpoints write into a temp dir).
  Status SaveFile(const std::string& path) const;

  // Token ids of `text`, without special tokens.
  std::vector<int32_t> Encode(std::string_view text) const;
  // Bytes of `ids`; special and out-of-range ids contribute nothing.
  std::string Decode(const std::vector<int32_t>& ids) const;

  // Number of ids, special tokens included (= kFirstMerge + merges for a
  // trained tokenizer, kFirstByte + the Hugging Face vocabulary otherwise).
  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  bool is_hugging_face() const { return !hf_json_.empty(); }
  // The id a Hugging Face tokenizer.json's post-processor puts before every
  // sequence (Llama 3.1's <|begin_of_text|>), here (+ kFirstByte); -1 if it
  // adds none or the tokenizer was trained here. Encode never adds it; a
  // model fine-tuned from that tokenizer's backbone starts its sequences
  // with it (BuildRewardSequence's `bos`).
  int32_t template_bos_id() const { return template_bos_; }
  // Whether the tokenizer.json has non-special added tokens (Qwen's
  // <tool_call>, Gemma's <table>), which Encode finds in the text as Hugging
  // Face does, unless set_added_tokens_in_text(false): a checkpoint written
  // before this build encoded them as text, and keeps doing so.
  bool has_text_added_tokens() const;
  void set_added_tokens_in_text(bool on) { added_tokens_in_text_ = on; }
  bool added_tokens_in_text() const { return added_tokens_in_text_ && has_text_added_tokens(); }
  // "byte-level BPE trained here (4096 ids)" or the Hugging Face model's kind.
  std::string description() const;

 private:
  struct EncodeCache;
  BpeTokenizer();
  enum class Pretokenizer : uint8_t { kChunks, kGpt2, kLlama3, kSentencePiece };
  static Result<BpeTokenizer> FromHuggingFace(const std::string& json, hf::BpeModel&& model);
  void BuildIndex();  // token_bytes_, byte_ids_, merge_ids_ and ranks from merges_
  void BuildRanks();  // ranks (and whole-token ids) from merges_ and token_bytes_
  std::vector<std::string_view> Pretokenize(std::string_view text) const;
  std::vector<int32_t> EncodeChunk(std::string_view chunk) const;
  std::vector<int32_t> MergeOneAtATime(std::vector<int32_t> syms) const;
  // Encode without the non-special added tokens; `first`: `text` starts the
  // input (Metaspace's prepend_scheme "first").
  std::vector<int32_t> EncodeSegment(std::string_view text, bool first) const;
  std::vector<int32_t> EncodeSentencePiece(std::string_view text, bool first) const;
  std::vector<int32_t> EncodeSentencePieceWord(std::string_view word) const;

  std::vector<std::pair<int32_t, int32_t>> merges_;  // by rank: the pair merged
  std::vector<int32_t> merge_ids_;                   // by rank: the id it creates
  int32_t byte_ids_[256] = {};                       // the id of each single byte
  std::vector<std::string> token_bytes_;             // id -> bytes ("" for specials)
  std::unique_ptr<EncodeCache> ranks_and_cache_;     // merge ranks + chunk cache
  Pretokenizer pretokenizer_ = Pretokenizer::kChunks;
  int max_digits_ = 3;             // Llama 3's \p{N}{1,3}
  bool add_prefix_space_ = false;  // GPT-2's option
  bool ignore_merges_ = false;     // a pre-token in the vocabulary is one token
  bool nfc_ = false;               // NFC-normalize text before pre-tokenizing (Qwen2)
  uint8_t sp_prepend_ = 0;         // kSentencePiece: hf::SpPrepend
  bool sp_split_ = false;          // kSentencePiece: Metaspace words, else the whole text
  bool sp_prepend_first_only_ = false;  // kSentencePiece: Metaspace prepend_scheme "first"
  bool added_tokens_in_text_ = true;    // has_text_added_tokens()
  int32_t sp_unk_ = -1;                 // kSentencePiece: the unknown token (-1: none)
  bool sp_fuse_unk_ = false;            // kSentencePiece: a run of unknowns is one
  int32_t template_bos_ = -1;      // template_bos_id()
  std::string hf_json_;            // the Hugging Face tokenizer.json; "" if trained here
  std::string hf_description_;
};

// Cuts `text` into the pre-tokenization chunks described above. The chunks
// concatenate back to `text` exactly.
std::vector<std::string_view> SplitChunks(std::string_view text);

// The model input for one (prompt, response): the END of the prompt (truncated
// from the left), SEP, the start of the response (at least 3/4 of max_len when
// it is that long, more if the prompt is short), END. Never longer than max_len
// (max_len >= 4). With `bos` >= 0 (a Llama backbone's begin-of-text id), the
// sequence starts with it, within the same max_len (max_len >= 5).
std::vector<int32_t> BuildRewardSequence(const std::vector<int32_t>& prompt,
                                         const std::vector<int32_t>& response, int max_len,
                                         int32_t bos = -1);

}  // namespace rlaif::trainer
