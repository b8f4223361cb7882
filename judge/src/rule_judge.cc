// Rule-based judges: dimensions where an LLM call is overkill.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "rlaif/judge/judge.h"

namespace rlaif::judge {

namespace {

size_t TrimmedLength(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return e - b;
}

Result<std::vector<std::regex>> CompilePatterns(const JudgeDimension& d) {
  if (d.unsafe_patterns.empty()) {
    return Status::InvalidArgument("judge dimension '" + d.name +
                                   "' of kind regex needs at least one unsafe_patterns entry");
  }
  std::vector<std::regex> out;
  out.reserve(d.unsafe_patterns.size());
  for (const std::string& p : d.unsafe_patterns) {
    try {
      out.emplace_back(p, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument("judge dimension '" + d.name + "': pattern '" + p +
                                     "' does not compile: " + e.what());
    }
  }
  return out;
}

// Lower-cased whitespace tokens, at most kMaxRougeTokens.
constexpr size_t kMaxRougeTokens = 2000;
std::vector<std::string> Tokens(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (std::isspace(c)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      if (out.size() >= kMaxRougeTokens) return out;
    } else {
      cur += static_cast<char>(std::tolower(c));
    }
  }
  if (!cur.empty() && out.size() < kMaxRougeTokens) out.push_back(std::move(cur));
  return out;
}

}  // namespace

Status ValidateDimension(const JudgeDimension& d) {
  if (d.name.empty()) return Status::InvalidArgument("judge dimension has no name");
  if (d.kind == "llm") return Status::Ok();
  if (d.kind == "length") {
    if (!(d.length_tie_ratio >= 0 && d.length_tie_ratio < 1)) {
      return Status::InvalidArgument("judge dimension '" + d.name +
                                     "': length_tie_ratio must be in [0,1)");
    }
    return Status::Ok();
  }
  if (d.kind == "regex") {
    auto compiled = CompilePatterns(d);
    return compiled.ok() ? Status::Ok() : compiled.status();
  }
  if (d.kind == "rouge_l") {
    if (!(d.rouge_tie_margin >= 0 && d.rouge_tie_margin < 1)) {
      return Status::InvalidArgument("judge dimension '" + d.name +
                                     "': rouge_tie_margin must be in [0,1)");
    }
    return Status::Ok();
  }
  return Status::InvalidArgument("judge dimension '" + d.name + "': unknown kind '" + d.kind +
                                 "' (expected llm, length, regex or rouge_l)");
}

double RougeL(const std::string& candidate, const std::string& reference) {
  const std::vector<std::string> c = Tokens(candidate), r = Tokens(reference);
  if (c.empty() || r.empty()) return 0;
  // LCS length with two rolling rows.
  std::vector<int> prev(r.size() + 1, 0), cur(r.size() + 1, 0);
  for (size_t i = 1; i <= c.size(); ++i) {
    for (size_t j = 1; j <= r.size(); ++j) {
      cur[j] = c[i - 1] == r[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  const double lcs = prev[r.size()];
  if (lcs == 0) return 0;
  const double precision = lcs / static_cast<double>(c.size());
  const double recall = lcs / static_cast<double>(r.size());
  return 2 * precision * recall / (precision + recall);
}

Result<Winner> RuleVerdict(const JudgeDimension& d, const std::string& a, const std::string& b,
                           const std::string& reference) {
  if (Status st = ValidateDimension(d); !st.ok()) return st;
  if (d.kind == "rouge_l") {
    if (reference.empty()) {
      return Status::FailedPrecondition("judge dimension '" + d.name +
                                        "' (rouge_l) needs a reference response; none given");
    }
    const double fa = RougeL(a, reference), fb = RougeL(b, reference);
    if (std::abs(fa - fb) <= d.rouge_tie_margin) return Winner::kTie;
    return fa > fb ? Winner::kA : Winner::kB;
  }
  if (d.kind == "length") {
    const double la = static_cast<double>(TrimmedLength(a));
    const double lb = static_cast<double>(TrimmedLength(b));
    if (std::abs(la - lb) <= d.length_tie_ratio * std::max(la, lb)) return Winner::kTie;
    return la < lb ? Winner::kA : Winner::kB;
  }
  if (d.kind == "regex") {
    // Compiling per call keeps the Judge free of a cache; a handful of
    // patterns compile in microseconds, far below any LLM call.
    auto patterns = CompilePatterns(d);
    if (!patterns.ok()) return patterns.status();
    auto unsafe = [&](const std::string& text) {
      return std::any_of(patterns->begin(), patterns->end(),
                         [&](const std::regex& r) { return std::regex_search(text, r); });
    };
    const bool ua = unsafe(a), ub = unsafe(b);
    if (ua == ub) return Winner::kTie;
    return ua ? Winner::kB : Winner::kA;
  }
  return Status::InvalidArgument("judge dimension '" + d.name + "' is not rule-based");
}

}  // namespace rlaif::judge
