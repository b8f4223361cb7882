// `rlaifd ingest --config FILE --once`: one pass of ingest without the daemon,
// for backfills and benchmarks. Reads every configured source (and every file
// being drained after a rotation) to its current end, commits, prints one
// final JSON line on stdout and exits:
//
//   {"lines":N,"bytes":N,"stored":N,"rejected":N,"duplicates":N,
//    "sampled_out":N,"filtered":N,"pairs":N,"labels":N,"backpressured":N,"seconds":S}
//
// It opens the same store as `rlaifd run` (data_dir/store), so it must not run
// beside a daemon on the same data_dir (RocksDB's lock refuses it). Exit codes:
// 0 ok, 1 failure (store or I/O), 2 usage or config error.
#pragma once

#include <string>
#include <vector>

#include "rlaif/common/config.h"
#include "rlaif/common/status.h"
#include "rlaif/daemon/ingest.h"

namespace rlaif::daemon {

struct IngestOnceReport {
  IngestPassStats stats;
  double seconds = 0;
  // Bytes left in the sources after the pass: a final line without its
  // newline (it may still be being written), read by the next run once
  // complete.
  int64_t unread_bytes = 0;
};

// Opens data_dir/store and runs one ingest pass over `config.sources`.
Result<IngestOnceReport> IngestOnce(const Config& config);

// The report as one JSON object (no newline).
std::string IngestOnceJson(const IngestOnceReport& report);

// `args` are the arguments after "ingest".
int RunIngestCommand(const std::vector<std::string>& args);

}  // namespace rlaif::daemon
