#include "server/health_targets.h"

namespace sparkgate::server {

std::vector<upstream::HealthTarget> RegistryHealthTargets::list() const {
  std::vector<upstream::HealthTarget> out;
  for (const auto& b : registry_.all()) out.push_back({b->cluster(), b->address(), b->name()});
  return out;
}

void RegistryHealthTargets::report(const upstream::HealthTarget& target, const config::HealthCheck& check, bool ok,
                                   const std::string& reason) {
  auto backend = registry_.snapshot()->find(target.cluster, target.name);
  if (!backend) return;
  if (ok) {
    backend->probe_succeeded(check.healthy_threshold);
  } else {
    backend->probe_failed(check.unhealthy_threshold, reason);
  }
}

}  // namespace sparkgate::server
