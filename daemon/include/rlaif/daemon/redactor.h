// PII and secret redaction, applied to every log line before anything of it
// is stored or leaves the process.
//
// Built-in kinds and their placeholders:
//   email   <EMAIL_n>   local@domain.tld
//   card    <CARD_n>    13-19 digits, optionally grouped by single spaces or
//                       dashes, that pass the Luhn check
//   phone   <PHONE_n>   10-15 digits written as a phone number: a leading '+',
//                       or groups of at most 4 digits split by separators
//                       (space, '-', '.', "(...)") ending in a group of 4;
//                       a bare run of digits is not a phone number
//   secret  <SECRET_n>  sk-..., AKIA/ASIA key ids, ghp_/github_pat_/xox?-
//                       tokens, the token after "Bearer ", runs of >= 32 hex
//                       digits, base64-like runs of >= 40 characters mixing
//                       upper case, lower case and digits
//   ipv4    <IP_n>      dotted quads, each part <= 255
//   ipv6    <IP_n>      what inet_pton accepts, with >= 2 colons
// plus user patterns (ECMAScript regexes) whose name gives the placeholder
// (name "employee_id" -> <EMPLOYEE_ID_n>). User patterns run first.
//
// The same text of the same kind gets the same placeholder within one
// RedactionScope (use one scope per log line, shared by its prompt and
// response), numbered from 1 in order of appearance.
//
//   auto r = Redactor::Create(config.sampling.redact_patterns);
//   RedactionScope scope;
//   std::string p = r->Redact(prompt, &scope);
//   std::string a = r->Redact(response, &scope);
//   for (auto& [kind, n] : scope.counts) ...   // "email" -> 2
//
// Thread safety: a Redactor is immutable after Create; Redact is const.
#pragma once

#include <map>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/status.h"

namespace rlaif::daemon {

struct RedactionScope {
  // (kind, original text) -> placeholder.
  std::map<std::pair<std::string, std::string>, std::string> placeholders;
  std::map<std::string, int> next_index;  // placeholder prefix -> last number used
  std::map<std::string, int64_t> counts;  // kind -> replacements made
};

class Redactor {
 public:
  // kInvalidArgument when a user regex does not compile or a name is empty.
  static Result<Redactor> Create(const std::vector<RedactPattern>& user_patterns);

  std::string Redact(std::string_view text, RedactionScope* scope) const;
  // Redacts `*text` in place; leaves it untouched (no copy) when nothing
  // matches. Returns whether anything was replaced.
  bool RedactInPlace(std::string* text, RedactionScope* scope) const;

 private:
  struct UserPattern {
    std::string kind;         // the configured name
    std::string placeholder;  // its upper case
    std::shared_ptr<const std::regex> re;
  };
  std::vector<UserPattern> user_;
};

// The Luhn checksum of a string of digits (other characters are ignored).
bool LuhnValid(std::string_view digits);

}  // namespace rlaif::daemon
