// The process's Prometheus metric families (prometheus-cpp), served as text at /metrics
// on the admin listener. Counters are atomic: safe to bump from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace sparkgate::observe {

class Metrics {
 public:
  Metrics();

  // sparkgate_config_reloads_total{result="success"|"failure"}
  prometheus::Counter& reloads_succeeded() { return reloads_succeeded_; }
  prometheus::Counter& reloads_failed() { return reloads_failed_; }

  // The Prometheus text exposition of every family.
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_succeeded_;
  prometheus::Counter& reloads_failed_;
};

}  // namespace sparkgate::observe
