// The health checker's backends are routing's: this turns the backend registry into the
// checker's HealthTargets (upstream/health_checker.h), and applies each probe's outcome
// to the backend's BackendState, which applies the thresholds. It lives in server/, the
// one layer that sees both upstream/ and routing/.
//
// Threading: like BackendRegistry, every method is thread-safe.
#pragma once

#include "routing/backend_state.h"
#include "upstream/health_checker.h"

namespace sparkgate::server {

class RegistryHealthTargets final : public upstream::HealthTargets {
 public:
  // `registry` is borrowed and outlives this object.
  explicit RegistryHealthTargets(routing::BackendRegistry& registry) : registry_(registry) {}

  std::vector<upstream::HealthTarget> list() const override;
  // Applies the outcome to the backend with that cluster and address in the registry's
  // current snapshot; a backend that has left the registry since is skipped.
  void report(const upstream::HealthTarget& target, const config::HealthCheck& check, bool ok,
              const std::string& reason) override;

 private:
  routing::BackendRegistry& registry_;
};

}  // namespace sparkgate::server
