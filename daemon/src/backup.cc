#include "rlaif/daemon/backup.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "rlaif/common/build_info.h"
#include "rlaif/common/clock.h"
#include "rlaif/common/disk.h"
#include "rlaif/trainer/reward_model.h"

namespace rlaif::daemon {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr char kManifest[] = "backup.json";
constexpr char kWritingLock[] = ".writing";  // flock()ed by the backup being written
constexpr char kKeepMarker[] = "KEEP";       // a backup an operator pinned: never pruned
constexpr char kFormat[] = "rlaifd-backup";
constexpr int kFormatVersion = 1;

bool ValidVersion(const std::string& v) {
  static const std::regex kVersion("[A-Za-z0-9][A-Za-z0-9._-]{0,127}");
  return std::regex_match(v, kVersion) && v.find("..") == std::string::npos;
}

// fsync a file or directory; a backup that is "done" must survive a power cut.
Status SyncPath(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("cannot open " + p.string() + " to fsync");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IoError("fsync " + p.string() + " failed");
  return Status::Ok();
}

// Copies the regular files and directories of `src` into `dst` (created),
// fsyncing each file. Symlinks and special files are refused: a model or
// store directory has none, and following one could copy anything.
// For a failed write under `dir`: how much room is left there, when that
// explains it (a full disk reports itself as EIO as often as ENOSPC).
std::string SpaceHint(const fs::path& dir, uintmax_t needed) {
  std::error_code ec;
  const fs::space_info sp = fs::space(dir, ec);
  if (ec || sp.available >= needed + (1u << 20)) return "";
  return " (" + std::to_string(sp.available >> 20) + " MiB free on " + dir.string() + ", " +
         std::to_string(needed >> 20) + " MiB needed for this file: the disk is full)";
}

Status CopyTree(const fs::path& src, const fs::path& dst, int64_t* bytes) {
  std::error_code ec;
  fs::create_directories(dst, ec);
  if (ec) return Status::IoError("cannot create " + dst.string() + ": " + ec.message());
  for (fs::recursive_directory_iterator it(src, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::file_status st = it->symlink_status(ec);
    if (ec) break;
    const fs::path rel = it->path().lexically_relative(src);
    const fs::path out = dst / rel;
    if (fs::is_directory(st)) {
      fs::create_directories(out, ec);
      if (ec) return Status::IoError("cannot create " + out.string() + ": " + ec.message());
    } else if (fs::is_regular_file(st)) {
      fs::copy_file(it->path(), out, fs::copy_options::none, ec);
      if (ec) {
        std::error_code size_ec;
        const uintmax_t size = fs::file_size(it->path(), size_ec);
        return Status::IoError("cannot copy " + it->path().string() + " to " + out.string() + ": " +
                               ec.message() + SpaceHint(dst, size_ec ? 0 : size));
      }
      RLAIF_RETURN_IF_ERROR(SyncPath(out));
      if (bytes) *bytes += static_cast<int64_t>(fs::file_size(out, ec));
    } else {
      return Status::InvalidArgument("refusing to copy " + it->path().string() +
                                     ": not a regular file or directory (symlink?)");
    }
  }
  if (ec) return Status::IoError("cannot read " + src.string() + ": " + ec.message());
  return SyncPath(dst);
}

json CountsJson(const storage::StoreCounts& c) {
  return {{"prompts", c.prompts},
          {"pairs", c.pairs},
          {"labels", c.labels},
          {"dead", c.dead},
          {"queue_generate", c.queue_generate},
          {"queue_judge", c.queue_judge},
          {"labels_since_train", c.labels_since_train}};
}

Status WriteFileSynced(const fs::path& p, const std::string& text) {
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
    f.flush();
    if (!f) return Status::IoError("cannot write " + p.string());
  }
  return SyncPath(p);
}

bool IsWithin(const fs::path& child, const fs::path& root) {
  auto c = child.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++c) {
    if (r->empty()) continue;  // trailing separator
    if (c == child.end() || *c != *r) return false;
  }
  return c != child.end();  // strictly inside
}

// Walks the backup root where backups live: the root and "2026/11/27"-style
// subdirectories (up to 4 deep), never following a symlink. Calls
// `visit(dir, finished)` for each directory there (`finished`: it holds a
// manifest); the walk goes into it when `visit` returns true. Never throws:
// a directory that cannot be listed is logged and skipped.
void WalkBackupRoot(const fs::path& root,
                    const std::function<bool(const fs::path&, bool finished)>& visit) {
  std::vector<std::pair<fs::path, int>> dirs = {{root, 0}};
  while (!dirs.empty()) {
    auto [dir, depth] = dirs.back();
    dirs.pop_back();
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::error_code entry_ec;
      if (!it->is_directory(entry_ec) || it->is_symlink(entry_ec)) continue;
      const bool finished = fs::exists(it->path() / kManifest, entry_ec);
      if (visit(it->path(), finished) && depth < 4) dirs.push_back({it->path(), depth + 1});
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
      spdlog::warn("backup: listing {}: {}", dir.string(), ec.message());
    }
  }
}

}  // namespace

std::string BackupRoot(const std::string& backup_dir, const std::string& data_dir) {
  return backup_dir.empty() ? (fs::path(data_dir) / "backups").string() : backup_dir;
}

Result<std::string> ResolveBackupTarget(const std::string& backup_dir, const std::string& data_dir,
                                        const std::string& requested) {
  if (requested.empty() || requested.size() > 4096 || requested.find('\0') != std::string::npos) {
    return Status::InvalidArgument("backup directory must be a non-empty path");
  }
  std::error_code ec;
  const fs::path root_cfg(BackupRoot(backup_dir, data_dir));
  fs::create_directories(root_cfg, ec);
  if (ec) {
    return Status::IoError("cannot create the backup root " + root_cfg.string() + ": " +
                           ec.message());
  }
  const fs::path root = fs::canonical(root_cfg, ec);
  if (ec) return Status::IoError("cannot resolve the backup root " + root_cfg.string());
  fs::path req(requested);
  fs::path candidate = req.is_absolute() ? req : root / req;
  // weakly_canonical resolves every symlink of the part that exists and
  // normalises "..", so the containment check sees the real location.
  candidate = fs::weakly_canonical(candidate.lexically_normal(), ec);
  if (ec) return Status::InvalidArgument("cannot resolve backup directory " + requested);
  if (!IsWithin(candidate, root)) {
    return Status::InvalidArgument("backup directory " + requested + " resolves to " +
                                   candidate.string() + ", which is not inside the backup root " +
                                   root.string() + " (config key backup_dir)");
  }
  if (fs::exists(fs::symlink_status(candidate, ec))) {
    return Status::AlreadyExists("backup directory " + candidate.string() +
                                 " already exists; a backup never overwrites");
  }
  fs::create_directories(candidate.parent_path(), ec);
  if (ec) return Status::IoError("cannot create " + candidate.parent_path().string());
  // Re-check after creating parents (a parent could be a symlink created in between).
  if (!IsWithin(fs::weakly_canonical(candidate, ec), root)) {
    return Status::InvalidArgument("backup directory " + requested + " escapes the backup root");
  }
  return candidate.string();
}

std::vector<std::string> SweepPartialBackups(const std::string& backup_dir,
                                             const std::string& data_dir) {
  static const std::regex kPartial(R"(\..+\.partial-(\d{1,10})-\d+)");
  std::vector<std::string> removed;
  WalkBackupRoot(BackupRoot(backup_dir, data_dir), [&](const fs::path& path, bool finished) {
    const std::string name = path.filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, kPartial)) return !finished;  // not inside finished backups
    // Its writer holds the lock inside while it runs (any host or PID
    // namespace sharing the volume); one without the lock file is from
    // before the lock existed, judged by its PID.
    bool in_use = false;
    const int fd = ::open((path / kWritingLock).c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
      in_use = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
      ::close(fd);
    } else {
      const long pid = std::stol(m[1].str());
      in_use = pid > 0 && pid != ::getpid() &&
               (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
    }
    if (in_use) return false;
    std::error_code rm;
    fs::remove_all(path, rm);
    if (rm) {
      spdlog::warn("backup: cannot remove the unfinished backup {}: {}", path.string(),
                   rm.message());
    } else {
      spdlog::warn("backup: removed {}, left by a backup that did not finish", path.string());
      removed.push_back(path.string());
    }
    return false;
  });
  return removed;
}

std::vector<DeletedBackup> PruneBackups(const std::string& backup_dir, const std::string& data_dir,
                                        int keep, const std::string& just_made,
                                        const std::string& store_id) {
  std::vector<DeletedBackup> deleted;
  if (keep <= 0 || store_id.empty()) return deleted;
  std::error_code ec;
  auto normal = [](fs::path p) {  // "/var/lib/rlaifd/" and "/var/lib/rlaifd" alike
    p = p.lexically_normal();
    return p.has_filename() || !p.has_parent_path() ? p : p.parent_path();
  };
  const fs::path own_dir = normal(fs::absolute(data_dir, ec));
  const fs::path kept = fs::canonical(just_made, ec);
  if (ec) {
    spdlog::warn("backup retention: cannot resolve {} ({}); nothing deleted", just_made,
                 ec.message());
    return deleted;
  }
  struct Found {
    fs::path dir;
    int64_t created_at_ms;
  };
  std::vector<Found> found;
  WalkBackupRoot(BackupRoot(backup_dir, data_dir), [&](const fs::path& path, bool finished) {
    if (path.filename().string().starts_with(".")) return false;  // partial, or not ours
    if (!finished) return true;
    std::error_code entry_ec;
    if (fs::exists(path / kKeepMarker, entry_ec)) return false;  // pinned by an operator
    int64_t at = -1;
    std::string id, source;
    try {
      std::ifstream in(path / kManifest);
      const json m = json::parse(in);
      if (m.value("format", "") == kFormat && m.contains("created_at_ms") &&
          m["created_at_ms"].is_number_integer()) {
        at = m["created_at_ms"].get<int64_t>();
        id = m.value("store_id", "");
        source = m.value("source_data_dir", "");
      }
    } catch (const std::exception&) {
    }
    if (at < 0) {
      spdlog::warn("backup retention: {} has no readable {} manifest; not counted, not deleted",
                   path.string(), kManifest);
      return false;
    }
    // Another store's backups (an rlaifd sharing the backup volume), and
    // those from before the manifest named its store, are not ours to count;
    // nor those of a clone of this store (restored from the same backup)
    // that runs in another data dir.
    if (id != store_id || normal(source) != own_dir) return false;
    const fs::path resolved = fs::canonical(path, entry_ec);
    if (entry_ec || resolved == kept) return false;  // the one just made always stays
    found.push_back({path, at});
    return false;
  });
  // Newest first; the one just made is the first of the `keep`.
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) {
    if (a.created_at_ms != b.created_at_ms) return a.created_at_ms > b.created_at_ms;
    return a.dir > b.dir;
  });
  for (size_t i = static_cast<size_t>(keep) - 1; i < found.size(); ++i) {
    const fs::path& dir = found[i].dir;
    const uint64_t bytes = DirectoryBytes(dir.string());
    const fs::path hidden =
        dir.parent_path() / ("." + dir.filename().string() + ".partial-" +
                             std::to_string(::getpid()) + "-" + std::to_string(NowMs()));
    fs::rename(dir, hidden, ec);
    if (ec) {
      spdlog::warn("backup retention: cannot delete {}: {}", dir.string(), ec.message());
      ec.clear();
      continue;
    }
    // Renamed away, it is no longer a backup; what remove_all leaves goes
    // at the next start (SweepPartialBackups).
    fs::remove_all(hidden, ec);
    if (ec) {
      spdlog::warn("backup retention: deleting {}: {} (the rest goes at the next start)",
                   hidden.string(), ec.message());
      ec.clear();
    }
    spdlog::info(
        "backup retention: deleted {} (of {}; {:.1f} MB allocated, less what it shared with the "
        "store by hard links) to keep backup_keep = {}",
        dir.string(), FormatTimeMs(found[i].created_at_ms), static_cast<double>(bytes) / 1e6, keep);
    deleted.push_back({dir.string(), found[i].created_at_ms, bytes});
  }
  std::reverse(deleted.begin(), deleted.end());
  return deleted;
}

Result<BackupResult> CreateBackup(storage::Store& store, const std::string& data_dir,
                                  const std::string& target) {
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  const fs::path final_dir = fs::absolute(target, ec);
  if (fs::exists(fs::symlink_status(final_dir, ec))) {
    return Status::AlreadyExists("backup directory " + final_dir.string() + " already exists");
  }
  if (!fs::is_directory(final_dir.parent_path())) {
    return Status::InvalidArgument("parent of " + final_dir.string() + " is not a directory");
  }
  const int64_t now = NowMs();
  const fs::path tmp =
      final_dir.parent_path() / ("." + final_dir.filename().string() + ".partial-" +
                                 std::to_string(::getpid()) + "-" + std::to_string(now));
  fs::create_directory(tmp, ec);
  if (ec) return Status::IoError("cannot create " + tmp.string() + ": " + ec.message());
  // Held while the backup is written: SweepPartialBackups (any rlaifd on this
  // backup volume, in any PID namespace or host) removes a partial directory
  // only when it can take this lock, i.e. when its writer is gone.
  const int lock_fd = ::open((tmp / kWritingLock).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX) != 0) {
    if (lock_fd >= 0) ::close(lock_fd);
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return Status::IoError("cannot lock " + (tmp / kWritingLock).string() + ": " +
                           std::strerror(errno));
  }
  struct CloseLock {
    int fd;
    ~CloseLock() { ::close(fd); }
  } close_lock{lock_fd};

  BackupResult out;
  out.created_at_ms = now;
  auto fail = [&](Status st) -> Result<BackupResult> {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    return st;
  };

  // 1. The store, at one point in time.
  Status st = store.CreateCheckpoint((tmp / "store").string());
  if (!st.ok()) return fail(st);

  // 2. Exactly the models the checkpoint's registry names.
  std::vector<storage::ModelRecord> models;
  {
    auto copy = storage::Store::Open({.path = (tmp / "store").string()});
    if (!copy.ok())
      return fail(Status::IoError("the checkpoint does not open: " + copy.status().message()));
    out.counts = (*copy)->Counts();
    auto live = (*copy)->LiveVersion();
    if (!live.ok()) return fail(live.status());
    out.live_version = *live;
    auto listed = (*copy)->ListModels();
    if (!listed.ok()) return fail(listed.status());
    models = std::move(*listed);
  }  // closes the copy before it is renamed
  json model_list = json::array();
  for (const auto& m : models) {
    if (!ValidVersion(m.version)) {
      return fail(
          Status::Corruption("registry holds an invalid version name \"" + m.version + "\""));
    }
    const fs::path src = fs::path(data_dir) / "models" / m.version;
    // Deleted on purpose (trainer.keep_models): its entry is history.
    if (m.files_deleted_at_ms > 0 && m.version != out.live_version) continue;
    if (!fs::is_directory(fs::symlink_status(src, ec))) {
      const std::string what = fs::is_symlink(src, ec)
                                   ? " is a symbolic link (not followed: copy the checkpoint "
                                     "directory there instead)"
                                   : " is missing";
      if (m.version == out.live_version) {
        return fail(Status::FailedPrecondition("the live model's directory " + src.string() + what +
                                               "; nothing to back up it with"));
      }
      spdlog::warn("backup: model {} is registered but {} is missing; skipped", m.version,
                   src.string());
      out.missing_models.push_back(m.version);
      continue;
    }
    int64_t bytes = 0;
    st = CopyTree(src, tmp / "models" / m.version, &bytes);
    if (m.version != out.live_version && !fs::exists(src, ec)) {
      // Deleted while copied (trainer.keep_models renames it away, then
      // deletes it): the copy may be partial, so as if deleted before.
      fs::remove_all(tmp / "models" / m.version, ec);
      spdlog::warn("backup: model {} was deleted while it was copied; skipped", m.version);
      out.missing_models.push_back(m.version);
      continue;
    }
    if (!st.ok()) return fail(st);
    // A backup must restore: `rlaifd restore` loads the live model, so its
    // copy is loaded here too (a checkpoint damaged or incomplete on disk,
    // while the daemon serves it from memory, fails the backup now).
    if (m.version == out.live_version) {
      auto loaded = trainer::RewardModel::Load((tmp / "models" / m.version).string(), "cpu");
      if (!loaded.ok()) {
        return fail(Status::FailedPrecondition(
            "the live model " + m.version + " does not load from its checkpoint on disk (" +
            loaded.status().message() +
            "), so this backup could not be restored; promote or roll back to a complete "
            "version, then back up again"));
      }
    }
    out.model_bytes += bytes;
    out.models.push_back(m.version);
    model_list.push_back({{"version", m.version}, {"state", m.state}, {"bytes", bytes}});
  }
  fs::create_directories(tmp / "models", ec);

  // 3. The manifest, then the atomic rename.
  json manifest = {{"format", kFormat},
                   {"format_version", kFormatVersion},
                   {"created_at", FormatTimeMs(now)},
                   {"created_at_ms", now},
                   {"rlaifd_version", std::string(BuildVersion()) + "+" + BuildRevision()},
                   {"store_id", store.Identity()},
                   {"source_data_dir", fs::absolute(data_dir, ec).string()},
                   {"live_version", out.live_version},
                   {"counts", CountsJson(out.counts)},
                   {"models", model_list},
                   {"missing_models", out.missing_models}};
  st = WriteFileSynced(tmp / kManifest, manifest.dump(2) + "\n");
  if (!st.ok()) return fail(st);
  st = SyncPath(tmp / "models");
  if (!st.ok()) return fail(st);
  st = SyncPath(tmp);
  if (!st.ok()) return fail(st);
  fs::rename(tmp, final_dir, ec);
  if (ec)
    return fail(Status::IoError("cannot rename " + tmp.string() + " to " + final_dir.string() +
                                ": " + ec.message()));
  (void)SyncPath(final_dir.parent_path());
  fs::remove(final_dir / kWritingLock, ec);  // after the rename: no longer a partial backup
  out.dir = final_dir.string();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  spdlog::info("backup {}: {} prompts, {} pairs, {} labels, {} models, live {} ({:.2f} s)", out.dir,
               out.counts.prompts, out.counts.pairs, out.counts.labels, out.models.size(),
               out.live_version.empty() ? "-" : out.live_version, out.seconds);
  return out;
}

Result<RestoreResult> RestoreBackup(const std::string& from, const std::string& data_dir) {
  std::error_code ec;
  const fs::path src = fs::absolute(from, ec);
  const fs::path dst = fs::absolute(data_dir, ec).lexically_normal();
  json manifest;
  if (!fs::is_directory(src, ec)) {
    return Status::InvalidArgument("backup " + src.string() +
                                   " does not exist (or is not a directory)");
  }
  {
    std::ifstream f(src / kManifest);
    if (!f) {
      return Status::InvalidArgument(src.string() + " is not an rlaifd backup: no " +
                                     std::string(kManifest));
    }
    try {
      f >> manifest;
    } catch (const json::exception& e) {
      return Status::InvalidArgument((src / kManifest).string() +
                                     " is not valid JSON: " + e.what());
    }
  }
  if (!manifest.is_object() || manifest.value("format", "") != kFormat ||
      manifest.value("format_version", 0) != kFormatVersion) {
    return Status::InvalidArgument((src / kManifest).string() +
                                   " is not an rlaifd backup manifest "
                                   "(format " +
                                   std::string(kFormat) + " version " +
                                   std::to_string(kFormatVersion) + ")");
  }
  if (!fs::is_directory(src / "store")) {
    return Status::InvalidArgument(src.string() + " has no store/ directory");
  }
  const bool existed = fs::exists(dst, ec);
  if (existed) {
    if (!fs::is_directory(dst)) {
      return Status::FailedPrecondition(dst.string() + " exists and is not a directory");
    }
    if (!fs::is_empty(dst, ec)) {
      return Status::FailedPrecondition(
          "refusing to restore into " + dst.string() +
          ": it is not empty (restore into a new or empty directory)");
    }
  }
  if (IsWithin(dst, src) || IsWithin(src, dst) || dst == src) {
    return Status::InvalidArgument("the data dir and the backup must not contain each other");
  }

  auto cleanup = [&] {
    std::error_code ignored;
    if (existed) {
      fs::remove_all(dst / "store", ignored);
      fs::remove_all(dst / "models", ignored);
    } else {
      fs::remove_all(dst, ignored);
    }
  };
  auto fail = [&](Status st) -> Result<RestoreResult> {
    cleanup();
    return st;
  };
  fs::create_directories(dst, ec);
  if (ec) return Status::IoError("cannot create " + dst.string() + ": " + ec.message());

  Status st = CopyTree(src / "store", dst / "store", nullptr);
  if (!st.ok()) return fail(st);
  if (fs::is_directory(src / "models")) {
    st = CopyTree(src / "models", dst / "models", nullptr);
  } else {
    fs::create_directories(dst / "models", ec);
  }
  if (!st.ok()) return fail(st);

  RestoreResult out;
  out.data_dir = dst.string();
  out.backup_created_at = manifest.value("created_at", "");
  // Verifies and fixes up the restored store; it is closed again before any
  // cleanup removes its files.
  auto verify = [&]() -> Status {
    auto store = storage::Store::Open({.path = (dst / "store").string()});
    if (!store.ok())
      return Status::Corruption("the restored store does not open: " + store.status().message());
    if (Status integrity = (*store)->VerifyIntegrity(); !integrity.ok()) {
      return Status::Corruption("the restored store is damaged (" + integrity.message() +
                                "): restore an older backup");
    }
    out.counts = (*store)->Counts();
    const json& want = manifest["counts"];
    for (const auto& [key, have] : {std::pair<const char*, int64_t>{"prompts", out.counts.prompts},
                                    {"pairs", out.counts.pairs},
                                    {"labels", out.counts.labels},
                                    {"dead", out.counts.dead}}) {
      if (!want.contains(key) || want[key] != have) {
        return Status::Corruption(std::string("restored store has ") + std::to_string(have) + " " +
                                  key + ", the manifest says " +
                                  (want.contains(key) ? want[key].dump() : "nothing"));
      }
    }
    auto live = (*store)->LiveVersion();
    if (!live.ok()) return live.status();
    out.live_version = *live;
    auto models = (*store)->ListModels();
    if (!models.ok()) return models.status();
    for (auto m : *models) {
      if (!ValidVersion(m.version)) {
        return Status::Corruption("registry holds an invalid version \"" + m.version + "\"");
      }
      const fs::path dir = dst / "models" / m.version;
      const bool present = fs::is_directory(dir);
      if (!present && m.version == out.live_version) {
        return Status::Corruption("the backup lacks the live model's directory models/" +
                                  m.version);
      }
      // The registry records absolute checkpoint paths; point them here,
      // also those missing when the backup was taken or deleted by
      // trainer.keep_models (never at the source's data dir).
      m.dir = dir.string();
      st = (*store)->PutModel(m);
      if (!st.ok()) return st;
      if (present) out.models.push_back(m.version);
    }
    if (!out.live_version.empty()) {
      auto model = trainer::RewardModel::Load((dst / "models" / out.live_version).string(), "cpu");
      if (!model.ok()) {
        return Status::Corruption("the restored live model " + out.live_version +
                                  " does not load: " + model.status().message());
      }
    }
    st = (*store)->AppendEvent(
        {NowMs(), "restore", "rlaifd restore",
         "restored from " + src.string() + " (backup of " + out.backup_created_at + ")",
         json{{"from", src.string()},
              {"backup_created_at", out.backup_created_at},
              {"live_version", out.live_version}}
             .dump()});
    return st;
  };
  st = verify();
  if (!st.ok()) return fail(st);
  return out;
}

int RunRestoreCommand(const std::vector<std::string>& args) {
  std::string from, data_dir;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--from" && i + 1 < args.size()) {
      from = args[++i];
    } else if (args[i] == "--data-dir" && i + 1 < args.size()) {
      data_dir = args[++i];
    } else {
      std::cerr << "unknown argument: " << args[i] << "\n";
      from.clear();
      break;
    }
  }
  if (from.empty() || data_dir.empty()) {
    std::cerr << "usage: rlaifd restore --from BACKUP_DIR --data-dir DATA_DIR\n"
                 "  DATA_DIR must not exist or be empty; rlaifd must not be running on it\n";
    return 2;
  }
  auto res = RestoreBackup(from, data_dir);
  if (!res.ok()) {
    std::cerr << "rlaifd restore: " << res.status().ToString() << "\n";
    return 1;
  }
  json out = {{"restored", true},
              {"data_dir", res->data_dir},
              {"backup_created_at", res->backup_created_at},
              {"live_version", res->live_version},
              {"models", res->models},
              {"counts", CountsJson(res->counts)}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace rlaif::daemon
