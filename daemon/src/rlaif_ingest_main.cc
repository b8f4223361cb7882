// rlaif-ingest: `rlaifd ingest` as a binary of its own, linked without
// LibTorch and the HTTP stack, for backfills and benchmarks where rlaifd's
// start-up (LibTorch's static initialisation: ~0.5 s CPU, ~170 MiB RSS)
// would dominate. Same arguments, output and exit codes (see ingest_once.h).
#include <string>
#include <vector>

#include "rlaif/daemon/ingest_once.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "ingest") args.erase(args.begin());  // rlaifd's spelling too
  return rlaif::daemon::RunIngestCommand(args);
}
