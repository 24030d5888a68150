// Route selection and session affinity: which cluster serves a request, and which
// backend of that cluster owns the request's Spark session.
//
// Threading: one Router for the process, shared by all workers; route() is thread-safe
// (the session table is sharded, one mutex per shard).
#pragma once

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "config/config.h"
#include "grpc/status.h"
#include "http2/header_map.h"
#include "spark/inspector.h"
#include "spark/rpc.h"

namespace sparkgate::routing {

struct RouteDecision {
  std::string cluster;
  config::Endpoint backend;
};

class Router {
 public:
  // Decides where a request goes. On failure returns a status for the client
  // (PERMISSION_DENIED when no route matches, UNAVAILABLE when the cluster has no backend).
  grpc::Status route(const config::Config& config, const spark::RpcInfo& rpc, const spark::Envelope& envelope,
                     const http2::HeaderMap& headers, RouteDecision& out);

  // Called when a ReleaseSession completed: the session's pin is dropped.
  void forget_session(const std::string& user_id, const std::string& session_id);

  size_t session_count() const;

 private:
  struct Pin {
    std::string cluster;
    std::string backend;  // Endpoint::to_string()
    std::chrono::steady_clock::time_point last_used;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Pin> pins;
  };
  static constexpr size_t kShards = 16;
  static std::string key(const std::string& user_id, const std::string& session_id);
  Shard& shard_for(const std::string& key);
  // Backend of `cluster` with the fewest pinned sessions.
  const config::Backend& place(const config::Cluster& cluster);

  std::array<Shard, kShards> shards_;
  std::mutex counts_mu_;
  std::unordered_map<std::string, size_t> sessions_per_backend_;
};

}  // namespace sparkgate::routing
