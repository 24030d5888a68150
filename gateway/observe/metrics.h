// The process's Prometheus metric families (prometheus-cpp), served as text at /metrics
// on the admin listener. Counters are atomic: safe to bump from any thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>

#include "policy/auth_result.h"

namespace sparkgate::observe {

class Metrics {
 public:
  Metrics();

  // sparkgate_config_reloads_total{result="success"|"failure"}
  prometheus::Counter& reloads_succeeded() { return reloads_succeeded_; }
  prometheus::Counter& reloads_failed() { return reloads_failed_; }

  // sparkgate_auth_failures_total{reason}: refused credentials, by AuthFailure label.
  prometheus::Counter& auth_failure(policy::AuthFailure reason);

  // Quotas, in the order of the labels of sparkgate_quota_rejections_total{quota}.
  enum class Quota { kMaxSessions, kMaxConcurrentOperations, kRequestsPerSecond, kMaxArtifactBytes, kMaxMessageBytes };
  static std::string_view quota_name(Quota q);
  prometheus::Counter& quota_rejection(Quota q) { return *quota_rejections_[static_cast<size_t>(q)]; }

  // sparkgate_identity_rejections_total: requests whose user_id was not the principal's.
  prometheus::Counter& identity_rejections() { return identity_rejections_; }

  // The Prometheus text exposition of every family.
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& reloads_;
  prometheus::Counter& reloads_succeeded_;
  prometheus::Counter& reloads_failed_;
  static constexpr size_t kAuthReasons = static_cast<size_t>(policy::AuthFailure::kBadCertificate) + 1;
  std::array<prometheus::Counter*, kAuthReasons> auth_failures_{};
  std::array<prometheus::Counter*, 5> quota_rejections_{};
  prometheus::Counter& identity_rejections_;
};

}  // namespace sparkgate::observe
