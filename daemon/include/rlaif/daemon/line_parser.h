// Log line parsers: one JSON line in, one ParsedLine (or a reason-coded
// rejection) out. Formats (SourceConfig::format):
//
//   simple       {"prompt": str, "response": str?, "model": str?, "metadata": {}?}
//   openai-chat  {"request": {"model", "messages": [{"role","content"}...]},
//                 "response": {"model"?, "created"?, "choices": [{"message": {"content"}}]},
//                 "metadata": {}?}
//   custom       JSON pointers (SourceConfig::fields) for prompt, response,
//                model, timestamp and metadata.
//
// Chat prompts: the conversation up to and including the last user turn is the
// prompt. A single user turn (nothing before it) is its content verbatim, so
// single-turn chat logs and `simple` logs give the same prompt ids. Otherwise
// every turn is rendered as "<role>: <content>" and the turns are joined by a
// blank line ("\n\n"). Content given as an array of parts keeps the text parts
// joined by "\n"; other parts (images, audio) are dropped.
//
// Logged pairs: a line of any format may also carry, at its top level, a pair
// that needs no generation (ParsedLine::pair):
//
//   "rewrite": "text"  or  {"response": "text", "dimension"?: str}
//       a human rewrite of the line's logged response: the pair is
//       (a = the logged response, b = the rewrite), and b is preferred.
//   "ab": {"a": "text", "b": "text", "preferred"?: "a" | "b" | "tie", "dimension"?: str}
//       two logged responses to the prompt (e.g. an A/B test); the label is
//       the stated preference, or none (the pair is then judged like a
//       generated one).
//
// Both null = absent. A malformed one, both at once, or a rewrite without a
// logged response is rejected as bad_pair.
//
//   auto parser = LineParser::Create(source_config);
//   ParsedLine pl;
//   Status st = parser->Parse(line, &pl);
//   if (!st.ok()) reason = RejectReason(st);   // e.g. "bad_json"
//
// Rejections are kInvalidArgument whose message starts with the reason and a
// colon: nul_byte, invalid_utf8, too_deep, bad_json, not_object,
// missing_prompt, bad_prompt_type, empty_prompt, bad_response_type,
// bad_model_type, bad_messages, no_user_turn, bad_pair.
//
// Thread safety: a LineParser is immutable after Create; Parse is const.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/status.h"

namespace rlaif::daemon {

// Bytes past a line's end that the JSON parser may read (SIMDJSON_PADDING).
inline constexpr size_t kLineParsePadding = 64;

// Deepest accepted nesting of JSON arrays/objects in a line.
inline constexpr int kMaxJsonDepth = 64;

// A pair stated by the log line itself (see "Logged pairs" above).
struct LoggedPair {
  enum class Kind { kNone, kRewrite, kAb };
  Kind kind = Kind::kNone;
  std::string a, b;        // the two responses (rewrite: a = logged, b = rewrite)
  std::string preferred;   // "a" | "b" | "tie", or "" when the log states none
  std::string dimension;   // "" = the default ("overall")
};

struct ParsedLine {
  std::string prompt;     // never empty on success
  std::string response;   // "" if the line has none
  std::string model;      // "" if the line has none
  std::string timestamp;  // as written ("" if none); numbers are rendered in decimal
  // Scalar metadata fields (strings verbatim, other scalars as JSON text), sorted by key.
  std::vector<std::pair<std::string, std::string>> metadata;
  LoggedPair pair;        // kind kNone when the line carries none
};

class LineParser {
 public:
  // kInvalidArgument for an unknown format or an invalid JSON pointer.
  static Result<LineParser> Create(const SourceConfig& source);

  // Parses one line (without its newline). On failure `out` is unspecified.
  // `out` may be reused across calls (its buffers are kept). Lines are
  // validated in full (UTF-8, JSON, nesting) whatever fields are read.
  // `readable_after`: bytes of memory known readable past the line's end;
  // with at least kLineParsePadding the line is parsed in place, else it is
  // first copied into a padded buffer.
  Status Parse(std::string_view line, ParsedLine* out, size_t readable_after = 0) const;

  const std::string& format() const { return format_; }

 private:
  LineParser() = default;
  std::string format_;
  FieldPointers fields_;
};

// The reason of a Parse failure: the text before the first ':' of its message.
std::string RejectReason(const Status& status);

// Every reason Parse can report (the list above), for metrics that should
// exist at zero before the first rejection.
const std::vector<std::string>& ParseRejectReasons();

// Checks the raw bytes of a line before JSON parsing: returns "" when fine,
// else "nul_byte", "invalid_utf8" or "too_deep" (nesting beyond kMaxJsonDepth).
std::string PrecheckLine(std::string_view line);

// Raw-line sampling (sampling.key "line", see ingest.h): decided before a line
// is parsed, from its bytes alone.
//
// A 64-bit hash of the raw bytes, fast (four independent 8-byte lanes, about
// an order of magnitude faster than Hash64) and the same on every platform
// (words are read little-endian). Changing it changes which lines are sampled;
// it names nothing stored.
uint64_t LineSampleHash(std::string_view line);

// False only when the line cannot carry a logged pair: it contains neither
// the key "ab" nor "rewrite" as written bytes (`"ab"`, `"rewrite"`), nor a
// `\u006`/`\u007` escape that could spell a letter of one of them. A cheap
// necessary condition (one vectorized pass), so that lines sampling drops need
// no parse to know that they are not pairs, which skip the rate.
bool MayCarryLoggedPair(std::string_view line);

}  // namespace rlaif::daemon
