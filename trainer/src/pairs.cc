#include "rlaif/trainer/pairs.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>
#include <string_view>
#include <utility>

#include "rlaif/common/hash.h"

namespace rlaif::trainer {

namespace {

constexpr std::string_view kAssistantMarker = "\n\nAssistant:";
constexpr size_t kMaxReportedErrors = 5;

// Returns the string at `obj[key]`, or nullptr when absent or not a string.
const std::string* StringField(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

// Parses one non-empty line. On failure returns a message without the line number.
Result<PreferencePair> ParsePairLine(std::string_view line) {
  nlohmann::json obj = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (obj.is_discarded()) return Status::InvalidArgument("not valid JSON (or not UTF-8)");
  if (!obj.is_object()) return Status::InvalidArgument("not a JSON object");
  const std::string* chosen = StringField(obj, "chosen");
  const std::string* rejected = StringField(obj, "rejected");
  if (chosen == nullptr || rejected == nullptr) {
    return Status::InvalidArgument("missing string field \"chosen\" or \"rejected\"");
  }
  PreferencePair pair;
  if (obj.contains("prompt")) {
    const std::string* prompt = StringField(obj, "prompt");
    if (prompt == nullptr) return Status::InvalidArgument("\"prompt\" is not a string");
    pair.prompt = *prompt;
    pair.chosen = *chosen;
    pair.rejected = *rejected;
  } else {
    auto split = SplitHhTranscripts(*chosen, *rejected);
    if (!split.ok()) return split.status();
    pair = std::move(*split);
  }
  if (obj.contains("p_chosen") && !obj["p_chosen"].is_null()) {
    const auto& p = obj["p_chosen"];
    if (!p.is_number()) return Status::InvalidArgument("\"p_chosen\" is not a number");
    double v = p.get<double>();
    if (!std::isfinite(v) || v < 0.0 || v > 1.0) {
      return Status::InvalidArgument("\"p_chosen\" is outside [0, 1]");
    }
    // Keep the invariant p_chosen >= 0.5 so that "chosen" always names the
    // preferred response (accuracy, length metrics and exports rely on it).
    if (v < 0.5) {
      std::swap(pair.chosen, pair.rejected);
      v = 1.0 - v;
    }
    pair.p_chosen = v;
  }
  if (obj.contains("dimension")) {
    const std::string* dim = StringField(obj, "dimension");
    if (dim == nullptr) return Status::InvalidArgument("\"dimension\" is not a string");
    pair.dimension = *dim;
  }
  return pair;
}

}  // namespace

Result<std::vector<PreferencePair>> LoadPairsJsonl(const std::string& path, LoadPairsStats* stats) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot open pair file " + path);
  LoadPairsStats local;
  LoadPairsStats& st = stats != nullptr ? *stats : local;
  st = LoadPairsStats();
  std::vector<PreferencePair> pairs;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines are not data
    ++st.lines;
    auto pair = ParsePairLine(line);
    if (!pair.ok()) {
      ++st.skipped;
      if (st.errors.size() < kMaxReportedErrors) {
        st.errors.push_back("line " + std::to_string(line_no) + ": " + pair.status().message());
      }
      continue;
    }
    pairs.push_back(std::move(*pair));
    ++st.loaded;
  }
  if (in.bad()) return Status::IoError("read error in pair file " + path);
  if (pairs.empty()) {
    std::string msg = "no usable preference pair in " + path + " (" + std::to_string(st.lines) +
                      " non-blank lines, " + std::to_string(st.skipped) + " malformed)";
    if (!st.errors.empty()) msg += "; first error: " + st.errors.front();
    return Status::InvalidArgument(msg);
  }
  return pairs;
}

Result<PreferencePair> SplitHhTranscripts(const std::string& chosen, const std::string& rejected) {
  size_t common = 0;
  const size_t limit = std::min(chosen.size(), rejected.size());
  while (common < limit && chosen[common] == rejected[common]) ++common;
  // The last marker that lies entirely inside the shared prefix.
  if (common < kAssistantMarker.size()) {
    return Status::InvalidArgument("HH transcripts share no \"\\n\\nAssistant:\" prefix");
  }
  size_t pos = std::string_view(chosen).substr(0, common).rfind(kAssistantMarker);
  if (pos == std::string_view::npos) {
    return Status::InvalidArgument("HH transcripts share no \"\\n\\nAssistant:\" prefix");
  }
  const size_t cut = pos + kAssistantMarker.size();
  PreferencePair pair;
  pair.prompt = chosen.substr(0, cut);
  pair.chosen = chosen.substr(cut);
  pair.rejected = rejected.substr(cut);
  // HH writes "Assistant: text"; TRL conversions of HH (the bundled file among
  // them) keep the prompt ending in "Assistant:" and drop that one space, so
  // both formats yield the same token sequences.
  for (std::string* response : {&pair.chosen, &pair.rejected}) {
    if (!response->empty() && (*response)[0] == ' ') response->erase(0, 1);
  }
  if (pair.prompt.size() >= 2 && pair.prompt[0] == '\n' && pair.prompt[1] == '\n') {
    pair.prompt.erase(0, 2);  // raw HH transcripts start with "\n\nHuman:"
  }
  return pair;
}

bool InHoldout(const std::string& prompt, double fraction) {
  return HashToUnit(Hash64(prompt)) < fraction;
}

std::vector<PreferencePair> MixReplay(const std::vector<PreferencePair>& fresh,
                                      const std::vector<PreferencePair>& older,
                                      double replay_ratio, uint64_t seed, int64_t* replayed) {
  const double want = std::llround(std::max(0.0, replay_ratio) * static_cast<double>(fresh.size()));
  const size_t count = std::min(older.size(), static_cast<size_t>(want));
  std::vector<size_t> idx(older.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(count);
  std::sort(idx.begin(), idx.end());
  std::vector<PreferencePair> out = fresh;
  out.reserve(fresh.size() + count);
  for (size_t i : idx) out.push_back(older[i]);
  if (replayed) *replayed = static_cast<int64_t>(count);
  return out;
}

}  // namespace rlaif::trainer
