#include "server/observers.h"

namespace sparkgate::server {

void install_session_observers(GatewayState& state) {
  state.router.sessions().add_end_listener([&state](const routing::SessionPtr& s, routing::EndReason why) {
    // An entry withdrawn before any RPC reached a backend was never a session.
    if (why == routing::EndReason::kUnplaced) return;
    const char* reason = routing::end_reason_name(why);
    state.metrics.sessions_closed(reason).Increment();
    if (why == routing::EndReason::kExpiredIdle || why == routing::EndReason::kExpiredLifetime)
      state.metrics.sessions_expired().Increment();
    if (!state.access_log.enabled()) return;
    const std::string tenant = s->tenant();
    const std::string server_side = s->server_side_session_id();
    observe::SessionRecord r;
    r.session = s->session_id;
    r.user = s->user_id;
    r.tenant = tenant;
    r.cluster = s->cluster;
    r.backend = s->backend->name();
    r.server_side_session_id = server_side;
    r.reason = reason;
    r.created = s->created_wall;
    r.duration_s = std::chrono::duration<double>(routing::Clock::now() - s->created).count();
    r.stats = &s->stats;
    state.access_log.session_ended(r);
  });
}

std::string not_ready_reason(const GatewayState& state) {
  if (state.draining.load()) return "draining";
  if (!state.config.load()) return "no configuration";
  if (!state.backends.any_healthy()) return "no healthy backend";
  return {};
}

observe::ScrapeInput scrape_input(GatewayState& state, const std::vector<std::unique_ptr<Worker>>& workers) {
  observe::ScrapeInput in;
  for (const auto& b : state.router.backends().all()) {
    in.backends.push_back({b->cluster(), b->name(), b->sessions.load(), b->healthy.load()});
  }
  for (const auto& w : workers) in.downstream_connections += w->connections();
  in.sessions_created = state.router.sessions().created_total();
  return in;
}

}  // namespace sparkgate::server
