// A small Prometheus metrics registry: counters, gauges and histograms with
// fixed label sets, rendered in the text exposition format (version 0.0.4).
//
//   rlaif::MetricsRegistry m;
//   rlaif::Counter& lines = m.GetCounter("rlaif_ingest_lines_total", "Log lines read.");
//   lines.Inc();
//   m.GetCounter("rlaif_ingest_rejected_total", "Rejected lines.", {{"reason", "bad_json"}}).Inc();
//   std::string text = m.Render();
//
// Thread safety: Get* and Render may be called from any thread; the returned
// references stay valid for the registry's lifetime; updates are lock-free.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace rlaif {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Inc(double v = 1.0);
  // For a count kept elsewhere (an atomic in another module, read when
  // metrics are collected): sets the counter to `total` unless that would
  // lower it, so a racing or stale read never makes it go backwards.
  void RaiseTo(double total);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  // Cumulative bucket counts (one per bound, then +Inf), sum and count.
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound + one for +Inf
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Default latency buckets in seconds (1 ms .. 60 s).
std::vector<double> DefaultLatencyBuckets();

class MetricsRegistry {
 public:
  // Name must match [a-zA-Z_:][a-zA-Z0-9_:]*; counters should end in _total.
  // The same (name, labels) returns the same object; help/type of the first call win.
  Counter& GetCounter(const std::string& name, const std::string& help,
                      const MetricLabels& labels = {});
  Gauge& GetGauge(const std::string& name, const std::string& help,
                  const MetricLabels& labels = {});
  Histogram& GetHistogram(const std::string& name, const std::string& help,
                          const MetricLabels& labels = {},
                          std::vector<double> buckets = DefaultLatencyBuckets());

  // Makes the gauge family `name` hold exactly `values` (one series per
  // label set), in one step under the registry's lock: series not listed are
  // removed. For families whose series come and go with what they describe
  // (a log file per path) and that nobody holds a reference to.
  void ReplaceGauges(const std::string& name, const std::string& help,
                     const std::vector<std::pair<MetricLabels, double>>& values);

  // Prometheus text format, families sorted by name.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Family {
    Type type;
    std::string help;
    std::map<MetricLabels, std::unique_ptr<Counter>> counters;
    std::map<MetricLabels, std::unique_ptr<Gauge>> gauges;
    std::map<MetricLabels, std::unique_ptr<Histogram>> histograms;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

}  // namespace rlaif
