#include "runtime/base/metrics.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace baton {
namespace {

// "name{labels}" → "name" and "labels" (without braces).
std::pair<std::string, std::string> SplitName(const std::string& name) {
  size_t brace = name.find('{');
  if (brace == std::string::npos) return {name, ""};
  return {name.substr(0, brace), name.substr(brace + 1, name.size() - brace - 2)};
}

std::string WithLabels(const std::string& family, const std::string& labels,
                       const std::string& extra = "") {
  std::string all = labels;
  if (!extra.empty()) all = all.empty() ? extra : absl::StrCat(all, ",", extra);
  return all.empty() ? family : absl::StrCat(family, "{", all, "}");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<int64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i] = 0;
}

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<int64_t>(seconds * 1e6), std::memory_order_relaxed);
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
}

Counter& Metrics::AddCounter(std::string name, std::string help) {
  absl::MutexLock lock(&mu_);
  entries_.push_back({std::move(name), std::move(help), 'c', counters_.size()});
  return counters_.emplace_back();
}

Gauge& Metrics::AddGauge(std::string name, std::string help) {
  absl::MutexLock lock(&mu_);
  entries_.push_back({std::move(name), std::move(help), 'g', gauges_.size()});
  return gauges_.emplace_back();
}

Histogram& Metrics::AddHistogram(std::string name, std::string help, std::vector<double> bounds) {
  absl::MutexLock lock(&mu_);
  entries_.push_back({std::move(name), std::move(help), 'h', histograms_.size()});
  return histograms_.emplace_back(std::move(bounds));
}

std::string Metrics::Text() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  std::set<std::string> described;
  for (const Entry& e : entries_) {
    auto [family, labels] = SplitName(e.name);
    if (described.insert(family).second) {
      const char* type = e.type == 'c' ? "counter" : e.type == 'g' ? "gauge" : "histogram";
      absl::StrAppend(&out, "# HELP ", family, " ", e.help, "\n# TYPE ", family, " ", type, "\n");
    }
    if (e.type == 'c') {
      absl::StrAppend(&out, e.name, " ", counters_[e.index].value(), "\n");
    } else if (e.type == 'g') {
      absl::StrAppend(&out, e.name, " ", gauges_[e.index].value(), "\n");
    } else {
      const Histogram& h = histograms_[e.index];
      int64_t cumulative = 0;
      for (size_t i = 0; i <= h.bounds_.size(); ++i) {
        cumulative += h.buckets_[i].load(std::memory_order_relaxed);
        std::string le = i < h.bounds_.size() ? absl::StrFormat("%g", h.bounds_[i]) : "+Inf";
        absl::StrAppend(&out,
                        WithLabels(family + "_bucket", labels, absl::StrCat("le=\"", le, "\"")),
                        " ", cumulative, "\n");
      }
      absl::StrAppend(&out, WithLabels(family + "_sum", labels), " ",
                      absl::StrFormat("%.6f", h.sum_micros_.load() / 1e6), "\n");
      absl::StrAppend(&out, WithLabels(family + "_count", labels), " ", h.count(), "\n");
    }
  }
  return out;
}

}  // namespace baton
