#include "rlaif/daemon/ingest.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "rlaif/common/clock.h"
#include "rlaif/common/hash.h"

namespace rlaif::daemon {

namespace {

constexpr size_t kFingerprintBytes = 1024;
constexpr size_t kMaxRawInDeadLetter = 4096;

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> ExpandGlob(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g{};
  if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
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

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Status ParseSimpleLine(const std::string& line, std::string* prompt, std::string* response) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return Status::InvalidArgument(std::string("bad_json: ") + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument("not_object: line is not a JSON object");
  auto it = j.find("prompt");
  if (it == j.end()) return Status::InvalidArgument("missing_prompt: no \"prompt\" field");
  if (!it->is_string()) return Status::InvalidArgument("bad_prompt_type: \"prompt\" is not a string");
  *prompt = it->get<std::string>();
  if (Trim(*prompt).empty()) return Status::InvalidArgument("empty_prompt: \"prompt\" is empty");
  response->clear();
  auto r = j.find("response");
  if (r != j.end() && !r->is_null()) {
    if (!r->is_string()) {
      return Status::InvalidArgument("bad_response_type: \"response\" is not a string");
    }
    *response = r->get<std::string>();
  }
  return Status::Ok();
}

std::string PromptId(const std::string& text) { return HexId(Hash64(Trim(text))); }

Ingestor::Ingestor(std::vector<SourceConfig> sources, SamplingConfig sampling,
                   storage::Store& store, MetricsRegistry& metrics)
    : sources_(std::move(sources)), sampling_(sampling), store_(store), metrics_(metrics) {}

Result<IngestPassStats> Ingestor::PollOnce() {
  IngestPassStats stats;
  std::vector<SourceStatus> seen;
  for (const auto& source : sources_) {
    for (const auto& path : ExpandGlob(source.path)) {
      Status st = IngestFile(source, path, &stats);
      if (!st.ok()) {
        if (st.code() == StatusCode::kIoError && st.message().rfind("store:", 0) == 0) return st;
        spdlog::warn("ingest: {}: {}", path, st.ToString());
        metrics_.GetCounter("rlaif_ingest_errors_total", "Files that could not be read.").Inc();
      }
    }
  }
  return stats;
}

std::vector<SourceStatus> Ingestor::Sources() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

Status Ingestor::IngestFile(const SourceConfig& source, const std::string& path,
                            IngestPassStats* stats) {
  int raw_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw_fd < 0) return Status::IoError("cannot open " + path + ": " + strerror(errno));
  Fd fd(raw_fd);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return Status::IoError("cannot stat " + path);
  if (!S_ISREG(st.st_mode)) return Status::Ok();
  const uint64_t size = static_cast<uint64_t>(st.st_size);

  auto head = ReadAt(fd.get(), 0, std::min<uint64_t>(size, kFingerprintBytes));
  if (!head.ok()) return head.status();

  auto existing = store_.GetSource(path);
  if (!existing.ok()) return Status::IoError("store: " + existing.status().message());

  storage::SourceCheckpoint cp;
  bool known = false;
  if (existing->has_value()) {
    const storage::SourceCheckpoint& old = **existing;
    bool same_inode = old.device == static_cast<uint64_t>(st.st_dev) &&
                      old.inode == static_cast<uint64_t>(st.st_ino);
    bool same_print = head->size() >= old.fingerprint_len &&
                      HexId(Hash64(std::string_view(head->data(), old.fingerprint_len))) ==
                          old.fingerprint;
    if (same_inode && same_print && size >= old.offset) {
      cp = old;
      known = true;
    } else if (same_inode && same_print && size < old.offset) {
      spdlog::warn("ingest: {} shrank below the committed offset ({} < {}): re-reading from 0",
                   path, size, old.offset);
      metrics_.GetCounter("rlaif_ingest_truncations_total", "Files truncated in place.").Inc();
    } else {
      spdlog::info("ingest: {} is a new file (identity changed): reading from its start", path);
      metrics_.GetCounter("rlaif_ingest_rotations_total", "Files replaced under the same path.")
          .Inc();
    }
  }
  if (!known) {
    cp = storage::SourceCheckpoint{};
    cp.path = path;
    cp.device = static_cast<uint64_t>(st.st_dev);
    cp.inode = static_cast<uint64_t>(st.st_ino);
    cp.offset = 0;
    // start_at applies to files seen for the first time only.
    if (!existing->has_value() && source.start_at == "end") {
      // Start after the last complete line.
      cp.offset = size;
      auto tail = ReadAt(fd.get(), size > 65536 ? size - 65536 : 0, std::min<uint64_t>(size, 65536));
      if (tail.ok()) {
        size_t nl = tail->rfind('\n');
        cp.offset = nl == std::string::npos ? (size > 65536 ? size : 0)
                                            : size - tail->size() + nl + 1;
      }
    }
  }
  // The fingerprint grows with the file up to kFingerprintBytes.
  cp.fingerprint_len = head->size();
  cp.fingerprint = HexId(Hash64(*head));

  auto& lines_total = metrics_.GetCounter("rlaif_ingest_lines_total", "Log lines read.");
  auto& bytes_total = metrics_.GetCounter("rlaif_ingest_bytes_total", "Log bytes read.");
  auto& stored_total = metrics_.GetCounter("rlaif_ingest_stored_total", "New prompts stored.");
  auto& sampled_total =
      metrics_.GetCounter("rlaif_ingest_sampled_out_total", "Prompts skipped by sampling.");
  auto& dup_total =
      metrics_.GetCounter("rlaif_ingest_duplicates_total", "Prompts already stored (dedupe).");

  // A checkpoint whose identity changed must be written even if no line is
  // complete yet, so that a restart does not mistake the file for an old one.
  bool must_commit = !known || !existing->has_value() ||
                     (*existing)->fingerprint != cp.fingerprint ||
                     (*existing)->fingerprint_len != cp.fingerprint_len;
  const size_t window =
      std::max<size_t>(max_batch_bytes_, static_cast<size_t>(source.max_line_bytes) + 1);
  while (cp.offset < size || must_commit) {
    auto chunk = ReadAt(fd.get(), cp.offset, std::min<uint64_t>(size - cp.offset, window));
    if (!chunk.ok()) return chunk.status();
    std::vector<storage::PromptRecord> prompts;
    std::vector<storage::DeadLetter> dead;
    size_t pos = 0;
    uint64_t next_offset = cp.offset;
    uint64_t consumed_lines = 0;
    auto reject = [&](const std::string& reason, const std::string& detail, uint64_t at,
                      const std::string& raw) {
      dead.push_back(storage::DeadLetter{"ingest", reason, detail,
                                         path + ":" + std::to_string(at),
                                         raw.substr(0, kMaxRawInDeadLetter), NowMs()});
      metrics_.GetCounter("rlaif_ingest_rejected_total", "Rejected log lines.",
                          {{"reason", reason}})
          .Inc();
    };
    while (pos < chunk->size()) {
      size_t nl = chunk->find('\n', pos);
      const uint64_t line_offset = cp.offset + pos;
      if (nl == std::string::npos) {
        // Partial line: wait for its newline unless it is already over the limit,
        // in which case it is skipped up to its newline (found beyond this chunk).
        size_t partial = chunk->size() - pos;
        if (partial <= static_cast<size_t>(source.max_line_bytes)) break;
        uint64_t scan = cp.offset + chunk->size();
        uint64_t end = 0;
        while (scan < size && end == 0) {
          auto more = ReadAt(fd.get(), scan, std::min<uint64_t>(size - scan, 1 << 20));
          if (!more.ok()) return more.status();
          size_t n2 = more->find('\n');
          if (n2 != std::string::npos) end = scan + n2 + 1;
          scan += more->size();
        }
        if (end == 0) break;  // still unterminated: decide when its newline arrives
        reject("line_too_long",
               "line of " + std::to_string(end - line_offset - 1) + " bytes exceeds " +
                   std::to_string(source.max_line_bytes),
               line_offset, chunk->substr(pos, kMaxRawInDeadLetter));
        ++consumed_lines;
        pos = chunk->size();
        next_offset = end;
        break;
      }
      std::string line = chunk->substr(pos, nl - pos);
      pos = nl + 1;
      next_offset = cp.offset + pos;
      ++consumed_lines;
      if (Trim(line).empty()) continue;
      if (line.size() > static_cast<size_t>(source.max_line_bytes)) {
        reject("line_too_long",
               "line of " + std::to_string(line.size()) + " bytes exceeds " +
                   std::to_string(source.max_line_bytes),
               line_offset, line);
        continue;
      }
      std::string prompt, response;
      Status ps = ParseSimpleLine(line, &prompt, &response);
      if (!ps.ok()) {
        reject(ps.message().substr(0, ps.message().find(':')), ps.message(), line_offset, line);
        continue;
      }
      const int64_t plen = static_cast<int64_t>(prompt.size());
      if (plen < sampling_.min_prompt_chars || plen > sampling_.max_prompt_chars) {
        metrics_.GetCounter("rlaif_ingest_filtered_total", "Prompts outside the length bounds.")
            .Inc();
        continue;
      }
      const std::string base_id = PromptId(prompt);
      if (sampling_.rate < 1.0 &&
          HashToUnit(Hash64(base_id, /*seed=*/0x5a3b1e)) >= sampling_.rate) {
        sampled_total.Inc();
        ++stats->sampled_out;
        continue;
      }
      storage::PromptRecord rec;
      // Without dedupe every line is its own prompt; the id depends only on the
      // line's identity (file + offset), so a redo after a crash writes the same key.
      rec.id = sampling_.dedupe ? base_id
                                : HexId(HashFields({base_id, path, std::to_string(cp.inode),
                                                    std::to_string(line_offset)}));
      rec.text = prompt;
      rec.logged_response = response;
      rec.source_path = path;
      rec.source_offset = line_offset;
      rec.ingested_at_ms = NowMs();
      prompts.push_back(std::move(rec));
    }
    if (next_offset == cp.offset && !must_commit) break;  // nothing complete to consume
    storage::SourceCheckpoint next = cp;
    next.offset = next_offset;
    next.lines = cp.lines + consumed_lines;
    next.updated_at_ms = NowMs();
    storage::IngestCommitStats cs;
    Status st2 = store_.CommitIngest(next, prompts, dead, &cs);
    if (!st2.ok()) return Status::IoError("store: " + st2.ToString());
    must_commit = false;
    const uint64_t consumed_bytes = next_offset - cp.offset;
    lines_total.Inc(static_cast<double>(consumed_lines));
    bytes_total.Inc(static_cast<double>(consumed_bytes));
    stored_total.Inc(static_cast<double>(cs.stored));
    dup_total.Inc(static_cast<double>(cs.duplicates));
    stats->lines += static_cast<int64_t>(consumed_lines);
    stats->bytes += static_cast<int64_t>(consumed_bytes);
    stats->stored += cs.stored;
    stats->duplicates += cs.duplicates;
    stats->rejected += static_cast<int64_t>(dead.size());
    cp = next;
    if (consumed_bytes == 0) break;
  }

  std::lock_guard<std::mutex> lock(mu_);
  SourceStatus s{path, cp.inode, cp.offset, size,
                 static_cast<int64_t>(size) - static_cast<int64_t>(cp.offset), cp.updated_at_ms};
  auto it = std::find_if(status_.begin(), status_.end(),
                         [&](const SourceStatus& x) { return x.path == path; });
  if (it == status_.end()) {
    status_.push_back(s);
  } else {
    *it = s;
  }
  return Status::Ok();
}

}  // namespace rlaif::daemon
