#include "rlaif/common/config.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "rlaif/common/base_url.h"

namespace rlaif {

namespace {

using json = nlohmann::json;

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    default: return "value";
  }
}

// Reads the fields of one JSON object into a struct, collecting every
// problem instead of stopping at the first one. Keys that were never asked
// for are reported as unknown by Finish().
class ObjectReader {
 public:
  ObjectReader(const json& obj, std::string path, std::vector<std::string>* problems)
      : obj_(obj), path_(std::move(path)), problems_(problems) {}

  std::string PathOf(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }

  // Returns the value or nullptr; reports a missing required key.
  const json* Find(const std::string& key, bool required) {
    seen_.insert(key);
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      if (required) problems_->push_back(PathOf(key) + ": required key is missing");
      return nullptr;
    }
    return &*it;
  }

  void String(const std::string& key, std::string* out, bool required = false,
              const std::vector<std::string>& allowed = {}) {
    const json* v = Find(key, required);
    if (!v) return;
    if (!v->is_string()) {
      problems_->push_back(PathOf(key) + ": expected a string, got " + TypeName(*v));
      return;
    }
    std::string s = v->get<std::string>();
    if (!allowed.empty()) {
      bool ok = false;
      std::string list;
      for (const auto& a : allowed) {
        ok = ok || a == s;
        list += (list.empty() ? "" : ", ") + a;
      }
      if (!ok) {
        problems_->push_back(PathOf(key) + ": must be one of [" + list + "], got \"" + s + "\"");
        return;
      }
    }
    if (required && s.empty()) {
      problems_->push_back(PathOf(key) + ": must not be empty");
      return;
    }
    *out = s;
  }

  void Bool(const std::string& key, bool* out) {
    const json* v = Find(key, false);
    if (!v) return;
    if (!v->is_boolean()) {
      problems_->push_back(PathOf(key) + ": expected a boolean, got " + TypeName(*v));
      return;
    }
    *out = v->get<bool>();
  }

  template <typename T>
  void Int(const std::string& key, T* out, int64_t lo, int64_t hi) {
    const json* v = Find(key, false);
    if (!v) return;
    if (!v->is_number_integer() && !(v->is_number_float() && IsIntegral(v->get<double>()))) {
      problems_->push_back(PathOf(key) + ": expected an integer, got " + TypeName(*v));
      return;
    }
    double d = v->get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      problems_->push_back(PathOf(key) + ": must be in [" + std::to_string(lo) + ", " +
                           std::to_string(hi) + "], got " + v->dump());
      return;
    }
    *out = static_cast<T>(v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>())
                                                   : v->get<int64_t>());
  }

  void Double(const std::string& key, double* out, double lo, double hi, bool lo_open = false) {
    const json* v = Find(key, false);
    if (!v) return;
    if (!v->is_number()) {
      problems_->push_back(PathOf(key) + ": expected a number, got " + TypeName(*v));
      return;
    }
    double d = v->get<double>();
    if (d < lo || d > hi || (lo_open && d == lo)) {
      std::ostringstream msg;
      msg << PathOf(key) << ": must be in " << (lo_open ? "(" : "[") << lo << ", " << hi
          << "], got " << v->dump();
      problems_->push_back(msg.str());
      return;
    }
    *out = d;
  }

  // Returns the nested object, or nullptr (reporting a wrong type).
  const json* Object(const std::string& key, bool required = false) {
    const json* v = Find(key, required);
    if (!v) return nullptr;
    if (!v->is_object()) {
      problems_->push_back(PathOf(key) + ": expected an object, got " + TypeName(*v));
      return nullptr;
    }
    return v;
  }

  const json* Array(const std::string& key, bool required = false) {
    const json* v = Find(key, required);
    if (!v) return nullptr;
    if (!v->is_array()) {
      problems_->push_back(PathOf(key) + ": expected an array, got " + TypeName(*v));
      return nullptr;
    }
    return v;
  }

  void Finish() {
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (!seen_.count(it.key())) problems_->push_back(PathOf(it.key()) + ": unknown key");
    }
  }

 private:
  // Only a finite double inside int64's range may be cast to it (anything else
  // is undefined behaviour: found by tests/fuzz/config_fuzz.cc with 1e300).
  static bool IsIntegral(double d) {
    return std::isfinite(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
           d == std::trunc(d);
  }

  const json& obj_;
  std::string path_;
  std::vector<std::string>* problems_;
  std::set<std::string> seen_;
};

void ReadEndpoint(ObjectReader& r, EndpointConfig* e) {
  r.String("base_url", &e->base_url, true);
  r.String("model", &e->model, true);
  r.String("api_key_env", &e->api_key_env);
  r.String("api_key_file", &e->api_key_file);
  r.Int("concurrency", &e->concurrency, 1, 1024);
  r.Double("timeout_s", &e->timeout_s, 0, 3600, true);
  r.Double("connect_timeout_s", &e->connect_timeout_s, 0, 600, true);
  r.Int("max_retries", &e->max_retries, 0, 100);
  r.Double("requests_per_minute", &e->requests_per_minute, 0, 1e9);
  r.Double("tokens_per_minute", &e->tokens_per_minute, 0, 1e12);
  r.Int("breaker_failures", &e->breaker_failures, 0, 1000000);
  r.Double("breaker_cooldown_s", &e->breaker_cooldown_s, 0, 86400);
  r.Double("price_prompt_per_1m", &e->price_prompt_per_1m, 0, 1e6);
  r.Double("price_completion_per_1m", &e->price_completion_per_1m, 0, 1e6);
  r.Double("hourly_budget_usd", &e->hourly_budget_usd, 0, 1e9);
}

// The HTTP client's own parse (ParseBaseUrl): a URL it would refuse at the
// first call is a config problem, not an error charged to every item.
// An *_env setting names an environment variable; anything else (often the
// secret pasted in by mistake) is refused without echoing it: the value
// would otherwise appear in "is not set" warnings.
void CheckEnvName(const std::string& path, const std::string& name,
                  std::vector<std::string>* problems) {
  if (name.empty()) return;
  static const std::regex kEnvName("[A-Za-z_][A-Za-z0-9_]*");
  if (!std::regex_match(name, kEnvName)) {
    problems->push_back(path +
                        ": must be the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), "
                        "not its value; the value given is not a name (not shown: it may be a "
                        "secret)");
  }
}

// An endpoint's key: from an environment variable or a file, not both; a
// file's path must look like one (a key pasted in is not repeated).
void CheckKeySource(const std::string& section, const EndpointConfig& e,
                    std::vector<std::string>* problems) {
  CheckEnvName(section + ".api_key_env", e.api_key_env, problems);
  if (e.api_key_file.empty()) return;
  if (!e.api_key_env.empty()) {
    problems->push_back(section +
                        ".api_key_file: set either api_key_env or api_key_file, not both");
  }
  if (e.api_key_file[0] != '/') {
    problems->push_back(section +
                        ".api_key_file: must be the absolute PATH of a file holding the key (e.g. "
                        "/run/secrets/judge-key), not the key; the value given is not shown: it "
                        "may be a secret");
  }
}

void CheckBaseUrl(const std::string& path, const std::string& url,
                  std::vector<std::string>* problems) {
  if (url.empty()) return;
  auto parsed = ParseBaseUrl(url);
  if (!parsed.ok()) problems->push_back(path + ": " + parsed.status().message());
}

}  // namespace

Status SplitHostPort(const std::string& listen, std::string* host, int* port) {
  std::string h, p;
  if (!listen.empty() && listen[0] == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return Status::InvalidArgument("expected [ipv6]:port, got \"" + listen + "\"");
    }
    h = listen.substr(1, close - 1);
    p = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::InvalidArgument("expected host:port, got \"" + listen + "\"");
    }
    h = listen.substr(0, colon);
    p = listen.substr(colon + 1);
  }
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("port must be a number in [0, 65535], got \"" + p + "\"");
  }
  int n = std::stoi(p);
  if (n > 65535) {
    return Status::InvalidArgument("port must be a number in [0, 65535], got \"" + p + "\"");
  }
  *host = h;
  *port = n;
  return Status::Ok();
}

Result<Config> ParseConfig(const std::string& json_text) {
  json root;
  // A key given twice in one object: JSON parsers keep the last one, so
  // the first (perhaps the one meant) would be dropped without a word.
  struct Frame {
    std::string path;
    bool array;
    std::set<std::string> keys;
  };
  std::vector<Frame> stack;
  std::string last_key;
  std::vector<std::string> duplicates;
  auto child = [&]() -> std::string {
    if (stack.empty()) return "";
    const Frame& f = stack.back();
    if (f.array) return f.path + "[]";
    return f.path.empty() ? last_key : f.path + "." + last_key;
  };
  const json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        stack.push_back({child(), false, {}});
        break;
      case json::parse_event_t::array_start:
        stack.push_back({child(), true, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case json::parse_event_t::key:
        last_key = parsed.is_string() ? parsed.get<std::string>() : std::string();
        if (!stack.empty() && !stack.back().keys.insert(last_key).second) {
          const std::string where =
              stack.back().path.empty() ? last_key : stack.back().path + "." + last_key;
          duplicates.push_back(where + ": given twice in one object (the last would win)");
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    root = json::parse(json_text, cb);
  } catch (const json::exception& e) {
    // Not the parser's "; last read: '...'": it quotes the file's text near
    // the error (paths, names), and this message reaches /v1/status and the
    // audit log. Line and column say where.
    std::string what = e.what();
    if (size_t at = what.find("; last read:"); at != std::string::npos) what.resize(at);
    return Status::InvalidArgument("config is not valid JSON: " + what);
  }
  if (!duplicates.empty()) {
    std::string msg = std::to_string(duplicates.size()) + " problem(s) in config:";
    for (const auto& d : duplicates) msg += "\n  " + d;
    return Status::InvalidArgument(msg);
  }
  if (!root.is_object()) {
    return Status::InvalidArgument(std::string("config: expected a JSON object at the top, got ") +
                                   TypeName(root));
  }
  Config c;
  std::vector<std::string> problems;
  ObjectReader top(root, "", &problems);
  top.String("data_dir", &c.data_dir, true);
  top.String("backup_dir", &c.backup_dir);
  top.Int("backup_keep", &c.backup_keep, 0, 1 << 20);
  top.Double("poll_interval_s", &c.poll_interval_s, 0.01, 60);
  top.Int("blas_threads", &c.blas_threads, 0, 256);
  top.String("log_level", &c.log_level, false, {"trace", "debug", "info", "warn", "error"});

  if (const json* st = top.Object("store")) {
    ObjectReader r(*st, "store", &problems);
    r.Bool("compress_blobs", &c.store_compress_blobs);
    r.Int("max_rejected_lines", &c.store_max_rejected_lines, 0, int64_t{1} << 40);
    r.Double("max_age_days", &c.store_max_age_days, 0, 36500);
  }

  if (const json* api = top.Object("api")) {
    ObjectReader r(*api, "api", &problems);
    r.String("listen", &c.api.listen);
    r.String("admin_token_env", &c.api.admin_token_env);
    CheckEnvName("api.admin_token_env", c.api.admin_token_env, &problems);
    if (const json* toks = r.Array("admin_tokens")) {
      static const std::regex kTokenName("[a-z0-9_.-]{1,64}");
      std::set<std::string> names = {"admin"};
      for (size_t i = 0; i < toks->size(); ++i) {
        const std::string path = "api.admin_tokens[" + std::to_string(i) + "]";
        const json& t = (*toks)[i];
        if (!t.is_object()) {
          problems.push_back(path + ": expected an object, got " + TypeName(t));
          continue;
        }
        AdminTokenConfig tc;
        ObjectReader tr(t, path, &problems);
        tr.String("name", &tc.name, true);
        tr.String("token_env", &tc.token_env, true);
        tr.Finish();
        CheckEnvName(path + ".token_env", tc.token_env, &problems);
        if (!tc.name.empty() && !std::regex_match(tc.name, kTokenName)) {
          problems.push_back(path + ".name: must match [a-z0-9_.-]{1,64}, got \"" + tc.name + "\"");
        } else if (!tc.name.empty() && !names.insert(tc.name).second) {
          problems.push_back(path + ".name: duplicate token name \"" + tc.name +
                             "\" (\"admin\" is the admin_token_env token's)");
        }
        if (t.contains("token")) {
          problems.push_back(path + ".token: put the secret in an environment variable and name it in token_env");
        }
        c.api.admin_tokens.push_back(tc);
      }
    }
    r.Int("max_body_bytes", &c.api.max_body_bytes, 1024, 1 << 30);
    r.Int("threads", &c.api.threads, 1, 256);
    if (const json* b = r.Find("score_batching", false)) {
      if (b->is_boolean()) {
        c.api.score_batching = b->get<bool>() ? "on" : "off";
      } else {
        r.String("score_batching", &c.api.score_batching, false, {"on", "off"});
      }
    }
    r.Int("score_max_batch", &c.api.score_max_batch, 1, 4096);
    r.Double("score_max_wait_ms", &c.api.score_max_wait_ms, 0, 1000);
    r.Int("score_workers", &c.api.score_workers, 0, 64);
    r.Bool("keep_previous_model", &c.api.keep_previous_model);
    r.Finish();
    std::string host;
    int port = 0;
    Status st = SplitHostPort(c.api.listen, &host, &port);
    if (!st.ok()) problems.push_back("api.listen: " + st.message());
  }

  if (const json* sources = top.Array("sources", true)) {
    if (sources->empty()) problems.push_back("sources: at least one source is required");
    std::vector<size_t> index_of;  // c.sources[j] is sources[index_of[j]]
    for (size_t i = 0; i < sources->size(); ++i) {
      std::string path = "sources[" + std::to_string(i) + "]";
      const json& s = (*sources)[i];
      if (!s.is_object()) {
        problems.push_back(path + ": expected an object, got " + TypeName(s));
        continue;
      }
      SourceConfig sc;
      ObjectReader r(s, path, &problems);
      r.String("path", &sc.path, true);
      r.String("format", &sc.format, false, {"simple", "openai-chat", "custom"});
      r.String("start_at", &sc.start_at, false, {"beginning", "end"});
      r.String("watch", &sc.watch, false, {"auto", "poll"});
      r.Double("rotate_wait_s", &sc.rotate_wait_s, 0, 3600);
      r.Int("max_line_bytes", &sc.max_line_bytes, 64, int64_t{1} << 30);
      if (const json* f = r.Object("fields", sc.format == "custom")) {
        ObjectReader fr(*f, path + ".fields", &problems);
        fr.String("prompt", &sc.fields.prompt, sc.format == "custom");
        fr.String("response", &sc.fields.response);
        fr.String("model", &sc.fields.model);
        fr.String("timestamp", &sc.fields.timestamp);
        fr.String("metadata", &sc.fields.metadata);
        fr.Finish();
        const std::pair<const char*, const std::string*> ptrs[] = {
            {"prompt", &sc.fields.prompt},       {"response", &sc.fields.response},
            {"model", &sc.fields.model},         {"timestamp", &sc.fields.timestamp},
            {"metadata", &sc.fields.metadata}};
        for (const auto& [name, ptr] : ptrs) {
          if (ptr->empty()) continue;
          try {
            json::json_pointer jp(*ptr);
          } catch (const json::exception&) {
            problems.push_back(path + ".fields." + name +
                               ": must be a JSON pointer like \"/request/prompt\", got \"" +
                               *ptr + "\"");
          }
        }
        if (sc.format != "custom") {
          problems.push_back(path + ".fields: only allowed with format \"custom\"");
        }
      }
      r.Finish();
      // A glob that matches another source's path as written (the same
      // glob, or "/logs/*.jsonl" and "/logs/app.jsonl"): those files would
      // be read by the first source only, in its format.
      for (size_t j = 0; j < c.sources.size(); ++j) {
        const std::string& other = c.sources[j].path;
        if (sc.path.empty() || other.empty()) continue;
        if (fnmatch(other.c_str(), sc.path.c_str(), FNM_PATHNAME) == 0 ||
            fnmatch(sc.path.c_str(), other.c_str(), FNM_PATHNAME) == 0) {
          problems.push_back(path + ".path: \"" + sc.path + "\" overlaps sources[" +
                             std::to_string(index_of[j]) + "].path \"" + other +
                             "\" (a file matched by both is read by the first only)");
        }
      }
      c.sources.push_back(sc);
      index_of.push_back(i);
    }
  }

  if (const json* s = top.Object("sampling")) {
    ObjectReader r(*s, "sampling", &problems);
    r.Double("rate", &c.sampling.rate, 0, 1);
    r.String("key", &c.sampling.key, false, {"line", "prompt"});
    r.Bool("dedupe", &c.sampling.dedupe);
    r.Int("min_prompt_chars", &c.sampling.min_prompt_chars, 0, 1 << 30);
    r.Int("max_prompt_chars", &c.sampling.max_prompt_chars, 1, 1 << 30);
    for (const char* key : {"include_models", "exclude_models"}) {
      auto* out = std::string(key) == "include_models" ? &c.sampling.include_models
                                                       : &c.sampling.exclude_models;
      if (const json* list = r.Array(key)) {
        for (size_t i = 0; i < list->size(); ++i) {
          const json& m = (*list)[i];
          if (!m.is_string() || m.get<std::string>().empty()) {
            problems.push_back("sampling." + std::string(key) + "[" + std::to_string(i) +
                               "]: expected a non-empty string, got " + TypeName(m));
            continue;
          }
          out->push_back(m.get<std::string>());
        }
      }
    }
    for (const char* key : {"include_metadata", "exclude_metadata"}) {
      auto* out = std::string(key) == "include_metadata" ? &c.sampling.include_metadata
                                                         : &c.sampling.exclude_metadata;
      if (const json* obj = r.Object(key)) {
        for (auto it = obj->begin(); it != obj->end(); ++it) {
          const std::string path = "sampling." + std::string(key) + "." + it.key();
          if (!it->is_array()) {
            problems.push_back(path + ": expected an array of strings, got " + TypeName(*it));
            continue;
          }
          auto& globs = (*out)[it.key()];
          for (size_t i = 0; i < it->size(); ++i) {
            const json& g = (*it)[i];
            if (!g.is_string()) {
              problems.push_back(path + "[" + std::to_string(i) + "]: expected a string, got " +
                                 TypeName(g));
              continue;
            }
            globs.push_back(g.get<std::string>());
          }
        }
      }
    }
    r.Bool("redact", &c.sampling.redact);
    r.String("stratum", &c.sampling.stratum);
    if (c.sampling.stratum != "model" &&
        (c.sampling.stratum.rfind("metadata.", 0) != 0 || c.sampling.stratum.size() == 9)) {
      problems.push_back("sampling.stratum: must be \"model\" or \"metadata.<key>\", got \"" +
                         c.sampling.stratum + "\"");
    }
    r.Int("max_per_stratum_per_hour", &c.sampling.max_per_stratum_per_hour, 0, int64_t{1} << 40);
    r.Int("max_pending", &c.sampling.max_pending, 0, int64_t{1} << 40);
    r.String("pending_policy", &c.sampling.pending_policy, false, {"pause", "keep_newest"});
    if (const json* pats = r.Array("redact_patterns")) {
      static const std::regex kPatternName("[a-z0-9_]{1,32}");
      for (size_t i = 0; i < pats->size(); ++i) {
        std::string path = "sampling.redact_patterns[" + std::to_string(i) + "]";
        const json& p = (*pats)[i];
        if (!p.is_object()) {
          problems.push_back(path + ": expected an object, got " + TypeName(p));
          continue;
        }
        RedactPattern rp;
        ObjectReader pr(p, path, &problems);
        pr.String("name", &rp.name, true);
        pr.String("regex", &rp.regex, true);
        pr.Finish();
        if (!rp.name.empty() && !std::regex_match(rp.name, kPatternName)) {
          problems.push_back(path + ".name: must match [a-z0-9_]{1,32}, got \"" + rp.name + "\"");
        }
        if (!rp.regex.empty()) {
          try {
            std::regex re(rp.regex, std::regex::ECMAScript);
          } catch (const std::regex_error& e) {
            problems.push_back(path + ".regex: does not compile (ECMAScript): " + e.what());
          }
        }
        c.sampling.redact_patterns.push_back(rp);
      }
    }
    r.Finish();
    if (c.sampling.min_prompt_chars > c.sampling.max_prompt_chars) {
      problems.push_back("sampling.min_prompt_chars: must not exceed sampling.max_prompt_chars");
    }
  }

  if (const json* g = top.Object("generator", true)) {
    ObjectReader r(*g, "generator", &problems);
    ReadEndpoint(r, &c.generator);
    r.Double("temperature", &c.generator.temperature, 0, 5, /*lo_open=*/true);
    r.Int("max_tokens", &c.generator.max_tokens, 1, 1 << 20);
    r.Int("max_identical_retries", &c.generator.max_identical_retries, 0, 100);
    r.Bool("drop_truncated", &c.generator.drop_truncated);
    r.Finish();
    CheckBaseUrl("generator.base_url", c.generator.base_url, &problems);
    CheckKeySource("generator", c.generator, &problems);
  }

  if (const json* j = top.Object("judge", true)) {
    ObjectReader r(*j, "judge", &problems);
    ReadEndpoint(r, &c.judge);
    r.Bool("both_orders", &c.judge.both_orders);
    r.String("inconsistent", &c.judge.inconsistent, false, {"tie", "low_confidence"});
    r.Int("top_logprobs", &c.judge.top_logprobs, 0, 20);
    r.Int("health_window", &c.judge.health_window, 10, 1000000);
    if (const json* dims = r.Array("dimensions", true)) {
      if (dims->empty()) problems.push_back("judge.dimensions: at least one dimension is required");
      static const std::regex kName("[a-z0-9_]{1,64}");
      std::set<std::string> names;
      for (size_t i = 0; i < dims->size(); ++i) {
        std::string path = "judge.dimensions[" + std::to_string(i) + "]";
        const json& d = (*dims)[i];
        if (!d.is_object()) {
          problems.push_back(path + ": expected an object, got " + TypeName(d));
          continue;
        }
        DimensionConfig dc;
        ObjectReader dr(d, path, &problems);
        dr.String("name", &dc.name, true);
        dr.String("rubric", &dc.rubric);
        dr.Double("weight", &dc.weight, 0, 1000);
        dr.String("kind", &dc.kind, false, {"llm", "length", "regex", "rouge_l"});
        if (const json* pats = dr.Array("unsafe_patterns")) {
          for (size_t k = 0; k < pats->size(); ++k) {
            const std::string pp = path + ".unsafe_patterns[" + std::to_string(k) + "]";
            if (!(*pats)[k].is_string()) {
              problems.push_back(pp + ": expected a string");
              continue;
            }
            try {
              std::regex re((*pats)[k].get<std::string>());
            } catch (const std::regex_error& e) {
              problems.push_back(pp + ": not a valid regex: " + e.what());
              continue;
            }
            dc.unsafe_patterns.push_back((*pats)[k].get<std::string>());
          }
        }
        if (dc.kind == "regex" && dc.unsafe_patterns.empty()) {
          problems.push_back(path + ".unsafe_patterns: kind \"regex\" needs at least one pattern");
        }
        dr.Finish();
        if (!dc.name.empty() && !std::regex_match(dc.name, kName)) {
          problems.push_back(path + ".name: must match [a-z0-9_]{1,64}, got \"" + dc.name + "\"");
        }
        if (!dc.name.empty() && !names.insert(dc.name).second) {
          problems.push_back(path + ".name: duplicate dimension \"" + dc.name + "\"");
        }
        c.judge.dimensions.push_back(dc);
      }
    }
    r.Finish();
    CheckBaseUrl("judge.base_url", c.judge.base_url, &problems);
    CheckKeySource("judge", c.judge, &problems);
  }

  if (const json* t = top.Object("trainer")) {
    ObjectReader r(*t, "trainer", &problems);
    r.String("device", &c.trainer.device, false, {"auto", "cpu", "cuda"});
    r.Int("min_new_labels", &c.trainer.min_new_labels, 1, 1 << 30);
    r.Int("interval_s", &c.trainer.interval_s, 0, 86400 * 365);
    r.Double("holdout_fraction", &c.trainer.holdout_fraction, 0, 0.9, /*lo_open=*/true);
    r.Int("epochs", &c.trainer.epochs, 1, 100);
    r.Int("batch_size", &c.trainer.batch_size, 1, 4096);
    r.Double("learning_rate", &c.trainer.learning_rate, 0, 1, /*lo_open=*/true);
    r.Int("threads", &c.trainer.threads, 1, 256);
    r.Int("seed", &c.trainer.seed, 0, std::numeric_limits<int64_t>::max());
    r.String("mode", &c.trainer.mode, false, {"refresh", "scratch"});
    r.Double("replay_ratio", &c.trainer.replay_ratio, 0, 100);
    r.Int("full_retrain_every", &c.trainer.full_retrain_every, 0, 1 << 20);
    r.Double("checkpoint_interval_s", &c.trainer.checkpoint_interval_s, 0, 86400);
    r.Int("keep_models", &c.trainer.keep_models, 0, 1 << 20);
    r.String("anchor_pairs", &c.trainer.anchor_pairs);
    r.Double("length_damping", &c.trainer.length_damping, 0, 1);
    r.String("length_debias", &c.trainer.length_debias, false, {"longer", "both"});
    r.Bool("cuda_bf16_residual", &c.trainer.cuda_bf16_residual);
    r.Bool("cuda_fast_paths", &c.trainer.cuda_fast_paths);
    if (const json* m = r.Object("model")) {
      ObjectReader mr(*m, "trainer.model", &problems);
      mr.String("type", &c.trainer.model.type, false, {"transformer", "linear", "ensemble"});
      mr.String("preset", &c.trainer.model.preset, false, {"tiny", "small", "base"});
      mr.Int("vocab_size", &c.trainer.model.vocab_size, 0, 1 << 20);
      mr.Int("max_len", &c.trainer.model.max_len, 0, 1 << 16);
      mr.Int("d_model", &c.trainer.model.d_model, 0, 1 << 14);
      mr.Int("layers", &c.trainer.model.layers, 0, 256);
      mr.Int("heads", &c.trainer.model.heads, 0, 256);
      mr.String("tokenizer_file", &c.trainer.model.tokenizer_file);
      mr.String("backbone", &c.trainer.model.backbone);
      mr.Finish();
      const auto& mc = c.trainer.model;
      if (mc.d_model > 0 && mc.heads > 0 && mc.d_model % mc.heads != 0) {
        problems.push_back("trainer.model.d_model: must be divisible by trainer.model.heads");
      }
      if (mc.vocab_size > 0 && mc.vocab_size < 300) {
        problems.push_back("trainer.model.vocab_size: must be 0 (preset) or at least 300");
      }
      if (mc.max_len > 0 && mc.max_len < 16) {
        problems.push_back("trainer.model.max_len: must be 0 (preset) or at least 16");
      }
      if (!mc.backbone.empty()) {
        if (mc.type == "linear") {
          problems.push_back("trainer.model.backbone: needs trainer.model.type transformer or "
                             "ensemble (a linear model has no transformer)");
        }
        if (mc.d_model > 0 || mc.layers > 0 || mc.heads > 0) {
          problems.push_back("trainer.model.backbone: sets d_model, layers and heads; leave "
                             "trainer.model.d_model/layers/heads unset");
        }
        // Fine-tuning a pretrained network: the from-scratch default (1e-3)
        // would wreck it in its first steps.
        if (!t->contains("learning_rate")) {
          c.trainer.learning_rate = 3e-5;
        } else if (c.trainer.learning_rate > 1e-4) {
          problems.push_back("trainer.learning_rate: " + std::to_string(c.trainer.learning_rate) +
                             " is too large to fine-tune trainer.model.backbone (use 1e-5 to "
                             "5e-5; the default with a backbone is 3e-5)");
        }
      }
    }
    if (const json* g = r.Object("gate")) {
      ObjectReader gr(*g, "trainer.gate", &problems);
      gr.Double("min_accuracy", &c.trainer.gate.min_accuracy, 0, 1);
      gr.Double("max_regression", &c.trainer.gate.max_regression, 0, 1);
      gr.Double("anchor_max_regression", &c.trainer.gate.anchor_max_regression, 0, 1);
      gr.Finish();
      if (c.trainer.gate.anchor_max_regression >= 0 && c.trainer.anchor_pairs.empty()) {
        problems.push_back(
            "trainer.gate.anchor_max_regression: gates on the anchor set, which needs "
            "trainer.anchor_pairs");
      }
    }
    r.Finish();
  }
  top.Finish();

  if (!problems.empty()) {
    std::string msg = std::to_string(problems.size()) + " problem(s) in config:";
    for (const auto& p : problems) msg += "\n  " + p;
    return Status::InvalidArgument(msg);
  }
  return c;
}

Result<Config> LoadConfigFile(const std::string& path, std::string* text) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::IoError("cannot read config file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::IoError("error reading config file " + path);
  if (text) *text = ss.str();
  auto cfg = ParseConfig(ss.str());
  if (!cfg.ok()) return Status(cfg.status().code(), path + ": " + cfg.status().message());
  return cfg;
}

namespace {

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<std::string> ConfigWarnings(const Config& config) {
  // The names the judge has a rubric for (judge/src/judge.cc DefaultRubric).
  static const char* const kBuiltIn[] = {"helpfulness", "harmlessness", "safety", "conciseness",
                                         "overall"};
  std::vector<std::string> out;
  for (size_t i = 0; i < config.judge.dimensions.size(); ++i) {
    const DimensionConfig& d = config.judge.dimensions[i];
    if (d.kind != "llm" || !d.rubric.empty()) continue;
    std::string lower = d.name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string nearest;
    size_t best = 4;  // suggest within 3 edits
    bool known = false;
    for (const char* b : kBuiltIn) {
      const size_t dist = EditDistance(lower, b);
      known = known || dist == 0;
      if (dist < best) {
        best = dist;
        nearest = b;
      }
    }
    if (known) continue;
    out.push_back("judge.dimensions[" + std::to_string(i) + "].name: \"" + d.name +
                  "\" has no rubric and is not a built-in dimension (helpfulness, harmlessness "
                  "or safety, conciseness, overall): the judge gets a generic one (\"which "
                  "response is better with respect to " +
                  d.name + "?\")" + (nearest.empty() ? "" : "; did you mean \"" + nearest + "\"?") +
                  " Give it a rubric to silence this.");
  }
  return out;
}

namespace {

// One reloadable setting: its key, and how to copy it (true when it changed).
struct ReloadableSetting {
  std::string key;
  std::function<bool(const Config& from, Config* to)> apply;
};

template <class Get>
ReloadableSetting Setting(std::string key, Get get) {
  return {std::move(key), [get](const Config& from, Config* to) {
            auto& dst = get(*to);
            const auto& src = get(from);
            if (dst == src) return false;
            dst = src;
            return true;
          }};
}

// The reloadable settings but store.max_age_days (conditional): see
// IsReloadableKey. The daemon's reload hands each part to what uses it.
const std::vector<ReloadableSetting>& ReloadableSettings() {
  static const std::vector<ReloadableSetting> settings = [] {
    std::vector<ReloadableSetting> v = {
        Setting(
            "log_level", [](auto& c) -> auto& { return c.log_level; }),
        Setting(
            "backup_keep", [](auto& c) -> auto& { return c.backup_keep; }),
        Setting(
            "sampling.rate", [](auto& c) -> auto& { return c.sampling.rate; }),
        Setting(
            "sampling.key", [](auto& c) -> auto& { return c.sampling.key; }),
        Setting(
            "sampling.min_prompt_chars",
            [](auto& c) -> auto& { return c.sampling.min_prompt_chars; }),
        Setting(
            "sampling.max_prompt_chars",
            [](auto& c) -> auto& { return c.sampling.max_prompt_chars; }),
        Setting(
            "sampling.include_models", [](auto& c) -> auto& { return c.sampling.include_models; }),
        Setting(
            "sampling.exclude_models", [](auto& c) -> auto& { return c.sampling.exclude_models; }),
        Setting(
            "sampling.include_metadata",
            [](auto& c) -> auto& { return c.sampling.include_metadata; }),
        Setting(
            "sampling.exclude_metadata",
            [](auto& c) -> auto& { return c.sampling.exclude_metadata; }),
        Setting(
            "sampling.redact", [](auto& c) -> auto& { return c.sampling.redact; }),
        Setting(
            "sampling.redact_patterns",
            [](auto& c) -> auto& { return c.sampling.redact_patterns; }),
        Setting(
            "sampling.stratum", [](auto& c) -> auto& { return c.sampling.stratum; }),
        Setting(
            "sampling.max_per_stratum_per_hour",
            [](auto& c) -> auto& { return c.sampling.max_per_stratum_per_hour; }),
        Setting(
            "sampling.max_pending", [](auto& c) -> auto& { return c.sampling.max_pending; }),
        Setting(
            "sampling.pending_policy", [](auto& c) -> auto& { return c.sampling.pending_policy; }),
        Setting(
            "trainer.min_new_labels", [](auto& c) -> auto& { return c.trainer.min_new_labels; }),
        Setting(
            "trainer.interval_s", [](auto& c) -> auto& { return c.trainer.interval_s; }),
        Setting(
            "trainer.keep_models", [](auto& c) -> auto& { return c.trainer.keep_models; }),
        // The anchor gate needs the anchor pairs the daemon started with.
        {"trainer.gate",
         [](const Config& from, Config* to) {
           GateConfig gate = from.trainer.gate;
           if (from.trainer.anchor_pairs != to->trainer.anchor_pairs) {
             gate.anchor_max_regression = to->trainer.gate.anchor_max_regression;
           }
           if (gate == to->trainer.gate) return false;
           to->trainer.gate = gate;
           return true;
         }},
    };
    auto endpoint = [&v](const std::string& name, auto get) {
      auto field = [&](const char* key, auto member) {
        v.push_back(Setting(
            name + "." + key, [ get, member ](auto& c) -> auto& { return get(c).*member; }));
      };
      // To another file; none (back to api_key_env or no key) needs a restart.
      v.push_back({name + ".api_key_file", [get](const Config& from, Config* to) {
                     const std::string& next = get(from).api_key_file;
                     std::string& now = get(*to).api_key_file;
                     if (next.empty() || next == now) return false;
                     now = next;
                     return true;
                   }});
      field("timeout_s", &EndpointConfig::timeout_s);
      field("connect_timeout_s", &EndpointConfig::connect_timeout_s);
      field("max_retries", &EndpointConfig::max_retries);
      field("requests_per_minute", &EndpointConfig::requests_per_minute);
      field("tokens_per_minute", &EndpointConfig::tokens_per_minute);
      field("breaker_failures", &EndpointConfig::breaker_failures);
      field("breaker_cooldown_s", &EndpointConfig::breaker_cooldown_s);
      field("price_prompt_per_1m", &EndpointConfig::price_prompt_per_1m);
      field("price_completion_per_1m", &EndpointConfig::price_completion_per_1m);
      field("hourly_budget_usd", &EndpointConfig::hourly_budget_usd);
    };
    endpoint(
        "generator", [](auto& c) -> auto& { return c.generator; });
    v.push_back(Setting(
        "generator.temperature", [](auto& c) -> auto& { return c.generator.temperature; }));
    v.push_back(Setting(
        "generator.max_tokens", [](auto& c) -> auto& { return c.generator.max_tokens; }));
    v.push_back(Setting(
        "generator.max_identical_retries",
        [](auto& c) -> auto& { return c.generator.max_identical_retries; }));
    v.push_back(Setting(
        "generator.drop_truncated", [](auto& c) -> auto& { return c.generator.drop_truncated; }));
    endpoint(
        "judge", [](auto& c) -> auto& { return c.judge; });
    return v;
  }();
  return settings;
}

}  // namespace

bool IsReloadableKey(const std::string& key, const Config& running, const Config& fresh) {
  auto under = [&key](const std::string& path) {
    return key == path || (key.size() > path.size() && key.compare(0, path.size(), path) == 0 &&
                           (key[path.size()] == '.' || key[path.size()] == '['));
  };
  if (under("generator.api_key_file")) return !fresh.generator.api_key_file.empty();
  if (under("judge.api_key_file")) return !fresh.judge.api_key_file.empty();
  if (under("trainer.gate.anchor_max_regression")) {
    return running.trainer.anchor_pairs == fresh.trainer.anchor_pairs;
  }
  if (under("store.max_age_days")) {
    return running.store_max_age_days > 0 && fresh.store_max_age_days > 0;
  }
  for (const ReloadableSetting& s : ReloadableSettings()) {
    if (under(s.key)) return true;
  }
  return false;
}

std::vector<std::string> ApplyReloadable(const Config& fresh, Config* running) {
  std::vector<std::string> changed;
  for (const ReloadableSetting& s : ReloadableSettings()) {
    if (s.apply(fresh, running)) changed.push_back(s.key);
  }
  if (running->store_max_age_days > 0 && fresh.store_max_age_days > 0 &&
      fresh.store_max_age_days != running->store_max_age_days) {
    running->store_max_age_days = fresh.store_max_age_days;
    changed.push_back("store.max_age_days");
  }
  return changed;
}

std::string EnvNameForLog(const std::string& name) {
  static const std::regex kConventional("[A-Z_][A-Z0-9_]{0,63}");
  if (std::regex_match(name, kConventional)) return name;
  return "(name not shown: not an UPPER_CASE variable name, it may be a secret pasted in by "
         "mistake)";
}

}  // namespace rlaif
