// rlaifctl: the operator's command line for a running rlaifd.
//
//   rlaifctl [--url URL] [--json] [--reason TEXT] status|models|promote
//   VERSION|rollback|train|pause|resume|export KIND|backup DIR
//
// --reason is recorded with the admin action in the audit log (/v1/events),
// beside the name of the token that took it.
// The admin token is read from RLAIF_TOKEN. Exit codes: 0 ok, 1 the daemon
// answered with an error, 2 usage error (also a URL that is not the daemon's
// base address), 3 the daemon is unreachable or accepted the connection but did
// not answer in time (30 s; status 60 s, reload 90 s, promote and rollback 120 s,
// requeue-dead and backfill 300 s, backup 3600 s, export 300 s between chunks).
#include <httplib.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "rlaif/common/base_url.h"
#include "rlaif/common/strings.h"

namespace {

using json = nlohmann::json;

void Usage() {
  std::cerr << "usage: rlaifctl [--url URL] [--json] [--reason TEXT] "
               "status|models|promote VERSION|rollback|train|pause|resume|reload|export KIND|\n"
               "       backup DIR|\n"
               "       requeue-dead generate|judge [DEAD_REASON] | backfill [DIMENSION] [--max N]\n"
               "  requeue-dead: queue the stage's dead letters (those with DEAD_REASON, e.g.\n"
               "  unparseable_verdict) again, once their cause is fixed; `export dead` lists them\n"
               "  backfill: judge already judged pairs on the dimensions they lack (one added\n"
               "  to judge.dimensions since), at most N pairs (default 10000) a call; each\n"
               "  pair costs judge calls for its missing dimensions\n"
               "  reload: the daemon re-reads its config file (as SIGHUP does) and says what it\n"
               "  applied and what waits for a restart; an invalid file changes nothing (exit 1)\n"
               "  backup DIR: the daemon writes a consistent backup (store + models) to DIR,\n"
               "  a new directory inside its backup root (config backup_dir); DIR is relative\n"
               "  to that root or an absolute path inside it\n"
               "  URL defaults to $RLAIF_URL or http://127.0.0.1:8080; admin token from "
               "$RLAIF_TOKEN\n"
               "  URL is the daemon's base address: http://HOST[:PORT] (port 80 if none), HOST\n"
               "  a name, an IPv4 address or [IPv6]; the scheme is required and there is no\n"
               "  path (a trailing / is fine)"
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
               "; https://HOST[:PORT] (port 443 if none) too"
#else
               "; https:// is not supported by this build"
#endif
               "\n"
               "  a daemon that accepts the connection but does not answer within 30 s (status\n"
               "  60 s, reload 90 s, promote/rollback 120 s, requeue-dead/backfill 300 s,\n"
               "  backup 3600 s, export 300 s between chunks) is unreachable (exit 3)\n";
}

// The daemon's base address from --url or $RLAIF_URL: rlaif::ParseBaseUrl
// (the config check's and the upstream client's parser) with no path. Returns
// "" with `out` filled, or why `url` is not such an address. httplib::Client(url)
// would take anything that does not match its pattern as a host name (so ".../"
// and ".../v1" read as unreachable daemons) and throws on an unknown scheme.
std::string ParseDaemonUrl(const std::string& url, rlaif::BaseUrl& out) {
  const std::string like = "it must be the daemon's base address like http://host:8080 (no path)";
  if (url.find("://") == std::string::npos) return "no scheme (http://): " + like;
  auto parsed = rlaif::ParseBaseUrl(url);
  if (!parsed.ok()) return parsed.status().message() + "; " + like;
  if (!parsed->path.empty()) return "it has a path (\"" + parsed->path + "\"): " + like;
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
  if (parsed->https) {
    return "https is not supported: this rlaifctl's cpp-httplib was built without TLS "
           "(OpenSSL); use http://";
  }
#endif
  out = *parsed;
  return "";
}

std::string Str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

// A number with `digits` decimals, or "-" when absent or null.
std::string Fixed(const json& j, const char* key, int digits) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << j[key].get<double>();
  return os.str();
}

std::string Percent(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << 100.0 * j[key].get<double>() << "%";
  return os.str();
}

// Bytes as "1.2 GB" (decimal units, like df -H), or "-" when absent or null.
std::string Bytes(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  double v = j[key].get<double>();
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  size_t u = 0;
  while (v >= 1000 && u + 1 < std::size(units)) {
    v /= 1000;
    ++u;
  }
  std::ostringstream os;
  os << std::fixed << std::setprecision(u == 0 ? 0 : 1) << v << " " << units[u];
  return os.str();
}

// The disk section: free space, what the store and the models take, and
// what the two retentions did.
void PrintDisk(const json& d) {
  std::cout << "disk:     free " << Bytes(d, "free_bytes") << " of " << Bytes(d, "capacity_bytes");
  if (d.value("free_bytes", json()).is_number() && d.value("capacity_bytes", json()).is_number() &&
      d["capacity_bytes"].get<double>() > 0) {
    std::ostringstream pct;
    pct << std::fixed << std::setprecision(1)
        << 100.0 * d["free_bytes"].get<double>() / d["capacity_bytes"].get<double>();
    std::cout << " (" << pct.str() << "%)";
  }
  std::cout << "  store " << Bytes(d, "store_bytes") << "  models " << Bytes(d, "models_bytes")
            << "  backups " << Bytes(d, "backups_bytes") << "  (measured " << Str(d, "sampled_at")
            << ")\n";
  const json sr = d.value("store_retention", json::object());
  if (!sr.value("max_age_days", json()).is_number()) {
    std::cout << "          store retention off (store.max_age_days = 0): keeps every record\n";
  } else {
    std::ostringstream days;  // 30 or 0.5, not 30.0
    days << sr["max_age_days"].get<double>();
    std::cout << "          store retention " << days.str() << " days";
    const json lp = sr.value("last_pass", json());
    if (sr.value("running_since", json()).is_string()) {
      std::cout << "  pass running since " << Str(sr, "running_since");
    } else if (lp.is_object()) {
      const json del = lp.value("deleted", json::object());
      std::cout << "  last pass " << Str(lp, "at") << " (" << Fixed(lp, "seconds", 1)
                << " s) deleted prompts " << Str(del, "prompts") << " pairs " << Str(del, "pairs")
                << " labels " << Str(del, "labels") << " dead " << Str(del, "dead");
      if (lp.value("error", json()).is_string()) std::cout << "  FAILED: " << Str(lp, "error");
      if (lp.value("cancelled", false)) std::cout << "  (stopped by a shutdown)";
    } else {
      std::cout << "  no pass yet";
    }
    std::cout << "  next " << Str(sr, "next_pass_at") << "\n";
  }
  const json cr = d.value("checkpoint_retention", json::object());
  if (!cr.value("keep_models", json()).is_number()) {
    std::cout << "          checkpoint retention off (trainer.keep_models = 0): keeps every "
                 "checkpoint\n";
  } else {
    std::cout << "          checkpoints: keeps " << Str(cr, "keep_models")
              << " besides live, candidates, held and the rollback target; deleted since start "
              << Str(cr, "deleted_since_start") << "\n";
  }
}

void PrintStatus(const json& s) {
  std::cout << "state:    " << Str(s, "state");
  for (const auto& r : s.value("reasons", json::array())) std::cout << " (" << r.get<std::string>() << ")";
  for (const auto& w : s.value("warnings", json::array())) {
    if (w.is_string()) std::cout << "\nwarning:  " << w.get<std::string>();
  }
  std::cout << "\nversion:  " << Str(s, "version") << "   uptime " << Str(s, "uptime_s") << " s\n";
  const json& c = s["counts"];
  std::cout << "counts:   prompts " << c["prompts"] << "  pairs " << c["pairs"] << "  labels "
            << c["labels"] << "  dead " << c["dead"] << "  since last train "
            << c["labels_since_train"] << "\n";
  for (const char* stage : {"generate", "judge"}) {
    const json& q = s["queues"][stage];
    std::cout << (std::string(stage) == "generate" ? "queues:   " : "          ") << std::left
              << std::setw(9) << stage << std::right << "depth " << std::setw(6) << Str(q, "depth")
              << "  in flight " << std::setw(4) << Str(q, "in_flight") << "  done/s "
              << std::setw(7) << Fixed(q, "done_per_s", 2) << "  errors " << Percent(q, "error_rate")
              << "  dead " << Str(q, "dead_lettered") << "\n";
  }
  // Upstream endpoints: calls by result, attempts, the breaker, the last error.
  if (s.contains("upstream") && s["upstream"].is_object()) {
    for (const char* role : {"generator", "judge"}) {
      if (!s["upstream"].contains(role)) continue;
      const json& u = s["upstream"][role];
      const json calls = u.value("calls", json::object());
      std::cout << (std::string(role) == "generator" ? "upstream: " : "          ") << std::left
                << std::setw(10) << role << std::right << "calls ok " << Str(calls, "ok")
                << "  failed " << Str(calls, "error") << "  refused " << Str(calls, "rejected")
                << "  attempts " << Str(u, "requests") << " (" << Str(u, "request_errors")
                << " failed)  breaker " << Str(u, "breaker") << "\n";
      if (u.contains("responses") && u["responses"].is_object()) {
        const json& r = u["responses"];
        std::cout << "          responses complete " << Str(r, "complete") << "  truncated "
                  << Str(r, "truncated") << "  empty " << Str(r, "empty") << "  identical "
                  << Str(r, "identical") << "\n";
      }
      const std::string held = u.contains("held") && u["held"].is_string() ? Str(u, "held") : "";
      const std::string last = Str(u, "last_error");
      if (!held.empty() || (!last.empty() && last != "-")) {
        std::cout << "          " << (held.empty() ? "last error: " + last : "held: " + held)
                  << "\n";
      }
    }
  }
  if (s.contains("judge") && s["judge"].contains("health") &&
      s["judge"]["health"].value("window_labels", 0) > 0) {
    const json& h = s["judge"]["health"];
    std::cout << "judge:    last " << Str(h, "window_labels") << " labels: orders agree "
              << Percent(h, "position_consistency") << "  first position wins "
              << Percent(h, "first_position_rate") << "  longer wins "
              << Percent(h, "longer_wins_rate") << "  ties " << Percent(h, "tie_rate")
              << "  unparseable " << Percent(h, "parse_failure_rate") << "\n";
  }
  const json& m = s["model"];
  std::cout << "model:    live " << Str(m, "live_version") << "  accuracy "
            << Fixed(m, "accuracy", 3) << "  device " << Str(m, "device") << "\n";
  if (m.value("live_version", json()).is_string() &&
      !m.value("serving_version", json()).is_string()) {
    std::cout << "          NOT SERVING: the live version is not loaded (see reasons above)\n";
  }
  if (s.contains("serving") && s["serving"].is_object()) {
    const json& sv = s["serving"];
    std::cout << "serving:  batching " << Str(sv, "batching") << "  calls " << Str(sv, "batches")
              << "  items " << Str(sv, "items") << "  mean batch " << Fixed(sv, "mean_batch", 1)
              << "  BLAS " << Str(sv, "blas") << "\n";
  }
  const json& t = s["training"];
  // "v0003-... promoted", "- skipped" (no version), or "none yet".
  std::string last = Str(t["last"], "outcome");
  if (last.empty() || last == "-") {
    last = "none yet";
  } else {
    const std::string v = Str(t["last"], "version");
    last = (v.empty() ? "-" : v) + " " + last;
  }
  std::string running = "idle";
  if (t.value("running", false)) {
    running = "running";
    if (t.value("progress", json()).is_number()) running += " " + Percent(t, "progress");
    if (t.value("eta_s", json()).is_number()) {
      running += " (about " + std::to_string(std::lround(t["eta_s"].get<double>())) + " s left)";
    }
  }
  std::cout << "training: " << running << "  runs " << t["runs"] << "  last " << last << "\n";
  if (t["last"].contains("reason") && t["last"]["reason"].is_string() &&
      !t["last"]["reason"].get<std::string>().empty()) {
    std::cout << "          why: " << t["last"]["reason"].get<std::string>() << "\n";
  }
  for (const auto& src : s.value("sources", json::array())) {
    std::cout << "source:   " << Str(src, "path") << "  offset " << src["offset"] << "  lag "
              << src["lag_bytes"] << " B\n";
  }
  if (s.contains("disk") && s["disk"].is_object()) PrintDisk(s["disk"]);
}

void PrintModels(const json& m) {
  std::cout << std::left << std::setw(28) << "VERSION" << std::setw(12) << "STATE" << std::setw(13)
            << "TYPE" << std::setw(10) << "ACCURACY" << std::setw(9) << "HOLDOUT" << "REASON\n";
  json rows = m.value("models", json::array());
  // The live version is always listed, also when it is older than the page.
  bool live_listed = false;
  for (const auto& x : rows) live_listed = live_listed || x.value("live", false);
  const json live_model = m.value("live_model", json());
  if (!live_listed && live_model.is_object()) rows.push_back(live_model);
  for (const auto& x : rows) {
    std::string acc = "-";
    if (x["metrics"].contains("accuracy") && x["metrics"]["accuracy"].is_number()) {
      std::ostringstream os;
      os << std::fixed << std::setprecision(3) << x["metrics"]["accuracy"].get<double>();
      acc = os.str();
    }
    // Models trained before the type was recorded (or imported) show "-".
    const json& metrics = x["metrics"];
    const std::string type = metrics.contains("model_type") && metrics["model_type"].is_string()
                                 ? metrics["model_type"].get<std::string>()
                                 : "-";
    std::cout << std::setw(28) << Str(x, "version") << std::setw(12) << Str(x, "state")
              << std::setw(13) << type << std::setw(10) << acc << std::setw(9)
              << Str(x, "holdout_pairs")
              << (x.value("checkpoint", "") == "deleted" ? "[checkpoint deleted] " : "")
              << Str(x, "reason") << "\n";
  }
  const size_t shown = m.value("models", json::array()).size();
  const size_t total = m.value("total", shown);
  const size_t offset = m.value("offset", size_t{0});
  if (total > offset + shown) {
    std::cout << "... " << total - offset - shown << " older version(s) not shown (newest " << shown
              << " of " << total
              << (live_listed || !live_model.is_object() ? "" : ", and the live one")
              << "): GET /v1/models?offset=" << offset + shown << "&limit=1000\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* env_url = std::getenv("RLAIF_URL");
  // Without surrounding whitespace, like the token (a value read from a file).
  std::string url = rlaif::TrimAsciiSpace(env_url ? env_url : "");
  std::string url_from = "RLAIF_URL";
  if (url.empty()) {
    url = "http://127.0.0.1:8080";
    url_from = "the default URL";
  }
  bool as_json = false;
  long long max = 0;  // --max; 0 = the daemon's default
  std::string reason;
  std::vector<std::string> pos;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--url" && i + 1 < args.size()) {
      url = rlaif::TrimAsciiSpace(args[++i]);
      url_from = "--url";
    } else if (args[i] == "--reason" && i + 1 < args.size()) {
      reason = args[++i];
    } else if (args[i] == "--max" && i + 1 < args.size()) {
      const std::string& v = args[++i];
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1) {
        std::cerr << "rlaifctl: --max needs a positive integer, got \"" << v << "\"\n";
        return 2;
      }
      max = n;
    } else if (args[i] == "--json") {
      as_json = true;
    } else if (args[i] == "-h" || args[i] == "--help") {
      Usage();
      return 0;
    } else {
      pos.push_back(args[i]);
    }
  }
  if (pos.empty()) {
    Usage();
    return 2;
  }
  const std::string cmd = pos[0];
  std::string method = "GET", path;
  std::string request_body = reason.empty() ? "{}" : json{{"reason", reason}}.dump();
  // A word too many is a usage error, not silently dropped ("pause because
  // x" would pause and lose the reason: that is what --reason is for).
  const bool one_word = pos.size() == 1;
  // How long to wait for the answer (each read): a frozen daemon (kill -STOP)
  // still has the kernel accept the connection, so only this ends the wait.
  // Requests answer at once, except promote and rollback (load a model),
  // requeue-dead and backfill (scan the store), backup (copies the store) and
  // export (streamed: the limit applies between chunks). Status may compute
  // the judge's agreement with human labels (a scan, cached for 30 s).
  int read_timeout_s = 30;
  if (cmd == "status" && one_word) {
    path = "/v1/status";
    read_timeout_s = 60;
  } else if (cmd == "models" && one_word) {
    path = "/v1/models";
  } else if (cmd == "promote" && pos.size() == 2 && !pos[1].empty()) {
    method = "POST";
    path = "/v1/models/" + pos[1] + "/promote";
    read_timeout_s = 120;
  } else if (cmd == "rollback" && one_word) {
    method = "POST";
    path = "/v1/models/rollback";
    read_timeout_s = 120;
  } else if ((cmd == "train" || cmd == "pause" || cmd == "resume") && one_word) {
    method = "POST";
    path = "/v1/" + cmd;
  } else if (cmd == "reload" && one_word) {
    method = "POST";
    path = "/v1/reload";
    read_timeout_s = 90;
  } else if (cmd == "backup" && pos.size() == 2) {
    method = "POST";
    path = "/v1/backup";
    request_body = json{{"dir", pos[1]}}.dump();
    read_timeout_s = 3600;
  } else if (cmd == "requeue-dead" && (pos.size() == 2 || pos.size() == 3)) {
    method = "POST";
    path = "/v1/dead/requeue";
    json b = {{"stage", pos[1]}};
    if (pos.size() == 3) b["dead_reason"] = pos[2];
    if (!reason.empty()) b["reason"] = reason;
    request_body = b.dump();
    read_timeout_s = 300;
  } else if (cmd == "backfill" && (pos.size() == 1 || (pos.size() == 2 && !pos[1].empty()))) {
    method = "POST";
    path = "/v1/judge/backfill";
    json b = json::object();
    if (pos.size() == 2) b["dimension"] = pos[1];
    if (max > 0) b["max"] = max;
    if (!reason.empty()) b["reason"] = reason;
    request_body = b.dump();
    read_timeout_s = 300;
  } else if (cmd == "export" && pos.size() == 2) {
    path = "/v1/export?kind=" + pos[1];
    read_timeout_s = 300;
  } else {
    Usage();
    return 2;
  }

  rlaif::BaseUrl base;
  const std::string url_error = ParseDaemonUrl(url, base);
  if (!url_error.empty()) {
    std::cerr << "rlaifctl: invalid URL";
    // Nor a user:password@ part, a query or a fragment (where secrets hide).
    if (url.find_first_of("@?#") == std::string::npos) std::cerr << " \"" << url << "\"";
    std::cerr << " (from " << url_from << "): " << url_error << "\n";
    return 2;
  }
  while (url.size() > 1 && url.back() == '/') url.pop_back();  // as messages show it
  std::unique_ptr<httplib::ClientImpl> cli;
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  if (base.https) cli = std::make_unique<httplib::SSLClient>(base.host, base.port);
#endif
  if (!cli) cli = std::make_unique<httplib::ClientImpl>(base.host, base.port);
  if (!cli->is_valid()) {
    std::cerr << "rlaifctl: cannot set up a client for " << url << " (from " << url_from << ")\n";
    return 2;
  }
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(read_timeout_s, 0);
  httplib::Headers headers;
  // Without surrounding whitespace: a token read from a file often ends in
  // a newline, which no header can carry (the request would be malformed).
  const char* env_token = std::getenv("RLAIF_TOKEN");
  const std::string token = rlaif::TrimAsciiSpace(env_token ? env_token : "");
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  // An export streams to stdout as it arrives (it may be larger than memory);
  // an error status is collected whole for its message.
  int export_status = 0;
  std::string error_body;
  // When the request started, then (export) when its last bytes arrived: a
  // read error that long after it is the read timeout, not a closed connection
  // (httplib reports both as Error::Read).
  using Clock = std::chrono::steady_clock;
  auto last_activity = Clock::now();
  auto res = cmd == "export" ? cli->Get(
                                   path.c_str(), headers,
                                   [&](const httplib::Response& r) {
                                     last_activity = Clock::now();
                                     export_status = r.status;
                                     return true;
                                   },
                                   [&](const char* data, size_t n) {
                                     last_activity = Clock::now();
                                     if (export_status >= 400) {
                                       if (error_body.size() < (1 << 20))
                                         error_body.append(data, n);
                                     } else {
                                       std::cout.write(data, static_cast<std::streamsize>(n));
                                     }
                                     return static_cast<bool>(std::cout);
                                   })
             : method == "GET" ? cli->Get(path.c_str(), headers)
                               : cli->Post(path.c_str(), headers, request_body, "application/json");
  // Half a second of slack for select()'s rounding.
  const bool timed_out = !res && res.error() == httplib::Error::Read &&
                         Clock::now() - last_activity >=
                             std::chrono::seconds(read_timeout_s) - std::chrono::milliseconds(500);
  if (cmd == "export" && export_status == 200 && !res) {
    std::cout.flush();
    std::cerr << "rlaifctl: export " << pos[1] << " was cut off before its end ";
    if (timed_out) {
      std::cerr << "(nothing arrived for " << read_timeout_s << " s)";
    } else {
      std::cerr << "(the daemon's last line says why, if it could: {\"error\": ...})";
    }
    std::cerr << "; what was printed is incomplete\n";
    return 1;
  }
  if (timed_out) {
    std::cerr << "rlaifctl: rlaifd at " << url << " accepted the connection but did not answer "
              << "within " << read_timeout_s
              << " s: it may be overloaded or stopped (is it running: kill -0 PID; stopped: "
                 "ps -o stat= -p PID shows T; see its logs)\n";
    if (method == "POST") {
      std::cerr << "rlaifctl: the " << cmd
                << " may still complete: check `rlaifctl status` and /v1/events before "
                   "running it again\n";
    }
    return 3;
  }
  if (!res) {
    // httplib names its errors in one word ("Connection"); say what it means.
    std::string why;
    switch (res.error()) {
      case httplib::Error::Connection:
      case httplib::Error::ConnectionTimeout:
        why =
            "cannot connect (refused, unreachable, or no answer within 5 s): is rlaifd "
            "running, and is this its api.listen address? (--url or RLAIF_URL)";
        break;
      case httplib::Error::Read:
        why =
            "the connection was closed before a complete response (did rlaifd exit or "
            "restart? see its logs)";
        break;
      default:
        why = std::string("HTTP client error: ") + httplib::to_string(res.error());
    }
    std::cerr << "rlaifctl: cannot reach rlaifd at " << url << ": " << why << "\n";
    return 3;
  }
  if (res->status >= 400) {
    std::string msg = cmd == "export" ? error_body : res->body;
    try {
      msg = json::parse(msg)["error"]["message"].get<std::string>();
    } catch (...) {
    }
    std::cerr << "rlaifctl: " << cmd << " failed (HTTP " << res->status << "): " << msg << "\n";
    if (res->status == 401 && token.empty()) {
      std::cerr << "rlaifctl: RLAIF_TOKEN is not set: admin commands need the daemon's admin "
                   "token in RLAIF_TOKEN\n";
    } else if (res->status == 401 && msg.find("admin API disabled") == std::string::npos) {
      // Never the token itself.
      std::cerr << "rlaifctl: the daemon refused the token in RLAIF_TOKEN: it is none of its "
                   "admin tokens (api.admin_token_env, api.admin_tokens)\n";
    }
    return 1;
  }
  if (cmd == "export") return 0;  // streamed above
  if (as_json) {
    std::cout << res->body;
    if (!res->body.empty() && res->body.back() != '\n') std::cout << "\n";
    return 0;
  }
  try {
    json body = json::parse(res->body);
    if (cmd == "status") {
      PrintStatus(body);
    } else if (cmd == "models") {
      PrintModels(body);
    } else if (cmd == "requeue-dead") {
      std::cout << "re-queued " << Str(body, "requeued") << " " << pos[1] << " item(s)";
      if (body.value("skipped", 0) > 0) {
        std::cout << "; kept " << Str(body, "skipped") << " whose record is gone";
      }
      std::cout << "\n";
    } else if (cmd == "backfill") {
      std::cout << "queued " << Str(body, "queued")
                << " judged pair(s) for their missing dimensions";
      std::string dims;
      const json missing = body.value("missing", json::object());
      for (const auto& [d, n] : missing.items()) {
        dims += (dims.empty() ? "" : ", ") + d + " " + n.dump();
      }
      if (!dims.empty()) std::cout << " (" << dims << ")";
      std::cout << "\n";
      if (body.value("already_queued", 0) > 0) {
        std::cout << "already queued: " << Str(body, "already_queued") << "\n";
      }
      if (body.value("dead_lettered", 0) > 0) {
        std::cout << "dead-lettered (not queued; see requeue-dead judge): "
                  << Str(body, "dead_lettered") << "\n";
      }
      if (body.value("more", false)) {
        std::cout << "more pairs lack a dimension: run backfill again (or a larger --max)\n";
      }
    } else if (cmd == "backup") {
      std::cout << "backup:   " << Str(body, "dir") << "\n"
                << "counts:   prompts " << body["counts"]["prompts"] << "  pairs "
                << body["counts"]["pairs"] << "  labels " << body["counts"]["labels"] << "\n"
                << "models:   " << body["models"].size() << " (live " << Str(body, "live_version")
                << ")  in " << Fixed(body, "seconds", 1) << " s\n";
      for (const auto& d : body.value("deleted_backups", json::array())) {
        std::cout << "deleted:  " << Str(d, "dir") << " (of " << Str(d, "created_at")
                  << ", backup_keep)\n";
      }
    } else if (cmd == "reload") {
      auto list = [&](const char* key) {
        std::string out;
        for (const auto& k : body.value(key, json::array())) {
          out += (out.empty() ? "" : ", ") + k.get<std::string>();
        }
        return out;
      };
      const std::string applied = list("applied"), waiting = list("need_restart");
      std::cout << "reloaded: " << (applied.empty() ? "nothing to apply" : "applied " + applied)
                << "\n";
      if (!waiting.empty()) std::cout << "waiting for a restart: " << waiting << "\n";
      const json key_files = body.value("key_file_errors", json::object());
      for (auto it = key_files.begin(); it != key_files.end(); ++it) {
        std::cout << "key file: " << it.value().get<std::string>() << " (the key in use is kept)\n";
      }
      // The key the file should have given is not in use: not a success.
      if (!key_files.empty()) return 1;
    } else if (cmd == "train") {
      std::cout << "training requested";
      if (body.value("already_running", false)) {
        std::cout << ": a run is going now; one more starts when it ends (requests made "
                     "meanwhile are one)";
      }
      std::cout << "\n";
    } else {
      std::cout << cmd << ": " << body.dump() << "\n";
    }
  } catch (const std::exception& e) {
    std::cout << res->body << "\n";
  }
  return 0;
}
