// File: runtime/base/metrics.h
//
// A small Prometheus registry: counters, gauges and fixed-bucket histograms, rendered in the
// text exposition format (version 0.0.4) for a `/metrics` endpoint. Recording is lock-free
// (atomics); only registration and rendering take the registry's lock.
#ifndef BATON_RUNTIME_BASE_METRICS_H_
#define BATON_RUNTIME_BASE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace baton {

class Counter {
 public:
  void Add(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Buckets are upper bounds in seconds, ascending; +Inf is implied.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double seconds);
  int64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  friend class Metrics;
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;  // per bound, not cumulative
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> sum_micros_{0};
};

// Latency buckets from 50 µs to 10 s.
std::vector<double> LatencyBuckets();

class Metrics {
 public:
  // `name` may carry labels: `baton_runs_ended_total{end="exited"}`. Metrics of one family
  // share the `help` of the first registered.
  Counter& AddCounter(std::string name, std::string help);
  Gauge& AddGauge(std::string name, std::string help);
  Histogram& AddHistogram(std::string name, std::string help,
                          std::vector<double> bounds = LatencyBuckets());

  std::string Text() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    char type;  // 'c', 'g', 'h'
    size_t index;
  };
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  // deques: references handed out stay valid as more are added.
  std::deque<Counter> counters_ ABSL_GUARDED_BY(mu_);
  std::deque<Gauge> gauges_ ABSL_GUARDED_BY(mu_);
  std::deque<Histogram> histograms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baton

#endif  // BATON_RUNTIME_BASE_METRICS_H_
