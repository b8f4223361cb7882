#include "rlaif/daemon/ingest_once.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "rlaif/common/metrics.h"
#include "rlaif/storage/store.h"

namespace rlaif::daemon {

Result<IngestOnceReport> IngestOnce(const Config& config) {
  RaiseOpenFileLimit();
  const auto start = std::chrono::steady_clock::now();
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Status::IoError("cannot create data_dir " + config.data_dir + ": " + ec.message());
  // A bounded memtable budget keeps a backfill's memory flat (RocksDB's
  // default is 64 MiB per column family, 2 each).
  auto store = storage::Store::Open({.path = config.data_dir + "/store",
                                     .sync = false,
                                     .write_buffer_bytes = 64 << 20,
                                     .compress_blobs = config.store_compress_blobs,
                                     .max_rejected_lines = config.store_max_rejected_lines});
  if (!store.ok()) return store.status();
  MetricsRegistry metrics;
  Ingestor ingestor(config.sources, config.sampling, **store, metrics);
  auto pass = ingestor.PollOnce();
  if (!pass.ok()) return pass.status();
  IngestOnceReport report;
  report.stats = *pass;
  for (const auto& s : ingestor.Sources()) report.unread_bytes += static_cast<int64_t>(s.lag_bytes);
  if (report.unread_bytes > 0) {
    spdlog::warn(
        "ingest: {} bytes left unread: final lines without their newline (read by the "
        "next run once they end with one)",
        report.unread_bytes);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::string IngestOnceJson(const IngestOnceReport& r) {
  nlohmann::json j = {{"lines", r.stats.lines},           {"bytes", r.stats.bytes},
                      {"stored", r.stats.stored},         {"rejected", r.stats.rejected},
                      {"duplicates", r.stats.duplicates}, {"sampled_out", r.stats.sampled_out},
                      {"filtered", r.stats.filtered},     {"pairs", r.stats.logged_pairs},
                      {"labels", r.stats.logged_labels},  {"backpressured", r.stats.backpressured},
                      {"unread_bytes", r.unread_bytes},   {"seconds", r.seconds}};
  return j.dump();
}

int RunIngestCommand(const std::vector<std::string>& args) {
  std::string config_path;
  bool once = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) {
      config_path = args[++i];
    } else if (args[i].rfind("--config=", 0) == 0) {
      config_path = args[i].substr(9);
    } else if (args[i] == "--once") {
      once = true;
    } else {
      std::cerr << "unknown argument: " << args[i] << "\n";
      return 2;
    }
  }
  if (config_path.empty() || !once) {
    std::cerr << "usage: rlaifd ingest --config FILE --once\n";
    return 2;
  }
  auto cfg = LoadConfigFile(config_path);
  if (!cfg.ok()) {
    std::cerr << cfg.status().message() << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  auto report = IngestOnce(*cfg);
  if (!report.ok()) {
    spdlog::critical("rlaifd ingest: {}", report.status().ToString());
    return 1;
  }
  std::cout << IngestOnceJson(*report) << std::endl;
  return 0;
}

}  // namespace rlaif::daemon
