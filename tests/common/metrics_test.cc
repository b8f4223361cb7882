#include "rlaif/common/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace rlaif {
namespace {

TEST(CounterTest, RaiseToFollowsAnExternalCountAndNeverGoesBack) {
  MetricsRegistry m;
  Counter& c = m.GetCounter("rlaif_things_total", "Things.", {{"role", "judge"}});
  c.RaiseTo(5);
  EXPECT_EQ(c.Value(), 5);
  c.RaiseTo(3);  // a stale read of the external count
  EXPECT_EQ(c.Value(), 5);
  c.RaiseTo(9);
  EXPECT_EQ(c.Value(), 9);
  const std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE rlaif_things_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_things_total{role=\"judge\"} 9"), std::string::npos) << text;
}

TEST(CounterTest, RaiseToFromManyThreadsKeepsTheLargest) {
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c, t] {
      for (int i = 0; i < 10000; ++i) c.RaiseTo(static_cast<double>(i * 4 + t));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(c.Value(), 9999.0 * 4 + 3);
}

TEST(CounterTest, IncIgnoresNegativeSteps) {
  Counter c;
  c.Inc(2);
  c.Inc(-1);
  EXPECT_EQ(c.Value(), 2);
}

TEST(MetricsRegistryTest, ACounterTouchedButNeverIncrementedRendersZero) {
  MetricsRegistry m;
  m.GetCounter("rlaif_rejected_total", "Rejected.", {{"reason", "bad_json"}});
  EXPECT_NE(m.Render().find("rlaif_rejected_total{reason=\"bad_json\"} 0"), std::string::npos);
}

// A gauge family replaced whole: series not listed any more disappear (a
// released log file leaves no stale lag for the alert), the others update.
TEST(MetricsRegistryTest, ReplaceGaugesDropsSeriesNoLongerListed) {
  MetricsRegistry m;
  m.ReplaceGauges("rlaif_ingest_lag_bytes", "Lag.", {{{{"path", "/a"}}, 5}, {{{"path", "/b"}}, 7}});
  std::string text = m.Render();
  EXPECT_NE(text.find("rlaif_ingest_lag_bytes{path=\"/a\"} 5"), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_ingest_lag_bytes{path=\"/b\"} 7"), std::string::npos) << text;
  m.ReplaceGauges("rlaif_ingest_lag_bytes", "Lag.", {{{{"path", "/b"}}, 0}});
  text = m.Render();
  EXPECT_EQ(text.find("path=\"/a\""), std::string::npos) << text;
  EXPECT_NE(text.find("rlaif_ingest_lag_bytes{path=\"/b\"} 0"), std::string::npos) << text;
}

}  // namespace
}  // namespace rlaif
