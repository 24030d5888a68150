// The facts one RPC's pipeline steps establish and share: who is asking, under which
// quotas, where the request goes. Each field is written by the one step that decides it
// (named beside it) and read by the later ones. Plain data, one per RPC, owned by the
// RpcStream; the worker thread only.
#pragma once

#include <chrono>
#include <string>

#include "http2/header_map.h"
#include "base/principal.h"
#include "policy/quota.h"
#include "proxy/proxy_context.h"
#include "proxy/step.h"
#include "routing/router.h"
#include "spark/rpc.h"

namespace sparkgate::proxy {

class RequestInspector;
class UpstreamRequest;

struct RpcState {
  explicit RpcState(ProxyContext c) : ctx(std::move(c)) {}

  ProxyContext ctx;
  const spark::RpcInfo* rpc = nullptr;  // request_check: the method
  // The request as it goes upstream: built by request_check, credentials changed by
  // AuthenticateStep (the client's removed) and UpstreamStep (the cluster's added).
  http2::HeaderMap upstream_headers;
  base::Principal principal;   // AuthenticateStep; IdentityStep when unauthenticated
  policy::EffectiveQuota quota;  // resolved with the principal
  routing::RouteDecision route;  // RouteStep: cluster, backend, session
  std::string backend;           // RouteStep: the chosen backend's name ("" before)
  std::string engine_token;      // RouteStep, for an engines cluster: the engine's token (never logged)
  LocalReply reply;              // the reply of the step that answered kStop
  // The RpcStream itself, for upstream streams that must keep it alive.
  std::weak_ptr<void> self;

  // The downstream peer's address, for logs; valid while the request headers are
  // processed (the connection lives).
  const std::string* peer = nullptr;
  // The request's headers, while on_request_headers runs the header steps; else null.
  const http2::HeaderMap* request_headers = nullptr;
  // Borrowed from the RpcStream, which owns both and outlives every step.
  RequestInspector* inspector = nullptr;
  UpstreamRequest* upstream = nullptr;

  // The request's envelope (valid once the inspect step continued).
  const spark::Envelope& envelope() const;

  // Sets `reply` and answers kStop.
  StepStatus stop(grpcwire::StatusCode code, std::string message) {
    reply = {code, std::move(message), std::nullopt};
    return StepStatus::kStop;
  }
  StepStatus stop_quota(observe::Metrics::Quota q, std::string message) {
    reply = {grpcwire::StatusCode::kResourceExhausted, std::move(message), q};
    return StepStatus::kStop;
  }
};

// How long a session counts against max_sessions unless it is used again: until it
// would be reaped as idle (a day without sessions.idle_timeout).
inline std::chrono::milliseconds session_quota_ttl(const RpcState& s) {
  auto ttl = s.ctx.config->sessions.idle_timeout;
  return ttl.count() > 0 ? ttl : std::chrono::milliseconds(std::chrono::hours(24));
}

}  // namespace sparkgate::proxy
