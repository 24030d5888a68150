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
      reloads_failed_(reloads_.Add({{"result", "failure"}})) {}

std::string Metrics::render() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace sparkgate::observe
