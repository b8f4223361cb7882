#include "rlaif/daemon/ingest.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <glob.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <set>
#include <string_view>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"

namespace rlaif::daemon {

namespace {

constexpr size_t kFingerprintBytes = 1024;
constexpr size_t kMaxRawInDeadLetter = 4096;
// Checkpoint keys of copies of truncated files: "<path when found>#copy:<dev>:<ino>".
constexpr const char* kCopyKeyMark = "#copy:";
bool IsCopyKey(const std::string& key) { return key.find(kCopyKeyMark) != std::string::npos; }

// The first directory glob() could not read during the current call (errno
// and path), e.g. EMFILE when the process is out of descriptors.
thread_local int glob_errno = 0;
thread_local std::string glob_error_path;

int NoteGlobError(const char* path, int err) {
  // A directory that does not exist (yet) simply has no files.
  if (err == ENOENT || err == ENOTDIR) return 0;
  if (glob_errno == 0) {
    glob_errno = err;
    glob_error_path = path;
  }
  return 0;  // go on with the rest
}

// The paths matching `pattern`, sorted. `*error` (if given) is set to why
// part of it could not be listed: then a followed file missing from the
// result may well still be there.
std::vector<std::string> ExpandGlob(const std::string& pattern, std::string* error = nullptr) {
  std::vector<std::string> out;
  glob_t g{};
  glob_errno = 0;
  const int rc = glob(pattern.c_str(), GLOB_NOSORT, NoteGlobError, &g);
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  if (error != nullptr && (glob_errno != 0 || rc == GLOB_NOSPACE || rc == GLOB_ABORTED)) {
    *error = "cannot list " + (glob_error_path.empty() ? pattern : glob_error_path) + ": " +
             strerror(glob_errno != 0 ? glob_errno : ENOMEM);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void RaiseOpenFileLimit() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    const rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
      spdlog::info("open files limit raised from {} to {}", static_cast<uint64_t>(was),
                   static_cast<uint64_t>(rl.rlim_cur));
      return;
    }
  }
  spdlog::info("open files limit {}", static_cast<uint64_t>(rl.rlim_cur));
}

namespace {

// The magic bytes of the compressors logrotate and friends use.
bool LooksCompressed(std::string_view head) {
  for (std::string_view magic :
       {std::string_view("\x1f\x8b", 2),
        std::string_view("\xfd"
                         "7zXZ\0",
                         6),
        std::string_view("\x28\xb5\x2f\xfd", 4), std::string_view("BZh", 3)}) {
    if (head.substr(0, magic.size()) == magic) return true;
  }
  return false;
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// pread until `len` bytes or EOF.
Result<std::string> ReadAt(int fd, uint64_t offset, size_t len) {
  std::string buf(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf.data() + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("read failed: ") + strerror(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf.resize(got);
  return buf;
}

// Reads up to `len` bytes at `offset` into `buf` (resized to what was read),
// reusing its capacity.
Status ReadInto(int fd, uint64_t offset, size_t len, std::string* buf) {
  buf->resize(len);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf->data() + got, len - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("read failed: ") + strerror(errno));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  buf->resize(got);
  return Status::Ok();
}

// The sampling hash: only decides which prompts `sampling.rate` keeps, so
// unlike Hash64 (which names stored records) it may be fast rather than
// byte-serial: 8 bytes per step, read little-endian so every platform agrees,
// then splitmix64's finalizer. Changing it changes which prompts are sampled.
uint64_t SampleHash(std::string_view s) {
  constexpr uint64_t kMul1 = 0x9e3779b97f4a7c15ULL, kMul2 = 0xbf58476d1ce4e5b9ULL;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  uint64_t h = 0x5a3b1e0dULL ^ (n * kMul1);
  auto load = [](const unsigned char* q, size_t len) {
    uint64_t w = 0;
    for (size_t i = 0; i < len; ++i) w |= static_cast<uint64_t>(q[i]) << (8 * i);
    return w;
  };
  for (; n >= 8; p += 8, n -= 8) {
    h ^= load(p, 8) * kMul1;
    h = ((h << 31) | (h >> 33)) * kMul2;
  }
  if (n > 0) {
    h ^= load(p, n) * kMul1;
    h = ((h << 31) | (h >> 33)) * kMul2;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

bool IsBlank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::string_view TrimView(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Fingerprint(std::string_view head) { return HexId(Hash64(head)); }

bool FingerprintMatches(const storage::SourceCheckpoint& cp, const std::string& head) {
  return head.size() >= cp.fingerprint_len &&
         Fingerprint(std::string_view(head.data(), cp.fingerprint_len)) == cp.fingerprint;
}

bool GlobMatch(const std::string& pattern, const std::string& name) {
  return fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

constexpr char kLineTooLong[] = "line_too_long";

// The ingest counters' help texts, one place for the pre-registration at
// zero (so that rate() and alerts see every series from the first scrape)
// and the increments.
Counter& IngestCounter(MetricsRegistry& m, std::string_view name, const MetricLabels& labels = {}) {
  static const std::map<std::string_view, std::string_view> kHelp = {
      {"rlaif_ingest_backpressure_total",
       "Prompts not queued for generation because the pending pool was full, by policy."},
      {"rlaif_ingest_bytes_total", "Log bytes read."},
      {"rlaif_ingest_duplicates_total", "Prompts already stored (dedupe)."},
      {"rlaif_ingest_errors_total", "Files that could not be read."},
      {"rlaif_ingest_filtered_total", "Lines skipped by a filter."},
      {"rlaif_ingest_inotify_wakeups_total",
       "Polls started early because inotify reported a new log file."},
      {"rlaif_ingest_lines_total", "Log lines read."},
      {"rlaif_ingest_logged_labels_total",
       "Labels stated by log lines (rewrite, ab with preferred)."},
      {"rlaif_ingest_logged_pairs_total",
       "Pairs taken from log lines (rewrite, ab), stored without generation."},
      {"rlaif_ingest_rejected_total", "Rejected log lines."},
      {"rlaif_ingest_rejected_pruned_total",
       "Dead letters of rejected log lines deleted, oldest first, to keep "
       "store.max_rejected_lines."},
      {"rlaif_ingest_rotations_total", "Files replaced under the same path."},
      {"rlaif_ingest_sampled_out_total", "Prompts skipped by sampling."},
      {"rlaif_ingest_stored_total", "New prompts stored."},
      {"rlaif_ingest_truncation_copies_total",
       "Copies of truncated files found and read from the committed offset."},
      {"rlaif_ingest_truncations_total", "Files truncated in place."},
      {"rlaif_redactions_total", "PII/secret spans redacted, by kind."},
  };
  return m.GetCounter(std::string(name), std::string(kHelp.at(name)), labels);
}

}  // namespace

// A followed file. Owned by files_ (PollOnce thread); the descriptor is closed
// when the file is released.
struct Ingestor::Tracked {
  int fd = -1;
  size_t source = 0;
  std::string path;              // where it is now (or was last seen)
  storage::SourceCheckpoint cp;  // committed state; cp.path is its store key
  bool committed = false;        // records_[cp.path] holds this file's state
  bool in_glob = true;           // at a path matching its source glob this poll
  bool gone = false;             // deleted, or moved out of its directory
  uint64_t size = 0;             // size seen at the end of the last read
  int idle_polls = 0;            // consecutive polls that found nothing new
  // An over-long line without its newline yet, at offset long_line_at: the
  // bytes up to long_line_scanned hold no newline (not searched again).
  uint64_t long_line_at = UINT64_MAX;
  uint64_t long_line_scanned = 0;
  double out_of_glob_since = 0;  // MonotonicSeconds() when it left the glob (0: in it)
  ~Tracked() {
    if (fd >= 0) close(fd);
  }
  std::string DesiredKey() const {
    if (IsCopyKey(cp.path)) return cp.path;  // a copy keeps the key it was found under
    if (!gone) return path;
    return path + "#deleted:" + std::to_string(cp.device) + ":" + std::to_string(cp.inode);
  }
};

struct Ingestor::Located {
  std::string path;
  size_t source = 0;
  bool in_glob = false;
  struct stat st {};
};

Status ParseSimpleLine(const std::string& line, std::string* prompt, std::string* response) {
  SourceConfig simple;
  auto parser = LineParser::Create(simple);
  if (!parser.ok()) return parser.status();
  ParsedLine pl;
  RLAIF_RETURN_IF_ERROR(parser->Parse(line, &pl));
  *prompt = std::move(pl.prompt);
  *response = std::move(pl.response);
  return Status::Ok();
}

std::string PromptId(const std::string& text) { return HexId(Hash64(TrimView(text))); }

Ingestor::Ingestor(std::vector<SourceConfig> sources, SamplingConfig sampling,
                   storage::Store& store, MetricsRegistry& metrics)
    : sources_(std::move(sources)),
      sampling_(std::move(sampling)),
      store_(store),
      metrics_(metrics) {
  for (const auto& s : sources_) {
    auto p = LineParser::Create(s);
    if (!p.ok()) {
      spdlog::error("ingest: source {} skipped: {}", s.path, p.status().message());
      parsers_.emplace_back(std::nullopt);
    } else {
      parsers_.emplace_back(std::move(*p));
    }
  }
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (std::any_of(sources_.begin(), sources_.end(),
                  [](const SourceConfig& s) { return s.watch != "poll"; })) {
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0) {
      spdlog::warn("ingest: inotify unavailable ({}): new files are found by polling",
                   strerror(errno));
    }
  }
  backpressure_paused_ =
      &IngestCounter(metrics_, "rlaif_ingest_backpressure_total", {{"policy", "pause"}});
  backpressure_evicted_ =
      &IngestCounter(metrics_, "rlaif_ingest_backpressure_total", {{"policy", "keep_newest"}});
  // Every series with a known label set exists from the start, at 0: an
  // alert on rate(rlaif_ingest_rejected_total[5m]) sees the first bad line.
  for (const char* name :
       {"rlaif_ingest_lines_total", "rlaif_ingest_bytes_total", "rlaif_ingest_stored_total",
        "rlaif_ingest_duplicates_total", "rlaif_ingest_logged_pairs_total",
        "rlaif_ingest_logged_labels_total", "rlaif_ingest_errors_total",
        "rlaif_ingest_truncations_total", "rlaif_ingest_rotations_total",
        "rlaif_ingest_truncation_copies_total", "rlaif_ingest_sampled_out_total",
        "rlaif_ingest_inotify_wakeups_total", "rlaif_ingest_rejected_pruned_total"}) {
    IngestCounter(metrics_, name);
  }
  for (const std::string& reason : ParseRejectReasons()) {
    IngestCounter(metrics_, "rlaif_ingest_rejected_total", {{"reason", reason}});
  }
  IngestCounter(metrics_, "rlaif_ingest_rejected_total", {{"reason", kLineTooLong}});
  for (const char* reason : {"model", "metadata", "length", "stratum_cap"}) {
    IngestCounter(metrics_, "rlaif_ingest_filtered_total", {{"reason", reason}});
  }
  redactor_ = MakeRedactor(sampling_);
}

std::optional<Redactor> Ingestor::MakeRedactor(const SamplingConfig& sampling) {
  if (!sampling.redact) return std::nullopt;
  auto r = Redactor::Create(sampling.redact_patterns);
  if (r.ok()) return std::move(*r);
  // ParseConfig rejects bad patterns; keep the built-in kinds regardless.
  spdlog::error("ingest: {}; redacting built-in kinds only", r.status().message());
  return std::move(*Redactor::Create({}));
}

void Ingestor::SetSampling(SamplingConfig sampling) {
  std::lock_guard<std::mutex> lock(mu_);
  next_sampling_ = std::move(sampling);
}

void Ingestor::ApplyNextSampling() {
  std::optional<SamplingConfig> next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    next.swap(next_sampling_);
  }
  if (!next) return;
  next->dedupe = sampling_.dedupe;  // prompt ids: kept until a restart
  if (next->redact != sampling_.redact || next->redact_patterns != sampling_.redact_patterns) {
    redactor_ = MakeRedactor(*next);
  }
  if (next->stratum != sampling_.stratum) stratum_counts_.clear();  // other strata
  sampling_ = std::move(*next);
  spdlog::info("ingest: sampling reloaded (rate {}, key {}, redact {})", sampling_.rate,
               sampling_.key, sampling_.redact ? "on" : "off");
}

Ingestor::~Ingestor() {
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

std::string Ingestor::WatchMode() const { return inotify_fd_ >= 0 ? "inotify" : "poll"; }

void Ingestor::Wake() {
  if (wake_fd_ < 0) return;
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // EAGAIN: the counter is already non-zero, so a wake-up is pending anyway.
  }
}

void Ingestor::WatchDirectories() {
  if (inotify_fd_ < 0) return;
  for (size_t si = 0; si < sources_.size(); ++si) {
    if (!parsers_[si] || sources_[si].watch == "poll") continue;
    // The glob's directory part may itself be a glob (/var/log/*/app.jsonl).
    for (const auto& dir : ExpandGlob(DirName(sources_[si].path))) {
      int wd = inotify_add_watch(inotify_fd_, dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
      if (wd >= 0) watch_sources_[wd].insert(si);  // a directory keeps its descriptor
    }
  }
}

bool Ingestor::WaitForNewFiles(double max_seconds) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(std::max(0.0, max_seconds));
  alignas(struct inotify_event) char buf[16 * 1024];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    struct pollfd fds[2];
    nfds_t n = 0;
    if (wake_fd_ >= 0) fds[n++] = {wake_fd_, POLLIN, 0};
    if (inotify_fd_ >= 0) fds[n++] = {inotify_fd_, POLLIN, 0};
    int r = poll(fds, n, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (r < 0 && errno != EINTR) return false;
    if (r <= 0) continue;
    if (wake_fd_ >= 0 && (fds[0].revents & POLLIN)) {
      uint64_t v;
      if (read(wake_fd_, &v, sizeof(v)) < 0) {
        // Nothing to do: the wake-up was consumed by someone else.
      }
      return false;
    }
    bool match = false;
    ssize_t len;
    while ((len = read(inotify_fd_, buf, sizeof(buf))) > 0) {
      for (char* p = buf; p < buf + len;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        p += sizeof(struct inotify_event) + ev->len;
        auto w = watch_sources_.find(ev->wd);
        if (ev->len == 0 || w == watch_sources_.end()) continue;
        for (size_t si : w->second) {
          const std::string& glob = sources_[si].path;
          const size_t slash = glob.rfind('/');
          const std::string base = slash == std::string::npos ? glob : glob.substr(slash + 1);
          match = match || GlobMatch(base, ev->name);
        }
      }
    }
    if (match) {
      IngestCounter(metrics_, "rlaif_ingest_inotify_wakeups_total").Inc();
      return true;
    }
  }
}

bool Ingestor::SampleKeeps(uint64_t prompt_hash) const {
  return HashToUnit(prompt_hash) < sampling_.rate;
}

size_t Ingestor::OpenFiles() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_.size();  // one entry per followed file, as of the last poll
}

std::vector<SourceStatus> Ingestor::Sources() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

std::vector<Ingestor::GlobStatus> Ingestor::Globs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return globs_;
}

Status Ingestor::LoadCheckpoints() {
  auto all = store_.ListSources();
  if (!all.ok()) return Status::IoError("store: " + all.status().message());
  records_.clear();
  for (auto& cp : *all) records_[cp.path] = cp;
  start_at_end_.assign(sources_.size(), false);
  for (size_t si = 0; si < sources_.size(); ++si) {
    if (sources_[si].start_at != "end") continue;
    // This source's own files: its glob, or its glob followed by a rotation
    // suffix (app.jsonl.1, app.jsonl.2026-11-28, ...), not a neighbour's.
    const std::string own = sources_[si].path;
    const std::string rotated = own + "*";
    start_at_end_[si] = std::none_of(records_.begin(), records_.end(), [&](const auto& kv) {
      return fnmatch(own.c_str(), kv.first.c_str(), FNM_PATHNAME) == 0 ||
             fnmatch(rotated.c_str(), kv.first.c_str(), FNM_PATHNAME) == 0;
    });
  }
  loaded_ = true;
  return Status::Ok();
}

std::optional<storage::SourceCheckpoint> Ingestor::FindByIdentity(const FileKey& key,
                                                                  const std::string& head) const {
  std::optional<storage::SourceCheckpoint> best;
  for (const auto& [path, cp] : records_) {
    if (cp.device != key.dev || cp.inode != key.ino || !FingerprintMatches(cp, head)) continue;
    // Stale copies left behind by a rename have a smaller offset.
    if (!best || cp.offset > best->offset ||
        (cp.offset == best->offset && cp.updated_at_ms > best->updated_at_ms)) {
      best = cp;
    }
  }
  return best;
}

namespace {

bool AnyGlob(const std::vector<std::string>& globs, const std::string& value) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return GlobMatch(g, value); });
}

const std::string* MetadataValue(const ParsedLine& line, const std::string& key) {
  for (const auto& [k, v] : line.metadata) {
    if (k == key) return &v;
  }
  return nullptr;
}

}  // namespace

bool Ingestor::KeepModel(const std::string& model) const {
  if (!sampling_.include_models.empty() && !AnyGlob(sampling_.include_models, model)) return false;
  return !AnyGlob(sampling_.exclude_models, model);
}

bool Ingestor::KeepMetadata(const ParsedLine& line) const {
  for (const auto& [key, globs] : sampling_.include_metadata) {
    const std::string* v = MetadataValue(line, key);
    if (v == nullptr || !AnyGlob(globs, *v)) return false;
  }
  for (const auto& [key, globs] : sampling_.exclude_metadata) {
    const std::string* v = MetadataValue(line, key);
    if (v != nullptr && AnyGlob(globs, *v)) return false;
  }
  return true;
}

bool Ingestor::UnderStratumCap(const ParsedLine& line) {
  if (sampling_.max_per_stratum_per_hour <= 0) return true;
  // In memory only: a restart starts the hour's shares afresh (more may be
  // kept that hour), which never loses or repeats a line.
  const int64_t hour = NowMs() / 3'600'000;
  if (hour != stratum_hour_) {
    stratum_hour_ = hour;
    stratum_counts_.clear();
  }
  std::string stratum = line.model;
  if (sampling_.stratum != "model") {
    const std::string key = sampling_.stratum.substr(9);  // after "metadata."
    stratum.clear();
    if (const std::string* v = MetadataValue(line, key)) stratum = *v;
  }
  int64_t& n = stratum_counts_[stratum];
  if (n >= sampling_.max_per_stratum_per_hour) return false;
  ++n;
  return true;
}

Result<IngestPassStats> Ingestor::PollOnce() {
  IngestPassStats stats;
  ApplyNextSampling();
  const bool first = !loaded_;
  if (first) RLAIF_RETURN_IF_ERROR(LoadCheckpoints());
  WatchDirectories();

  // 1. Locate: files at glob paths, followed files wherever they went, and
  //    (first poll) files of stored checkpoints that were rotated meanwhile.
  std::map<FileKey, Located> found;
  std::string locate_error;  // a glob could not list a directory this poll (the last one)
  std::vector<bool> glob_failed(sources_.size(), false);
  std::vector<int> matched(sources_.size(), 0);
  for (size_t si = 0; si < sources_.size(); ++si) {
    if (!parsers_[si]) continue;
    std::string error;
    for (const auto& path : ExpandGlob(sources_[si].path, &error)) {
      Located loc;
      if (stat(path.c_str(), &loc.st) != 0 || !S_ISREG(loc.st.st_mode)) continue;
      ++matched[si];
      FileKey key{static_cast<uint64_t>(loc.st.st_dev), static_cast<uint64_t>(loc.st.st_ino)};
      if (auto other = found.find(key); other != found.end()) {
        // Two sources' globs match this file: the first source wins (its
        // format parses it). Said once per file: the other source's format
        // is not used, which is rarely what was meant.
        if (other->second.source != si && overlap_warned_.insert(path).second) {
          spdlog::warn(
              "ingest: {} matches sources[{}] and sources[{}]: read as sources[{}] ({}) "
              "only; make the globs disjoint",
              path, other->second.source, si, other->second.source,
              sources_[other->second.source].format);
        }
        continue;
      }
      loc.path = path;
      loc.source = si;
      loc.in_glob = true;
      found.emplace(key, std::move(loc));
    }
    if (!error.empty()) {
      locate_error = error;
      glob_failed[si] = true;
    }
  }
  {
    // A source matching no file reads nothing: said at once (a warning, the
    // first time and when it comes back) and in /v1/status after a while.
    std::lock_guard<std::mutex> lock(mu_);
    if (globs_.size() != sources_.size()) {
      globs_.assign(sources_.size(), GlobStatus{});
      for (size_t si = 0; si < sources_.size(); ++si) globs_[si].glob = sources_[si].path;
    }
    const double now = MonotonicSeconds();
    for (size_t si = 0; si < sources_.size(); ++si) {
      GlobStatus& g = globs_[si];
      if (!parsers_[si]) {  // not read at all (its format was refused at start)
        g.files = -1;
        continue;
      }
      if (matched[si] > 0) {
        if (g.empty_since_s >= 0) {
          spdlog::info("ingest: sources[{}] {} matches {} file(s) again", si, g.glob, matched[si]);
        }
        g.empty_since_s = -1;
      } else if (g.empty_since_s < 0) {
        g.empty_since_s = now;
        spdlog::warn(
            "ingest: sources[{}] {} matches no file: nothing is read from it until one appears "
            "(check the path, and that the directory exists and rlaifd may list it)",
            si, g.glob);
      }
      g.files = matched[si];
    }
  }
  // A glob that could not list a directory (EMFILE: out of descriptors,
  // EACCES) says nothing about the files it missed: a followed file of that
  // source still at its path keeps its place in the glob this poll, instead
  // of being taken for rotated away (released, then reopened on every poll).
  // One no longer at its path did move or go: it is read to its end through
  // its descriptor as usual. Said once per 10 minutes.
  const double now = MonotonicSeconds();
  if (locate_error.empty()) {
    glob_error_said_at_ = -1;
  } else if (glob_error_said_at_ < 0 || now - glob_error_said_at_ >= 600) {
    spdlog::warn(
        "ingest: {}; followed files keep their state until it can (said again in 10 "
        "minutes if it persists)",
        locate_error);
    IngestCounter(metrics_, "rlaif_ingest_errors_total").Inc();
    glob_error_said_at_ = now;
  }
  struct Wanted {
    std::string old_path;
    size_t source;
  };
  std::map<FileKey, Wanted> wanted;  // not at a glob path: look near their last path
  for (auto& [key, t] : files_) {
    if (!found.count(key)) wanted[key] = {t->path, t->source};
  }
  if (first) {
    for (const auto& [path, cp] : records_) {
      FileKey key{cp.device, cp.inode};
      if (found.count(key) || wanted.count(key)) continue;
      const std::string dir = DirName(path);
      for (size_t si = 0; si < sources_.size(); ++si) {
        if (parsers_[si] && GlobMatch(DirName(sources_[si].path), dir)) {
          wanted[key] = {path, si};
          break;
        }
      }
    }
  }
  std::map<std::string, std::vector<FileKey>> scan_dirs;
  for (const auto& [key, w] : wanted) {
    Located loc;
    if (stat(w.old_path.c_str(), &loc.st) == 0 && S_ISREG(loc.st.st_mode) &&
        static_cast<uint64_t>(loc.st.st_dev) == key.dev &&
        static_cast<uint64_t>(loc.st.st_ino) == key.ino) {
      loc.path = w.old_path;
      loc.source = w.source;
      // Not listed by a glob that failed: still where it was, in its glob.
      auto t = files_.find(key);
      loc.in_glob = glob_failed[w.source] && t != files_.end() && t->second->in_glob;
      found.emplace(key, std::move(loc));
    } else {
      scan_dirs[DirName(w.old_path)].push_back(key);
      // A glob path that is a symlink (Kubernetes: /var/log/containers/*.log
      // -> /var/log/pods/.../0.log): the file was rotated in the directory
      // of the link's target, not of the link.
      if (char real[PATH_MAX]; realpath(w.old_path.c_str(), real) != nullptr) {
        const std::string real_dir = DirName(real);
        if (real_dir != DirName(w.old_path)) scan_dirs[real_dir].push_back(key);
      }
    }
  }
  for (const auto& [dir, keys] : scan_dirs) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    std::set<FileKey> want(keys.begin(), keys.end());
    while (struct dirent* e = readdir(d)) {
      if (want.empty()) break;
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      FileKey key{0, static_cast<uint64_t>(e->d_ino)};
      bool maybe =
          std::any_of(want.begin(), want.end(), [&](const FileKey& k) { return k.ino == key.ino; });
      if (!maybe) continue;
      Located loc;
      if (fstatat(dirfd(d), e->d_name, &loc.st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(loc.st.st_mode)) {
        continue;
      }
      key.dev = static_cast<uint64_t>(loc.st.st_dev);
      if (!want.count(key)) continue;
      loc.path = (dir == "/" ? "" : dir) + "/" + e->d_name;
      loc.source = wanted[key].source;
      found.emplace(key, std::move(loc));
      want.erase(key);
    }
    closedir(d);
  }

  // 1b. Truncated files: find and checkpoint the copy holding their unread lines.
  std::set<FileKey> truncated;
  RLAIF_RETURN_IF_ERROR(RecoverTruncationCopies(found, &truncated));

  // 2. Open what is not followed yet and decide where it resumes.
  for (auto& [key, loc] : found) {
    auto it = files_.find(key);
    if (it != files_.end()) {
      it->second->path = loc.path;
      it->second->in_glob = loc.in_glob;
      it->second->gone = false;
      if (loc.in_glob) {
        it->second->out_of_glob_since = 0;
      } else if (it->second->out_of_glob_since == 0) {
        it->second->out_of_glob_since = now;  // rotated away this poll
      }
      continue;
    }
    if (!loc.in_glob) {
      // A stored checkpoint found away from the glob: follow it only if unfinished.
      auto r = std::find_if(records_.begin(), records_.end(), [&](const auto& kv) {
        return kv.second.device == key.dev && kv.second.inode == key.ino;
      });
      if (r == records_.end()) continue;
      uint64_t max_offset = 0;
      bool copy_key = false;  // a copy's checkpoint never moves with the file
      for (const auto& [p, cp] : records_) {
        if (cp.device == key.dev && cp.inode == key.ino) {
          max_offset = std::max(max_offset, cp.offset);
          copy_key = copy_key || IsCopyKey(p);
        }
      }
      if (!truncated.count(key) && copy_key &&
          static_cast<uint64_t>(loc.st.st_size) <= max_offset) {
        continue;
      }
      // A finished file whose checkpoint is already under its current name
      // needs nothing; one that moved is followed for one poll so that its
      // checkpoint moves with it (its old key may be reused by a new file).
      if (!truncated.count(key) && static_cast<uint64_t>(loc.st.st_size) <= max_offset &&
          records_.count(loc.path) && records_[loc.path].device == key.dev &&
          records_[loc.path].inode == key.ino) {
        continue;
      }
    }
    // A compressed file seen before (same identity and size) is not opened
    // and read again on every poll.
    if (auto c = compressed_.find(key);
        c != compressed_.end() && c->second == static_cast<uint64_t>(loc.st.st_size)) {
      continue;
    }
    // O_NONBLOCK: the path was a regular file when stat'ed, but may have been
    // replaced since (a FIFO would block open() and the ingest thread with it);
    // the identity check after fstat drops anything else. Reads of a regular
    // file ignore the flag.
    int fd = open(loc.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      // Once per file and reason until it opens (then again after 10
      // minutes): a file that stays unreadable is one error, not one a poll.
      const std::string why = strerror(errno);
      auto [it, fresh] = open_failures_.try_emplace(loc.path, why, now);
      if (fresh || it->second.first != why || now - it->second.second >= 600) {
        spdlog::warn("ingest: cannot open {}: {} (said again in 10 minutes if it persists)",
                     loc.path, why);
        IngestCounter(metrics_, "rlaif_ingest_errors_total").Inc();
        it->second = {why, now};
      }
      continue;
    }
    open_failures_.erase(loc.path);
    auto t = std::make_unique<Tracked>();
    t->fd = fd;
    struct stat st {};
    if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_dev) != key.dev ||
        static_cast<uint64_t>(st.st_ino) != key.ino) {
      continue;  // replaced between stat and open: next poll
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    auto head = ReadAt(fd, 0, std::min<uint64_t>(size, kFingerprintBytes));
    if (!head.ok()) continue;
    t->source = loc.source;
    t->path = loc.path;
    t->in_glob = loc.in_glob;
    if (!loc.in_glob) t->out_of_glob_since = now;
    auto id = FindByIdentity(key, *head);
    if (!id && LooksCompressed(*head)) {
      // A rotated log compressed in place (logrotate's compress with a glob
      // that matches *.gz): its bytes are not lines. Skipped, said once.
      if (compressed_.insert_or_assign(key, size).second) {
        spdlog::warn(
            "ingest: {} is compressed (gzip, xz, zstd or bzip2): not read; make the "
            "glob match only the uncompressed logs",
            loc.path);
        IngestCounter(metrics_, "rlaif_ingest_errors_total").Inc();
      }
      continue;
    }
    if (id) {
      t->cp = *id;
      t->committed = true;
    } else {
      // An unknown file that does not match the glob is ignored, unless it is
      // a followed file that was truncated (its copy was found): read from 0.
      if (!loc.in_glob && !truncated.count(key)) continue;
      auto old = records_.find(loc.path);
      bool skip_to_end = false;
      t->cp = storage::SourceCheckpoint{};
      t->cp.path = loc.path;
      t->cp.device = key.dev;
      t->cp.inode = key.ino;
      if (!loc.in_glob) {
        spdlog::warn("ingest: {} was truncated (copy found): re-reading it from 0", loc.path);
        IngestCounter(metrics_, "rlaif_ingest_truncations_total").Inc();
        ++rotations_by_path_[loc.path];
      } else if (old != records_.end()) {
        if (old->second.device == key.dev && old->second.inode == key.ino) {
          spdlog::warn(
              "ingest: {} was rewritten or truncated (first bytes changed): re-reading "
              "from 0",
              loc.path);
          IngestCounter(metrics_, "rlaif_ingest_truncations_total").Inc();
        } else {
          spdlog::info("ingest: {} is a new file (identity changed): reading from its start",
                       loc.path);
          IngestCounter(metrics_, "rlaif_ingest_rotations_total").Inc();
        }
        ++rotations_by_path_[loc.path];
      } else if (first && start_at_end_[loc.source]) {
        // start_at "end" applies to the files already there when a source is
        // read for the first time (no checkpoint of it in the store): start
        // after their last complete line. Files that appear later, also
        // while rlaifd is down, are new traffic and are read from the start.
        t->cp.offset = size;
        auto tail = ReadAt(fd, size > 65536 ? size - 65536 : 0, std::min<uint64_t>(size, 65536));
        if (tail.ok()) {
          size_t nl = tail->rfind('\n');
          t->cp.offset =
              nl == std::string::npos ? (size > 65536 ? size : 0) : size - tail->size() + nl + 1;
        }
        skip_to_end = true;
      }
      t->cp.fingerprint_len = head->size();
      t->cp.fingerprint = Fingerprint(*head);
      if (skip_to_end) {
        // Committed at once: a shutdown before this file is read must not
        // leave it without a checkpoint while its neighbours have theirs
        // (the next start would read its history from the start).
        t->cp.updated_at_ms = NowMs();
        storage::IngestCommitStats cs;
        if (Status cst = store_.CommitIngest(t->cp, {}, {}, &cs); !cst.ok()) {
          return Status::IoError("store: " + cst.ToString());
        }
        records_[t->cp.path] = t->cp;
        t->committed = true;
      }
    }
    files_.emplace(key, std::move(t));
  }
  for (auto& [key, t] : files_) {
    if (!found.count(key)) {
      if (!t->gone) {
        spdlog::info("ingest: {} was deleted or moved away: reading it to its end", t->path);
      }
      t->gone = true;
      t->in_glob = false;
      if (t->out_of_glob_since == 0) t->out_of_glob_since = now;
    }
  }

  // 3. Move checkpoints to the files' current paths (see ingest.h), then read.
  RLAIF_RETURN_IF_ERROR(Rehome());
  std::vector<Tracked*> order;
  for (auto& [key, t] : files_) order.push_back(t.get());
  // Rotated files first: their lines are older.
  std::stable_sort(order.begin(), order.end(),
                   [](const Tracked* a, const Tracked* b) { return a->in_glob < b->in_glob; });
  std::vector<FileKey> release;
  for (Tracked* t : order) {
    if (interrupted_ && interrupted_()) break;
    const uint64_t before_offset = t->cp.offset;
    const uint64_t before_size = t->size;
    Status st = ReadToEnd(*t, /*final_tail=*/false, &stats);
    if (!st.ok()) {
      if (st.code() == StatusCode::kIoError && st.message().rfind("store:", 0) == 0) return st;
      spdlog::warn("ingest: {}: {}", t->path, st.ToString());
      IngestCounter(metrics_, "rlaif_ingest_errors_total").Inc();
      continue;
    }
    const bool idle = t->cp.offset == before_offset && t->size == before_size;
    t->idle_polls = idle ? t->idle_polls + 1 : 0;
    const double rotate_wait = sources_[t->source].rotate_wait_s;
    if (!t->in_glob && t->idle_polls >= 1 && now - t->out_of_glob_since >= rotate_wait) {
      // Rotated away (or deleted) at least rotate_wait_s ago, drained, and
      // quiet for a whole poll: the writer has had time to reopen its log,
      // so take an unterminated tail as the last line, then let go. Released
      // on the poll that saw the rotation, a writer's last lines to its old
      // descriptor (before it reopens) would be lost.
      st = ReadToEnd(*t, /*final_tail=*/true, &stats);
      if (!st.ok() && st.code() == StatusCode::kIoError && st.message().rfind("store:", 0) == 0) {
        return st;
      }
      if (interrupted_ && interrupted_()) break;  // not read to its end: not released
      spdlog::info("ingest: released {} at offset {}", t->path, t->cp.offset);
      release.push_back(FileKey{t->cp.device, t->cp.inode});
    }
  }
  for (const auto& key : release) files_.erase(key);
  NoteRejections({});  // reports what waited out the minute
  metrics_.GetGauge("rlaif_ingest_open_files", "Log files held open (tailed or drained).")
      .Set(static_cast<double>(files_.size()));
  PublishStatus();
  return stats;
}

std::optional<std::pair<std::string, struct stat>> Ingestor::FindTruncationCopy(
    const std::string& dir, const FileKey& original, const storage::SourceCheckpoint& old,
    std::string* copy_head) const {
  std::optional<std::pair<std::string, struct stat>> best;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return best;
  while (struct dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    struct stat st {};
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
      continue;
    }
    const FileKey key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
    if (key == original || files_.count(key)) continue;
    if (static_cast<uint64_t>(st.st_size) < old.offset ||
        static_cast<uint64_t>(st.st_size) < old.fingerprint_len) {
      continue;
    }
    if (best && (st.st_mtim.tv_sec < best->second.st_mtim.tv_sec ||
                 (st.st_mtim.tv_sec == best->second.st_mtim.tv_sec &&
                  st.st_mtim.tv_nsec <= best->second.st_mtim.tv_nsec))) {
      continue;  // an older candidate
    }
    int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat fst {};
    Result<std::string> head = Status::IoError("unread");
    if (fstat(fd, &fst) == 0 && fst.st_dev == st.st_dev && fst.st_ino == st.st_ino) {
      head =
          ReadAt(fd, 0, std::min<uint64_t>(static_cast<uint64_t>(fst.st_size), kFingerprintBytes));
    }
    close(fd);
    if (!head.ok() || !FingerprintMatches(old, *head)) continue;
    // A file already known by identity (a former copy, a rotated file) is
    // never taken: its bytes are accounted for by its own checkpoint.
    if (FindByIdentity(key, *head)) continue;
    best.emplace((dir == "/" ? "" : dir) + "/" + e->d_name, fst);
    *copy_head = std::move(*head);
  }
  closedir(d);
  return best;
}

Status Ingestor::RecoverTruncationCopies(std::map<FileKey, Located>& found,
                                         std::set<FileKey>* truncated) {
  std::vector<Located> copies;
  for (auto& [key, loc] : found) {
    // The checkpoint the file had: the followed state, or (first poll after a
    // restart, or a file not followed yet) the stored one for this identity.
    storage::SourceCheckpoint old;
    int fd = -1;
    bool own_fd = false;
    auto it = files_.find(key);
    if (it != files_.end()) {
      old = it->second->cp;
      fd = it->second->fd;
    } else {
      const storage::SourceCheckpoint* best = nullptr;
      for (const auto& [p, cp] : records_) {
        if (cp.device != key.dev || cp.inode != key.ino) continue;
        // Prefer the record under this path, then the one furthest on.
        if (!best || (p == loc.path && best->path != loc.path) ||
            ((p == loc.path) == (best->path == loc.path) && cp.offset > best->offset)) {
          best = &cp;
        }
      }
      if (best == nullptr) continue;
      old = *best;
      fd = open(loc.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) continue;
      own_fd = true;
    }
    if (old.fingerprint_len == 0) {
      if (own_fd) close(fd);
      continue;  // nothing of the old file is known: no copy can be recognized
    }
    struct stat st {};
    Result<std::string> head = Status::IoError("unread");
    if (fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_dev) == key.dev &&
        static_cast<uint64_t>(st.st_ino) == key.ino) {
      head =
          ReadAt(fd, 0, std::min<uint64_t>(static_cast<uint64_t>(st.st_size), kFingerprintBytes));
    }
    if (own_fd) close(fd);
    if (!head.ok()) continue;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size >= old.offset && FingerprintMatches(old, *head)) continue;  // not truncated
    if (it == files_.end()) {
      // Another stored checkpoint of this identity that still fits: not truncated.
      auto id = FindByIdentity(key, *head);
      if (id && size >= id->offset) continue;
    }
    std::string copy_head;
    auto copy = FindTruncationCopy(DirName(loc.path), key, old, &copy_head);
    if (!copy) {
      spdlog::warn(
          "ingest: {} was truncated or rewritten; no copy of it found (lines not read "
          "before the truncation, if any, are lost)",
          loc.path);
      continue;
    }
    const auto& [copy_path, cst] = *copy;
    storage::SourceCheckpoint next;
    // A key of its own, never moved (see IsCopyKey): it overwrites no other
    // file's checkpoint (e.g. of a file logrotate renamed .1 -> .2 meanwhile)
    // and is never overwritten, so it is never left behind stale.
    next.path =
        copy_path + kCopyKeyMark + std::to_string(cst.st_dev) + ":" + std::to_string(cst.st_ino);
    next.device = static_cast<uint64_t>(cst.st_dev);
    next.inode = static_cast<uint64_t>(cst.st_ino);
    next.fingerprint = Fingerprint(copy_head);
    next.fingerprint_len = copy_head.size();
    next.offset = old.offset;
    next.lines = old.lines;
    next.updated_at_ms = NowMs();
    storage::IngestCommitStats cs;
    Status cst_status = store_.CommitIngest(next, {}, {}, &cs);
    if (!cst_status.ok()) return Status::IoError("store: " + cst_status.ToString());
    records_[next.path] = next;
    spdlog::warn(
        "ingest: {} was truncated (copytruncate): reading its copy {} from offset {} "
        "({} bytes unread)",
        loc.path, copy_path, old.offset, static_cast<uint64_t>(cst.st_size) - old.offset);
    IngestCounter(metrics_, "rlaif_ingest_truncation_copies_total").Inc();
    truncated->insert(key);
    const FileKey ckey{next.device, next.inode};
    if (!found.count(ckey)) {
      Located c;
      c.path = copy_path;
      c.source = loc.source;
      c.in_glob = false;
      c.st = cst;
      copies.push_back(std::move(c));
    }
  }
  for (auto& c : copies) {
    FileKey ckey{static_cast<uint64_t>(c.st.st_dev), static_cast<uint64_t>(c.st.st_ino)};
    found.emplace(ckey, std::move(c));
  }
  return Status::Ok();
}

Status Ingestor::Rehome() {
  // A checkpoint may only overwrite the key of a file that has itself moved
  // on (or is gone): rehome in dependency order along rotation chains, so a
  // crash between two of these commits never loses a live file's checkpoint.
  std::vector<Tracked*> pending;
  for (auto& [key, t] : files_) {
    if (!t->committed || t->cp.path != t->DesiredKey()) pending.push_back(t.get());
  }
  auto blocked = [&](const Tracked* t) {
    auto r = records_.find(t->DesiredKey());
    if (r == records_.end()) return false;
    return std::any_of(pending.begin(), pending.end(), [&](const Tracked* o) {
      return o != t && o->cp.device == r->second.device && o->cp.inode == r->second.inode;
    });
  };
  while (!pending.empty()) {
    auto it =
        std::find_if(pending.begin(), pending.end(), [&](const Tracked* t) { return !blocked(t); });
    // A cycle (files swapped names) is broken by committing one anyway.
    if (it == pending.end()) it = pending.begin();
    Tracked* t = *it;
    storage::SourceCheckpoint next = t->cp;
    next.path = t->DesiredKey();
    next.updated_at_ms = NowMs();
    storage::IngestCommitStats cs;
    Status st = store_.CommitIngest(next, {}, {}, &cs);
    if (!st.ok()) return Status::IoError("store: " + st.ToString());
    records_[next.path] = next;
    t->cp = next;
    t->committed = true;
    pending.erase(it);
  }
  return Status::Ok();
}

Status Ingestor::Commit(Tracked& t, const storage::SourceCheckpoint& next,
                        const storage::IngestBatch& batch, IngestPassStats* stats, uint64_t lines,
                        uint64_t bytes) {
  storage::IngestCommitStats cs;
  Status st = store_.CommitIngestBatch(next, batch, &cs);
  if (!st.ok()) return Status::IoError("store: " + st.ToString());
  records_[next.path] = next;
  t.cp = next;
  t.committed = true;
  IngestCounter(metrics_, "rlaif_ingest_lines_total").Inc(static_cast<double>(lines));
  IngestCounter(metrics_, "rlaif_ingest_bytes_total").Inc(static_cast<double>(bytes));
  IngestCounter(metrics_, "rlaif_ingest_stored_total").Inc(static_cast<double>(cs.stored));
  IngestCounter(metrics_, "rlaif_ingest_duplicates_total").Inc(static_cast<double>(cs.duplicates));
  if (cs.pairs > 0 || cs.labels > 0) {
    IngestCounter(metrics_, "rlaif_ingest_logged_pairs_total").Inc(static_cast<double>(cs.pairs));
    IngestCounter(metrics_, "rlaif_ingest_logged_labels_total").Inc(static_cast<double>(cs.labels));
  }
  if (cs.evicted > 0) {
    backpressure_evicted_->Inc(static_cast<double>(cs.evicted));
    spdlog::warn("ingest: pending pool over {} prompts: dropped the {} oldest from the queue",
                 sampling_.max_pending, cs.evicted);
  }
  // Counted once committed: a batch whose commit failed (disk full) is read
  // again, and its bad lines must not be counted twice.
  for (const auto& d : batch.dead) {
    IngestCounter(metrics_, "rlaif_ingest_rejected_total", {{"reason", d.reason}}).Inc();
  }
  NoteRejections(batch.dead);
  if (cs.rejects_pruned > 0) {
    IngestCounter(metrics_, "rlaif_ingest_rejected_pruned_total")
        .Inc(static_cast<double>(cs.rejects_pruned));
    if (!rejects_pruned_logged_) {
      rejects_pruned_logged_ = true;
      spdlog::warn(
          "ingest: the store keeps the newest store.max_rejected_lines rejected lines: the "
          "oldest are deleted from now on (each is still counted in rlaif_ingest_rejected_total; "
          "deletions in rlaif_ingest_rejected_pruned_total)");
    }
  }
  stats->lines += static_cast<int64_t>(lines);
  stats->bytes += static_cast<int64_t>(bytes);
  stats->stored += cs.stored;
  stats->duplicates += cs.duplicates;
  stats->rejected += static_cast<int64_t>(batch.dead.size());
  stats->logged_pairs += cs.pairs;
  stats->logged_labels += cs.labels;
  stats->backpressured += cs.evicted;
  return Status::Ok();
}

void Ingestor::NoteRejections(const std::vector<storage::DeadLetter>& dead) {
  if (!dead.empty() && rejected_unlogged_ == 0) first_unlogged_ = dead.front();
  rejected_unlogged_ += static_cast<int64_t>(dead.size());
  const double now = MonotonicSeconds();
  if (rejected_unlogged_ == 0 || now - last_reject_log_s_ < 60) return;
  // The detail is the parser's own wording (structure, sizes), never line text.
  const storage::DeadLetter& d = first_unlogged_;
  // The parser's details begin with their reason; line_too_long's does not.
  const bool has_reason = d.detail.rfind(d.reason + ":", 0) == 0;
  spdlog::warn(
      "ingest: {} line(s) rejected{}, the first at {}: {}{} (counted in "
      "rlaif_ingest_rejected_total; `rlaifctl export dead` lists them)",
      rejected_unlogged_, last_reject_log_s_ == kNeverLogged ? "" : " since the last report", d.ref,
      has_reason ? "" : d.reason + ": ", d.detail);
  rejected_unlogged_ = 0;
  last_reject_log_s_ = now;
}

void Ingestor::AddLoggedPair(const storage::PromptRecord& prompt, const ParsedLine& line,
                             int64_t now_ms, storage::IngestBatch* batch) const {
  const bool rewrite = line.pair.kind == LoggedPair::Kind::kRewrite;
  storage::PairRecord pair;
  pair.generator = rewrite ? "log:rewrite" : "log:ab";
  pair.prompt_id = prompt.id;
  pair.prompt = prompt.text;
  pair.a.text = line.pair.a;
  pair.b.text = line.pair.b;
  pair.a.model = line.model;
  pair.b.model = rewrite ? "human-rewrite" : line.model;
  pair.created_at_ms = now_ms;
  // Content-addressed: the same logged pair re-read after a crash or a
  // truncation gets the same id and is not stored twice.
  pair.id = HexId(HashFields({prompt.id, pair.generator, pair.a.text, pair.b.text}));
  if (!line.pair.preferred.empty()) {
    storage::LabelRecord label;
    label.pair_id = pair.id;
    label.dimension = line.pair.dimension.empty() ? kLoggedPairDimension : line.pair.dimension;
    label.judge = rewrite ? "log:rewrite" : "log:ab";
    label.tie = line.pair.preferred == "tie";
    label.p_a = line.pair.preferred == "a" ? 1.0 : line.pair.preferred == "b" ? 0.0 : 0.5;
    label.verdict_ab = line.pair.preferred == "tie" ? "tie" : line.pair.preferred == "a" ? "A" : "B";
    label.source = "log";
    label.created_at_ms = now_ms;
    batch->labels.push_back(std::move(label));
  }
  batch->pairs.push_back(std::move(pair));
}

Status Ingestor::ReadToEnd(Tracked& t, bool final_tail, IngestPassStats* stats) {
  const SourceConfig& source = sources_[t.source];
  const LineParser& parser = *parsers_[t.source];
  struct stat st {};
  if (fstat(t.fd, &st) != 0) return Status::IoError("cannot stat " + t.path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  auto head = ReadAt(t.fd, 0, std::min<uint64_t>(size, kFingerprintBytes));
  if (!head.ok()) return head.status();
  t.size = size;

  storage::SourceCheckpoint cp = t.cp;
  const bool shrank = size < cp.offset;
  if (shrank || !FingerprintMatches(cp, *head)) {
    spdlog::warn("ingest: {} was truncated or rewritten in place ({}): re-reading from 0", t.path,
                 shrank ? "size " + std::to_string(size) + " < offset " + std::to_string(cp.offset)
                        : std::string("first bytes changed"));
    IngestCounter(metrics_, "rlaif_ingest_truncations_total").Inc();
    ++rotations_by_path_[t.path];
    cp.offset = 0;
    cp.lines = 0;
    t.long_line_at = UINT64_MAX;  // what was searched is gone
  }
  // The fingerprint grows with the file up to kFingerprintBytes. A checkpoint
  // whose identity changed is written even if no line is complete yet, so that
  // a restart does not mistake the file for an old one.
  const std::string print = Fingerprint(*head);
  bool must_commit =
      cp.fingerprint != print || cp.fingerprint_len != head->size() || cp.offset != t.cp.offset;
  cp.fingerprint = print;
  cp.fingerprint_len = head->size();

  auto& sampled_total = IngestCounter(metrics_, "rlaif_ingest_sampled_out_total");
  const size_t window =
      std::max<size_t>(max_batch_bytes_, static_cast<size_t>(source.max_line_bytes) + 1);
  const std::string& path = t.path;
  const std::string inode_text = std::to_string(cp.inode);
  while (cp.offset < size || must_commit) {
    // Backpressure (sampling.max_pending): "pause" stops sampling while the
    // generation queue is full; "keep_newest" lets the store drop the oldest.
    pending_room_ = -1;
    if (sampling_.max_pending > 0 && sampling_.pending_policy == "pause") {
      pending_room_ = std::max<int64_t>(0, sampling_.max_pending - store_.Counts().queue_generate);
    }
    // Spare capacity past the bytes read lets the parser read its SIMD
    // padding in place instead of copying every line (LineParser::Parse).
    chunk_.reserve(window + kLineParsePadding);
    RLAIF_RETURN_IF_ERROR(
        ReadInto(t.fd, cp.offset, std::min<uint64_t>(size - cp.offset, window), &chunk_));
    const std::string& chunk = chunk_;
    storage::IngestBatch batch;
    if (sampling_.max_pending > 0 && sampling_.pending_policy == "keep_newest") {
      batch.max_generate_queue = sampling_.max_pending;
    }
    size_t pos = 0;
    uint64_t next_offset = cp.offset;
    uint64_t consumed_lines = 0;
    const int64_t now_ms = NowMs();
    auto redact_raw = [&](std::string_view s) {
      if (!redactor_) return std::string(s);
      RedactionScope scope;
      return redactor_->Redact(s, &scope);
    };
    auto reject = [&](const std::string& reason, const std::string& detail, uint64_t at,
                      std::string_view raw) {
      batch.dead.push_back(storage::DeadLetter{"ingest", reason, redact_raw(detail),
                                               path + ":" + std::to_string(at),
                                               redact_raw(raw.substr(0, kMaxRawInDeadLetter)),
                                               now_ms});
    };
    auto filtered = [&](const char* reason) {
      IngestCounter(metrics_, "rlaif_ingest_filtered_total", {{"reason", reason}}).Inc();
      ++stats->filtered;
    };
    // Order, cheapest first so that sampling spends nothing on what it drops:
    // with sampling.key "line": rate (by a hash of the raw line; a dropped
    // line is parsed only if its bytes may hold a logged pair, which skips
    // the rate) → parse (validates the whole line) → model/metadata filters;
    // with "prompt": parse → filters → rate (by a hash of the raw prompt).
    // Then redaction → length bounds → stratum cap.
    ParsedLine& pl = parsed_;
    const bool sample_lines = sampling_.rate < 1.0 && sampling_.key != "prompt";
    const bool sample_prompts = sampling_.rate < 1.0 && sampling_.key == "prompt";
    auto sampled_out = [&] {
      sampled_total.Inc();
      ++stats->sampled_out;
    };
    auto handle = [&](std::string_view line, uint64_t line_offset) {
      if (IsBlank(line)) return;
      if (line.size() > static_cast<size_t>(source.max_line_bytes)) {
        reject(kLineTooLong,
               "line of " + std::to_string(line.size()) + " bytes exceeds " +
                   std::to_string(source.max_line_bytes),
               line_offset, line);
        return;
      }
      bool kept_only_as_pair = false;
      if (sample_lines && !SampleKeeps(LineSampleHash(line))) {
        if (!MayCarryLoggedPair(line)) {
          sampled_out();
          return;
        }
        kept_only_as_pair = true;
      }
      Status ps = parser.Parse(
          line, &pl,
          static_cast<size_t>(chunk.data() + chunk.capacity() - (line.data() + line.size())));
      if (!ps.ok()) {
        reject(RejectReason(ps), ps.message(), line_offset, line);
        return;
      }
      // Logged pairs cost no generation: rate and stratum cap do not apply.
      const bool logged_pair = pl.pair.kind != LoggedPair::Kind::kNone;
      if (kept_only_as_pair && !logged_pair) {
        sampled_out();
        return;
      }
      if (!KeepModel(pl.model) || !KeepMetadata(pl)) {
        filtered(KeepModel(pl.model) ? "metadata" : "model");
        return;
      }
      if (!logged_pair && sample_prompts && !SampleKeeps(SampleHash(TrimView(pl.prompt)))) {
        sampled_out();
        return;
      }
      if (!logged_pair && pending_room_ == 0) {
        backpressure_paused_->Inc();
        ++stats->backpressured;
        return;
      }
      if (redactor_) {
        RedactionScope scope;
        redactor_->RedactInPlace(&pl.prompt, &scope);
        redactor_->RedactInPlace(&pl.response, &scope);
        if (logged_pair) {
          redactor_->RedactInPlace(&pl.pair.a, &scope);
          redactor_->RedactInPlace(&pl.pair.b, &scope);
        }
        for (const auto& [kind, n] : scope.counts) {
          IngestCounter(metrics_, "rlaif_redactions_total", {{"kind", kind}})
              .Inc(static_cast<double>(n));
        }
      }
      const int64_t plen = static_cast<int64_t>(pl.prompt.size());
      if (plen < sampling_.min_prompt_chars || plen > sampling_.max_prompt_chars) {
        filtered("length");
        return;
      }
      if (!logged_pair && !UnderStratumCap(pl)) {
        filtered("stratum_cap");
        return;
      }
      const std::string base_id = HexId(Hash64(TrimView(pl.prompt)));  // == PromptId(prompt)
      storage::PromptRecord rec;
      // Without dedupe every line is its own prompt; the id depends only on the
      // line's identity (file + offset), so a redo after a crash writes the same key.
      rec.id = sampling_.dedupe
                   ? base_id
                   : HexId(HashFields({base_id, path, inode_text, std::to_string(line_offset)}));
      rec.text = pl.prompt;
      rec.logged_response = pl.response;
      rec.source_path = path;
      rec.source_offset = line_offset;
      rec.ingested_at_ms = now_ms;
      if (logged_pair) {
        AddLoggedPair(rec, pl, now_ms, &batch);
        batch.pair_prompts.push_back(std::move(rec));
      } else {
        batch.prompts.push_back(std::move(rec));
        if (pending_room_ > 0) --pending_room_;
      }
    };
    while (pos < chunk.size()) {
      const char* nlp = static_cast<const char*>(
          std::memchr(chunk.data() + pos, '\n', chunk.size() - pos));
      const uint64_t line_offset = cp.offset + pos;
      if (nlp == nullptr) {
        size_t partial = chunk.size() - pos;
        if (final_tail && cp.offset + chunk.size() == size &&
            partial <= static_cast<size_t>(source.max_line_bytes)) {
          // The file will not grow any more: its unterminated tail is its last line.
          handle(std::string_view(chunk).substr(pos), line_offset);
          ++consumed_lines;
          pos = chunk.size();
          next_offset = size;
          break;
        }
        // Partial line: wait for its newline unless it is already over the limit,
        // in which case it is skipped up to its newline (found beyond this chunk).
        if (partial <= static_cast<size_t>(source.max_line_bytes)) break;
        uint64_t scan = cp.offset + chunk.size();
        if (t.long_line_at == line_offset) scan = std::max(scan, t.long_line_scanned);
        uint64_t end = 0;
        while (scan < size && end == 0) {
          auto more = ReadAt(t.fd, scan, std::min<uint64_t>(size - scan, 1 << 20));
          if (!more.ok()) return more.status();
          if (more->empty()) break;
          size_t n2 = more->find('\n');
          if (n2 != std::string::npos) end = scan + n2 + 1;
          scan += more->size();
        }
        if (end == 0 && final_tail) end = size;
        if (end == 0) {  // still unterminated: decide when its newline arrives
          t.long_line_at = line_offset;
          t.long_line_scanned = scan;
          break;
        }
        reject(kLineTooLong,
               "line of " + std::to_string(end - line_offset - 1) + " bytes exceeds " +
                   std::to_string(source.max_line_bytes),
               line_offset, std::string_view(chunk).substr(pos, kMaxRawInDeadLetter));
        ++consumed_lines;
        pos = chunk.size();
        next_offset = end;
        break;
      }
      const size_t nl = static_cast<size_t>(nlp - chunk.data());
      std::string_view line(chunk.data() + pos, nl - pos);
      pos = nl + 1;
      next_offset = cp.offset + pos;
      ++consumed_lines;
      handle(line, line_offset);
    }
    if (next_offset == cp.offset && !must_commit) break;  // nothing complete to consume
    storage::SourceCheckpoint next = cp;
    next.path = t.cp.path;
    next.offset = next_offset;
    next.lines = cp.lines + consumed_lines;
    next.updated_at_ms = NowMs();
    const uint64_t consumed_bytes = next_offset - cp.offset;
    RLAIF_RETURN_IF_ERROR(Commit(t, next, batch, stats, consumed_lines, consumed_bytes));
    must_commit = false;
    cp = next;
    if (consumed_bytes == 0) break;
    if (interrupted_ && interrupted_()) break;  // the rest next pass
  }
  return Status::Ok();
}

void Ingestor::RefreshSizes() {
  for (auto& [key, t] : files_) {
    struct stat st {};
    if (t->fd >= 0 && fstat(t->fd, &st) == 0) t->size = static_cast<uint64_t>(st.st_size);
  }
  PublishStatus();
}

void Ingestor::PublishStatus() {
  std::vector<SourceStatus> out;
  for (const auto& [key, t] : files_) {
    SourceStatus s;
    s.path = t->path;
    s.device = t->cp.device;
    s.inode = t->cp.inode;
    s.offset = t->cp.offset;
    s.size = t->size;
    s.lag_bytes = static_cast<int64_t>(t->size) - static_cast<int64_t>(t->cp.offset);
    s.last_commit_ms = t->cp.updated_at_ms;
    s.fingerprint = t->cp.fingerprint;
    s.rotated = !t->in_glob;
    s.deleted = t->gone;
    auto r = rotations_by_path_.find(t->path);
    s.rotations_seen = r == rotations_by_path_.end() ? 0 : r->second;
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const SourceStatus& a, const SourceStatus& b) { return a.path < b.path; });
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(out);
}

}  // namespace rlaif::daemon
