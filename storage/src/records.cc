// Record codecs: one JSON object per record, with a "v" schema version.
//
// JSON (not a binary format) so that an operator can read `ldb scan` output
// and a dump of the store without our code. Decoding is strict about types and
// requires every field that schema v1 writes: a record that fails that test was
// not written by us and is reported as kCorruption rather than half-decoded.
#include "rlaif/storage/records.h"

#include <cstdint>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <string_view>

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#define RLAIF_RECORDS_SSE2 1
#endif

namespace rlaif::storage {

namespace {

using json = nlohmann::json;

constexpr int kSchemaVersion = 1;

// Text fields carry user content from production logs, which may hold invalid
// UTF-8; replacing bad bytes with U+FFFD keeps Encode total (never throws).
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Envelope() { return json{{"v", kSchemaVersion}}; }

// Reads field `key` of `j` into `out`; throws nlohmann exceptions when the field
// is missing or has the wrong type (caught by Decode below).
template <typename T>
void Read(const json& j, const char* key, T* out) {
  j.at(key).get_to(*out);
}

// A field added after records were first written: absent in older ones
// (left as is), the wrong type is still corruption.
template <typename T>
void ReadIfPresent(const json& j, const char* key, T* out) {
  if (auto it = j.find(key); it != j.end()) it->get_to(*out);
}

// Parses `bytes`, checks the envelope, then lets `fill` read the fields. Every
// exception becomes kCorruption naming the record kind, so that callers can
// report which family holds the bad value.
template <typename T, typename Fill>
Result<T> Decode(const std::string& bytes, std::string_view kind, Fill fill) {
  try {
    json j = json::parse(bytes);
    if (!j.is_object()) {
      return Status::Corruption(std::string(kind) + " record is not a JSON object");
    }
    auto v = j.find("v");
    if (v == j.end() || !v->is_number_integer()) {
      return Status::Corruption(std::string(kind) + " record has no schema version \"v\"");
    }
    if (v->get<int64_t>() != kSchemaVersion) {
      return Status::Corruption(std::string(kind) + " record has unsupported schema version " +
                                std::to_string(v->get<int64_t>()) + " (this build reads v" +
                                std::to_string(kSchemaVersion) + ")");
    }
    T r;
    fill(j, &r);
    return r;
  } catch (const std::exception& e) {
    return Status::Corruption("cannot decode " + std::string(kind) + " record (" +
                              std::to_string(bytes.size()) + " bytes): " + e.what());
  }
}

json ResponseToJson(const ResponseRecord& r) {
  return json{{"text", r.text},
              {"model", r.model},
              {"seed", r.seed},
              {"temperature", r.temperature},
              {"latency_ms", r.latency_ms},
              {"prompt_tokens", r.prompt_tokens},
              {"completion_tokens", r.completion_tokens},
              {"finish_reason", r.finish_reason}};
}

void ResponseFromJson(const json& j, ResponseRecord* r) {
  Read(j, "text", &r->text);
  Read(j, "model", &r->model);
  Read(j, "seed", &r->seed);
  Read(j, "temperature", &r->temperature);
  Read(j, "latency_ms", &r->latency_ms);
  Read(j, "prompt_tokens", &r->prompt_tokens);
  Read(j, "completion_tokens", &r->completion_tokens);
  ReadIfPresent(j, "finish_reason", &r->finish_reason);
}

// Length of the well-formed UTF-8 sequence at s[i] (Unicode Table 3-7), or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const size_t left = s.size() - i;
  auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return k < left && b(k) >= lo && b(k) <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// Appends `s` as a JSON string exactly as Dump() writes it (same escapes,
// UTF-8 verbatim). Returns false, leaving `out` partly written, if `s` is
// not valid UTF-8 (Dump() replaces bad bytes; the caller falls back to it).
bool AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the bytes not yet copied
  for (size_t i = 0; i < s.size();) {
#ifdef RLAIF_RECORDS_SSE2
    // Sixteen plain bytes at a time: in the signed compare bytes >= 0x80 are
    // below 0x20 too (multi-byte sequences are checked below).
    {
      const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                    slash = _mm_set1_epi8('\\');
      while (i + 16 <= s.size()) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        const __m128i low = _mm_cmplt_epi8(v, space);
        const __m128i special = _mm_or_si128(
            low, _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)));
        const int m = _mm_movemask_epi8(special);
        if (m != 0) {
          i += static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(m)));
          break;
        }
        i += 16;
      }
    }
#endif
    // Eight plain bytes at a time: none below 0x20, '"', '\\' or >= 0x80.
    constexpr uint64_t kOnes = 0x0101010101010101ULL, kHigh = 0x8080808080808080ULL;
    while (i + 8 <= s.size()) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      const uint64_t quote = w ^ (kOnes * '"'), slash = w ^ (kOnes * '\\');
      const uint64_t special = ((w - kOnes * 0x20) & ~w) | ((quote - kOnes) & ~quote) |
                               ((slash - kOnes) & ~slash) | w;
      if (special & kHigh) break;
      i += 8;
    }
    if (i >= s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s, i);
      if (n == 0) return false;
      i += n;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out->append(s.data() + run, i - run);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\t': out->append("\\t"); break;
      case '\n': out->append("\\n"); break;
      case '\f': out->append("\\f"); break;
      case '\r': out->append("\\r"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xF]);
    }
    run = ++i;
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
  return true;
}

}  // namespace

std::string EncodePrompt(const PromptRecord& r) {
  std::string out;
  EncodePromptInto(r, &out);
  return out;
}

void EncodePromptInto(const PromptRecord& r, std::string* out_buf) {
  // Hot on ingest: written directly, byte for byte what the json path below
  // writes (keys sorted, compact), unless a field is not valid UTF-8.
  std::string& out = *out_buf;
  out.clear();
  out.reserve(r.text.size() + r.logged_response.size() + r.source_path.size() + 128);
  out.append("{\"id\":");
  bool ok = AppendJsonString(r.id, &out);
  out.append(",\"ingested_at_ms\":").append(std::to_string(r.ingested_at_ms));
  out.append(",\"logged_response\":");
  ok = ok && AppendJsonString(r.logged_response, &out);
  out.append(",\"source_offset\":").append(std::to_string(r.source_offset));
  out.append(",\"source_path\":");
  ok = ok && AppendJsonString(r.source_path, &out);
  out.append(",\"text\":");
  ok = ok && AppendJsonString(r.text, &out);
  out.append(",\"v\":").append(std::to_string(kSchemaVersion)).append("}");
  if (ok) return;
  json j = Envelope();
  j["id"] = r.id;
  j["text"] = r.text;
  j["logged_response"] = r.logged_response;
  j["source_path"] = r.source_path;
  j["source_offset"] = r.source_offset;
  j["ingested_at_ms"] = r.ingested_at_ms;
  out = Dump(j);
}

Result<PromptRecord> DecodePrompt(const std::string& bytes) {
  return Decode<PromptRecord>(bytes, "prompt", [](const json& j, PromptRecord* r) {
    Read(j, "id", &r->id);
    Read(j, "text", &r->text);
    Read(j, "logged_response", &r->logged_response);
    Read(j, "source_path", &r->source_path);
    Read(j, "source_offset", &r->source_offset);
    Read(j, "ingested_at_ms", &r->ingested_at_ms);
  });
}

std::string EncodePair(const PairRecord& r) {
  json j = Envelope();
  j["id"] = r.id;
  j["prompt_id"] = r.prompt_id;
  j["prompt"] = r.prompt;
  j["a"] = ResponseToJson(r.a);
  j["b"] = ResponseToJson(r.b);
  j["generator"] = r.generator;
  j["created_at_ms"] = r.created_at_ms;
  return Dump(j);
}

Result<PairRecord> DecodePair(const std::string& bytes) {
  return Decode<PairRecord>(bytes, "pair", [](const json& j, PairRecord* r) {
    Read(j, "id", &r->id);
    Read(j, "prompt_id", &r->prompt_id);
    Read(j, "prompt", &r->prompt);
    ResponseFromJson(j.at("a"), &r->a);
    ResponseFromJson(j.at("b"), &r->b);
    Read(j, "generator", &r->generator);
    Read(j, "created_at_ms", &r->created_at_ms);
  });
}

std::string EncodeLabel(const LabelRecord& r) {
  json j = Envelope();
  j["pair_id"] = r.pair_id;
  j["dimension"] = r.dimension;
  j["judge"] = r.judge;
  j["p_a"] = r.p_a;
  j["tie"] = r.tie;
  j["verdict_ab"] = r.verdict_ab;
  j["verdict_ba"] = r.verdict_ba;
  j["source"] = r.source;
  j["created_at_ms"] = r.created_at_ms;
  return Dump(j);
}

Result<LabelRecord> DecodeLabel(const std::string& bytes) {
  return Decode<LabelRecord>(bytes, "label", [](const json& j, LabelRecord* r) {
    Read(j, "pair_id", &r->pair_id);
    Read(j, "dimension", &r->dimension);
    Read(j, "judge", &r->judge);
    Read(j, "p_a", &r->p_a);
    Read(j, "tie", &r->tie);
    Read(j, "verdict_ab", &r->verdict_ab);
    Read(j, "verdict_ba", &r->verdict_ba);
    Read(j, "source", &r->source);
    Read(j, "created_at_ms", &r->created_at_ms);
  });
}

std::string EncodeSource(const SourceCheckpoint& r) {
  json j = Envelope();
  j["path"] = r.path;
  j["device"] = r.device;
  j["inode"] = r.inode;
  j["fingerprint"] = r.fingerprint;
  j["fingerprint_len"] = r.fingerprint_len;
  j["offset"] = r.offset;
  j["lines"] = r.lines;
  j["updated_at_ms"] = r.updated_at_ms;
  return Dump(j);
}

Result<SourceCheckpoint> DecodeSource(const std::string& bytes) {
  return Decode<SourceCheckpoint>(bytes, "source", [](const json& j, SourceCheckpoint* r) {
    Read(j, "path", &r->path);
    Read(j, "device", &r->device);
    Read(j, "inode", &r->inode);
    Read(j, "fingerprint", &r->fingerprint);
    Read(j, "fingerprint_len", &r->fingerprint_len);
    Read(j, "offset", &r->offset);
    Read(j, "lines", &r->lines);
    Read(j, "updated_at_ms", &r->updated_at_ms);
  });
}

std::string EncodeDeadLetter(const DeadLetter& r) {
  json j = Envelope();
  j["stage"] = r.stage;
  j["reason"] = r.reason;
  j["detail"] = r.detail;
  j["ref"] = r.ref;
  j["raw"] = r.raw;
  j["at_ms"] = r.at_ms;
  return Dump(j);
}

Result<DeadLetter> DecodeDeadLetter(const std::string& bytes) {
  return Decode<DeadLetter>(bytes, "dead letter", [](const json& j, DeadLetter* r) {
    Read(j, "stage", &r->stage);
    Read(j, "reason", &r->reason);
    Read(j, "detail", &r->detail);
    Read(j, "ref", &r->ref);
    Read(j, "raw", &r->raw);
    Read(j, "at_ms", &r->at_ms);
  });
}

std::string EncodeModel(const ModelRecord& r) {
  json j = Envelope();
  j["version"] = r.version;
  j["state"] = r.state;
  j["dir"] = r.dir;
  j["parent"] = r.parent;
  j["accuracy"] = r.accuracy;
  j["loss"] = r.loss;
  j["holdout_pairs"] = r.holdout_pairs;
  j["train_pairs"] = r.train_pairs;
  j["metrics_json"] = r.metrics_json;
  j["reason"] = r.reason;
  j["created_at_ms"] = r.created_at_ms;
  j["promoted_at_ms"] = r.promoted_at_ms;
  if (r.files_deleted_at_ms != 0) j["files_deleted_at_ms"] = r.files_deleted_at_ms;
  return Dump(j);
}

Result<ModelRecord> DecodeModel(const std::string& bytes) {
  return Decode<ModelRecord>(bytes, "model", [](const json& j, ModelRecord* r) {
    Read(j, "version", &r->version);
    Read(j, "state", &r->state);
    Read(j, "dir", &r->dir);
    Read(j, "parent", &r->parent);
    Read(j, "accuracy", &r->accuracy);
    Read(j, "loss", &r->loss);
    Read(j, "holdout_pairs", &r->holdout_pairs);
    Read(j, "train_pairs", &r->train_pairs);
    Read(j, "metrics_json", &r->metrics_json);
    Read(j, "reason", &r->reason);
    Read(j, "created_at_ms", &r->created_at_ms);
    Read(j, "promoted_at_ms", &r->promoted_at_ms);
    ReadIfPresent(j, "files_deleted_at_ms", &r->files_deleted_at_ms);
  });
}

std::string EncodeEvent(const EventRecord& r) {
  json j = Envelope();
  j["at_ms"] = r.at_ms;
  j["kind"] = r.kind;
  j["actor"] = r.actor;
  j["message"] = r.message;
  j["data_json"] = r.data_json;
  return Dump(j);
}

Result<EventRecord> DecodeEvent(const std::string& bytes) {
  return Decode<EventRecord>(bytes, "event", [](const json& j, EventRecord* r) {
    Read(j, "at_ms", &r->at_ms);
    Read(j, "kind", &r->kind);
    Read(j, "actor", &r->actor);
    Read(j, "message", &r->message);
    Read(j, "data_json", &r->data_json);
  });
}

}  // namespace rlaif::storage
