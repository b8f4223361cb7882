// Hugging Face tokenizer.json support for BpeTokenizer (private to the
// trainer): BPE models, byte-level (GPT-2, Llama 3, Qwen) or SentencePiece-style
// with byte fallback (Llama 2, Mistral, Gemma).
//
// What is read: model.type "BPE" (vocab, merges as "a b" strings or [a, b]
// arrays, ignore_merges), and either SentencePiece-style BPE with
// byte_fallback (Llama 2's normalizer Prepend "▁" + Replace " " -> "▁" with no
// pre-tokenizer; Gemma's Replace alone, with its no-op Split " "; or the
// pre-tokenizer Metaspace "▁" with any prepend_scheme and split), or
// byte-level pre-tokenization as either
//   - GPT-2: pre_tokenizer {"type": "ByteLevel", "use_regex": true}, or
//   - Llama 3 / cl100k: {"type": "Sequence", "pretokenizers": [{"type":
//     "Split", "pattern": {"Regex": <Llama 3's pattern, \p{N}{1,3} or \p{N}>},
//     "behavior": "Isolated" (or "Removed" with "invert": true, as tiktoken
//     conversions write it)}, {"type": "ByteLevel", "use_regex": false}]},
// added_tokens (their ids count in the vocabulary), and the normalizer NFC
// (Qwen2's; unicode_nfc.h, applied before pre-tokenization as Hugging Face
// does). Anything else is refused with a reason: another normalizer, WordPiece/Unigram
// models, byte_fallback without the SentencePiece form (or that form without
// it), subword prefixes or suffixes, BPE dropout, other split patterns.
//
// Deliberate differences from Hugging Face's encode(text,
// add_special_tokens=false):
//   - special added tokens ("<|endoftext|>", "<s>") in the text are encoded
//     as the text they are, never as their id: logged production text must
//     not be able to forge the model's control tokens (non-special ones, such
//     as Qwen3's <think>, are found as Hugging Face finds them);
//   - invalid UTF-8 is accepted: each invalid byte is one character of its
//     own that is neither a letter, a number nor a space;
//   - pre-tokens longer than kMaxPretokenBytes are cut (bounds the
//     quadratic BPE merge loop on pathological input; real words are shorter);
//   - \p{L} and \p{N} follow Unicode 17.0 (unicode_classes.inc); Hugging
//     Face's regex engine has older tables, so code points assigned in recent
//     versions can be classed differently (rare in text).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlaif/common/status.h"

namespace rlaif::trainer::hf {

constexpr size_t kMaxPretokenBytes = 1024;

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

// \p{L}, \p{N}, White_Space (Unicode's property, as Rust and Oniguruma's \s),
// or none of these, of one code point.
CharClass ClassOf(char32_t cp);

// Pre-tokens of `text`, as the regexes split it; they concatenate back to
// `text` exactly.
std::vector<std::string_view> SplitGpt2(std::string_view text);
std::vector<std::string_view> SplitLlama3(std::string_view text, int max_digits);

// kSentencePiece: SentencePiece-style BPE (Llama 2, Mistral, Gemma): spaces
// become U+2581 "▁" (BpeModel::sp_prepend and sp_split say where words start),
// the symbols are characters, and a character outside the vocabulary is its
// UTF-8 bytes' "<0xHH>" tokens (byte_fallback).
enum class Pretokenizer : uint8_t { kGpt2, kLlama3, kSentencePiece };

// Where a SentencePiece-style tokenizer adds a "▁" in front of the text:
// kNever; kNonEmpty (normalizer Prepend, Llama 2's: before any non-empty
// text); kIfMissing (pre-tokenizer Metaspace, prepend_scheme "first" or
// "always": unless the text already starts with a space or "▁").
enum class SpPrepend : uint8_t { kNever, kNonEmpty, kIfMissing };

// The bytes of each character of `text`: a valid UTF-8 sequence, or one
// invalid byte. They concatenate back to `text`.
std::vector<std::string_view> SplitCharacters(std::string_view text);

// A parsed tokenizer.json, in Hugging Face's ids.
struct BpeModel {
  Pretokenizer pretokenizer = Pretokenizer::kGpt2;
  int max_digits = 3;                    // Llama 3: \p{N}{1,3}
  bool add_prefix_space = false;         // GPT-2: " " before text that does not start with one
  bool ignore_merges = false;            // a pre-token that is a vocabulary entry is one token
  bool nfc = false;                      // normalizer NFC (Qwen2): applied before pre-tokenizing
  // kSentencePiece only: the prefix rule, whether Metaspace splits the text
  // into words before each "▁" (else the whole text is one word), and the
  // vocabulary's one-character tokens (their UTF-8, "▁" as is -> id).
  SpPrepend sp_prepend = SpPrepend::kNever;
  bool sp_prepend_first_only = false;  // Metaspace "first": only where the input starts
  bool sp_split = false;
  std::vector<std::pair<std::string, int32_t>> char_tokens;
  // kSentencePiece: the unknown token (a character with neither a token nor
  // all its byte tokens; -1 if none) and whether a run of them is one.
  int32_t unk_id = -1;
  bool fuse_unk = false;
  int32_t fallback_ids[256] = {};  // kSentencePiece: "<0xHH>" of each byte, -1 if none
  // Added tokens with "special": false (Qwen3's <think>, Gemma's <table>):
  // found in the text, leftmost-longest, as Hugging Face does, and encoded as
  // their ids; the text between them is encoded as usual. (Special added
  // tokens are never produced from text: see above.)
  std::vector<std::pair<std::string, int32_t>> text_added_tokens;
  // The id the post-processor puts first in every sequence (Llama 3.1's
  // <|begin_of_text|>; encode(text, add_special_tokens=True)); -1 if none.
  int32_t template_bos = -1;
  std::vector<std::string> token_bytes;  // id -> bytes; "" for added / non-byte tokens
  std::vector<std::pair<int32_t, int32_t>> merges;  // by rank
  std::vector<int32_t> merge_ids;                   // by rank: the merged token's id
  // The token of each single byte (kSentencePiece: its one-character token
  // if it is ASCII and has one, else its "<0xHH>" byte-fallback token, else
  // -1: Gemma has no "<0x09>", its "\t" is a token).
  int32_t byte_ids[256] = {};
  std::string description;  // "Hugging Face byte-level BPE (Llama 3 pre-tokenizer, 128256 ids)"
};

// kInvalidArgument for a tokenizer.json this build cannot reproduce (the
// reason says what), kCorruption for an inconsistent one.
Result<BpeModel> ParseTokenizerJson(const nlohmann::json& j);

// True if `j` looks like a Hugging Face tokenizer.json (has "model").
bool IsTokenizerJson(const nlohmann::json& j);

}  // namespace rlaif::trainer::hf
