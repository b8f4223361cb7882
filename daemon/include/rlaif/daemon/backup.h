// Online backup and offline restore of an rlaifd data dir.
//
// A backup is one directory:
//
//   <backup>/backup.json          manifest: counts, live version, models, rlaifd version
//   <backup>/store/               a RocksDB checkpoint of data_dir/store
//   <backup>/models/<version>/    the checkpoint directory of every model that
//                                 the backed-up registry lists
//
// The store and the models are consistent with each other: the RocksDB
// checkpoint is taken first, then exactly the model versions registered *in
// that checkpoint* are copied. A model directory is complete before its
// registry record is written (trainer writes <v>.tmp-<pid>, renames, then
// registers) and registered directories are never deleted by rlaifd, so every
// version the checkpoint names can be copied. The daemon keeps running:
// ingest, judging and training continue during the backup.
//
//   auto target = ResolveBackupTarget(config.backup_dir, data_dir, "nightly");
//   auto result = CreateBackup(store, config.data_dir, *target);
//   ...
//   auto restored = RestoreBackup("/backups/nightly", "/var/lib/rlaifd");  // offline
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rlaif/common/status.h"
#include "rlaif/storage/store.h"

namespace rlaif::daemon {

struct BackupResult {
  std::string dir;                  // absolute path of the finished backup
  std::string live_version;         // "" when no model was live
  storage::StoreCounts counts;      // counts in the backed-up store
  std::vector<std::string> models;  // versions copied
  // Registered versions whose directory was missing from data_dir/models (an
  // operator deleted it); the backup still succeeds unless it is the live one.
  std::vector<std::string> missing_models;
  int64_t model_bytes = 0;  // bytes of model files copied
  int64_t created_at_ms = 0;
  double seconds = 0;  // wall time of the whole backup
};

// The backup root: `backup_dir`, or <data_dir>/backups when it is "".
std::string BackupRoot(const std::string& backup_dir, const std::string& data_dir);

// The directory that a backup request for `requested` may write, or why not.
// Policy: every backup is a new directory strictly inside the backup root
// (`backup_dir`, or <data_dir>/backups when it is ""). `requested` is a path
// relative to the root (e.g. "nightly-2026-11-27" or "2026/11/27") or an
// absolute path inside it. Symlinks are resolved before the check, so none
// can lead outside the root. The target must not exist (a backup never
// overwrites anything); missing parents inside the root are created.
// kInvalidArgument for a path outside the root or an empty/odd name,
// kAlreadyExists when the target exists.
Result<std::string> ResolveBackupTarget(const std::string& backup_dir, const std::string& data_dir,
                                        const std::string& requested);

// Removes the hidden ".NAME.partial-PID-MS" directories that backups killed
// midway (kill -9, power loss) left in the backup root and its
// subdirectories (not inside finished backups), when PID is not a running
// process or is this one (a container's PID 1 restarted). They hold hard
// links to store files, so they pin disk space the store has freed. Logs
// and returns what it removed. Called at start.
std::vector<std::string> SweepPartialBackups(const std::string& backup_dir,
                                             const std::string& data_dir);

// Deletes the oldest finished backups of this store in the backup root so
// that `keep` remain, `just_made` (the backup this call follows) being one
// of them (config backup_keep; 0 deletes nothing). A finished backup of this
// store is a directory with a readable backup.json of this format whose
// store_id is `store_id` (Store::Identity(): another rlaifd sharing the
// backup volume keeps its own), found where SweepPartialBackups looks (the
// root and "2026/11/27"-style subdirectories, not hidden ones, no symlinks);
// age is the manifest's created_at_ms. Never deleted: `just_made`, a backup
// with a KEEP file (pinned by an operator), one whose manifest cannot be
// read (logged) or has no store_id (from before 2026-11-29). Each goes by a
// rename to a hidden ".NAME.partial-PID-MS" sibling first, so that a crash
// midway leaves no half-deleted backup that looks whole (SweepPartialBackups
// removes the rest at the next start). Never throws. Returns the deleted
// directories, oldest first.
struct DeletedBackup {
  std::string dir;
  int64_t created_at_ms = 0;
  uint64_t bytes = 0;  // allocated size (files hard-linked with the store free nothing)
};
std::vector<DeletedBackup> PruneBackups(const std::string& backup_dir, const std::string& data_dir,
                                        int keep, const std::string& just_made,
                                        const std::string& store_id);

// Writes a backup of the live `store` and of data_dir/models to `target`
// (absolute, must not exist, parent must exist; see ResolveBackupTarget).
// The backup is assembled in a hidden sibling directory and renamed to
// `target` when complete and fsynced, so `target` either is a whole backup or
// does not exist. Does not block the daemon's writers. Not thread-safe with
// itself: the caller runs one backup at a time.
Result<BackupResult> CreateBackup(storage::Store& store, const std::string& data_dir,
                                  const std::string& target);

struct RestoreResult {
  std::string data_dir;  // absolute
  std::string live_version;
  storage::StoreCounts counts;
  std::vector<std::string> models;
  std::string backup_created_at;  // from the manifest
};

// Offline restore: copies the backup at `from` into `data_dir` (which must
// not exist or be an empty directory; never run it against a data dir in
// use), checks the restored counts against the manifest, points every
// registry record at its model directory under the new data dir, loads the
// live model once to prove it is usable, and records a "restore" event.
// On any failure, what it wrote is removed again. kFailedPrecondition for a
// non-empty target, kInvalidArgument for a directory that is not a backup,
// kCorruption when the restored store disagrees with the manifest.
Result<RestoreResult> RestoreBackup(const std::string& from, const std::string& data_dir);

// `rlaifd restore --from DIR --data-dir D`: prints a JSON summary line.
// Exit codes: 0 restored, 1 failed (nothing left behind), 2 usage.
int RunRestoreCommand(const std::vector<std::string>& args);

}  // namespace rlaif::daemon
