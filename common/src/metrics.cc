#include "rlaif/common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace rlaif {

namespace {

void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", v);
  } else {
    // Shortest representation that reads back as the same double.
    for (int precision = 6; precision <= 17; ++precision) {
      std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}

std::string EscapeLabel(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string EscapeHelp(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string LabelText(const MetricLabels& labels, const std::string& extra_key = "",
                      const std::string& extra_value = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ",";
    first = false;
    out += k + "=\"" + EscapeLabel(v) + "\"";
  }
  if (!extra_key.empty()) {
    if (!first) out += ",";
    out += extra_key + "=\"" + extra_value + "\"";
  }
  out += "}";
  return out;
}

}  // namespace

void Counter::Inc(double v) {
  if (v < 0) return;  // counters never go down
  AtomicAdd(value_, v);
}

void Counter::RaiseTo(double total) {
  double cur = value_.load(std::memory_order_relaxed);
  while (total > cur && !value_.compare_exchange_weak(cur, total, std::memory_order_relaxed)) {
  }
}

void Gauge::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t acc = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    out[i] = acc;
  }
  return out;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

Counter& MetricsRegistry::GetCounter(const std::string& name, const std::string& help,
                                     const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = Type::kCounter;
    it->second.help = help;
  }
  auto& slot = it->second.counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::GetGauge(const std::string& name, const std::string& help,
                                 const MetricLabels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = Type::kGauge;
    it->second.help = help;
  }
  auto& slot = it->second.gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

void MetricsRegistry::ReplaceGauges(const std::string& name, const std::string& help,
                                    const std::vector<std::pair<MetricLabels, double>>& values) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = Type::kGauge;
    it->second.help = help;
  }
  std::map<MetricLabels, std::unique_ptr<Gauge>> next;
  for (const auto& [labels, v] : values) {
    auto& slot = next[labels];
    if (!slot) {
      auto old = it->second.gauges.find(labels);
      slot = old != it->second.gauges.end() ? std::move(old->second) : std::make_unique<Gauge>();
    }
    slot->Set(v);
  }
  it->second.gauges = std::move(next);
}

Histogram& MetricsRegistry::GetHistogram(const std::string& name, const std::string& help,
                                         const MetricLabels& labels,
                                         std::vector<double> buckets) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.type = Type::kHistogram;
    it->second.help = help;
  }
  auto& slot = it->second.histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(std::move(buckets));
  return *slot;
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream out;
  for (const auto& [name, fam] : families_) {
    const char* type = fam.type == Type::kCounter ? "counter"
                       : fam.type == Type::kGauge ? "gauge"
                                                  : "histogram";
    out << "# HELP " << name << " " << EscapeHelp(fam.help) << "\n";
    out << "# TYPE " << name << " " << type << "\n";
    for (const auto& [labels, c] : fam.counters) {
      out << name << LabelText(labels) << " " << FormatValue(c->Value()) << "\n";
    }
    for (const auto& [labels, g] : fam.gauges) {
      out << name << LabelText(labels) << " " << FormatValue(g->Value()) << "\n";
    }
    for (const auto& [labels, h] : fam.histograms) {
      auto counts = h->CumulativeCounts();
      const auto& bounds = h->bounds();
      for (size_t i = 0; i < bounds.size(); ++i) {
        out << name << "_bucket" << LabelText(labels, "le", FormatValue(bounds[i])) << " "
            << counts[i] << "\n";
      }
      out << name << "_bucket" << LabelText(labels, "le", "+Inf") << " " << counts.back()
          << "\n";
      out << name << "_sum" << LabelText(labels) << " " << FormatValue(h->Sum()) << "\n";
      out << name << "_count" << LabelText(labels) << " " << h->Count() << "\n";
    }
  }
  return out.str();
}

}  // namespace rlaif
