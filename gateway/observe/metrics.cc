#include "observe/metrics.h"

#include <prometheus/text_serializer.h>

namespace sparkgate::observe {

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      reloads_(prometheus::BuildCounter()
                   .Name("sparkgate_config_reloads_total")
                   .Help("Configuration reloads (SIGHUP or a change of the file), by result")
                   .Register(*registry_)),
      reloads_succeeded_(reloads_.Add({{"result", "success"}})),
      reloads_failed_(reloads_.Add({{"result", "failure"}})),
      identity_rejections_(prometheus::BuildCounter()
                               .Name("sparkgate_identity_rejections_total")
                               .Help("Requests refused because user_context.user_id was not the authenticated user")
                               .Register(*registry_)
                               .Add({})) {
  auto& auth = prometheus::BuildCounter()
                   .Name("sparkgate_auth_failures_total")
                   .Help("Requests refused with UNAUTHENTICATED, by reason")
                   .Register(*registry_);
  // kNone is not a failure; every real reason exists from the start (a rate of 0 is data).
  for (size_t i = 1; i < kAuthReasons; ++i) {
    auth_failures_[i] =
        &auth.Add({{"reason", std::string(policy::auth_failure_label(static_cast<policy::AuthFailure>(i)))}});
  }
  auto& quotas = prometheus::BuildCounter()
                     .Name("sparkgate_quota_rejections_total")
                     .Help("Requests refused with RESOURCE_EXHAUSTED by a quota, by quota")
                     .Register(*registry_);
  for (size_t i = 0; i < quota_rejections_.size(); ++i) {
    quota_rejections_[i] = &quotas.Add({{"quota", std::string(quota_name(static_cast<Quota>(i)))}});
  }
}

prometheus::Counter& Metrics::auth_failure(policy::AuthFailure reason) {
  auto i = static_cast<size_t>(reason);
  if (i == 0 || i >= kAuthReasons) i = static_cast<size_t>(policy::AuthFailure::kMalformed);
  return *auth_failures_[i];
}

std::string_view Metrics::quota_name(Quota q) {
  switch (q) {
    case Quota::kMaxSessions: return "max_sessions";
    case Quota::kMaxConcurrentOperations: return "max_concurrent_operations";
    case Quota::kRequestsPerSecond: return "requests_per_second";
    case Quota::kMaxArtifactBytes: return "max_artifact_bytes";
    case Quota::kMaxMessageBytes: return "max_message_bytes";
  }
  return "?";
}

std::string Metrics::render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace sparkgate::observe
