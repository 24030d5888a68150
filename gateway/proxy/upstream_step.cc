#include "proxy/upstream_step.h"

#include <spdlog/spdlog.h>

#include "proxy/rpc_state.h"
#include "proxy/upstream_request.h"

namespace sparkgate::proxy {

StepStatus UpstreamStep::run() {
  unreachable_ = false;
  const auto& route = state_.route;
  if (spdlog::should_log(spdlog::level::debug)) {  // describe() formats on every RPC otherwise
    spdlog::debug("rpc={} {} cluster={} backend={}{}", state_.rpc->name, state_.envelope().describe(),
                  route.cluster->name, state_.backend, route.new_session ? " (new session)" : "");
  }
  // An engine's own token, or the cluster's configured credential; never the client's.
  const std::string* token = route.cluster->engines       ? &state_.engine_token
                             : route.cluster->credentials ? &route.cluster->credentials->token
                                                          : nullptr;
  if (token) {
    auto& h = state_.upstream_headers;
    h.remove("authorization");
    h.remove("authentication");
    h.add("authorization", "Bearer " + *token);
  }
  auto& pool = state_.ctx.pools->get(route.backend->address(), route.cluster->tls);
  auto a = pool.acquire(*this);
  if (a.conn) return open(*a.conn);
  wait_.start(a.pending);
  return StepStatus::kPaused;
}

StepStatus UpstreamStep::open(http2::ClientConnection& conn) {
  int32_t id = state_.upstream->open(conn, state_.upstream_headers, state_.ctx.config->upstream.idle_timeout,
                                     state_.self.lock(), state_.backend);
  if (id < 0) {
    return state_.stop(grpcwire::StatusCode::kUnavailable,
                       "cannot open a stream to backend " + state_.backend + ": " + nghttp2_strerror(id));
  }
  return StepStatus::kContinue;
}

void UpstreamStep::on_pool_ready(http2::ClientConnection* conn, const std::string& error) {
  wait_.done();
  if (conn) {
    done_.step_done(open(*conn));
    return;
  }
  const auto& route = state_.route;
  route.backend->report_failure(route.cluster->health_check.passive_failures, error);
  unreachable_ = true;
  error_ = error;
  state_.stop(grpcwire::StatusCode::kUnavailable, "backend " + state_.backend + " is unreachable: " + error);
  done_.step_done(StepStatus::kStop);
}

}  // namespace sparkgate::proxy
