// Wiring between the process-wide state and observe/: what happens when a session ends
// (metrics, the summary line), and the values /metrics reads at scrape time.
#pragma once

#include <memory>
#include <vector>

#include "observe/metrics.h"
#include "server/gateway_state.h"
#include "server/worker.h"

namespace sparkgate::server {

// Adds the session registry's end listener that counts sparkgate_sessions_closed_total
// and sparkgate_sessions_expired_total and writes the session summary line. Call once,
// before any traffic.
void install_session_observers(GatewayState& state);

// Readiness: "" when ready, else why not ("draining", "no healthy backend").
std::string not_ready_reason(const GatewayState& state);

// The scrape-time values for Metrics::render. Thread-safe.
observe::ScrapeInput scrape_input(GatewayState& state, const std::vector<std::unique_ptr<Worker>>& workers);

}  // namespace sparkgate::server
