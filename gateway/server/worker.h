// A worker: one thread, one io_context, its own SO_REUSEPORT acceptor per listener, its
// downstream connections, and its upstream connection pools. Nothing in a worker is
// touched by another thread except through post().
#pragma once

#include <boost/asio.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "engines/engine_manager.h"
#include "http2/server_connection.h"
#include "policy/key_source.h"
#include "policy/peer_certificate.h"
#include "policy/quota_service.h"
#include "policy/redis_quotas.h"
#include "routing/session_store.h"
#include "routing/redis_store.h"
#include "server/gateway_state.h"
#include "upstream/conn_pool.h"

namespace sparkgate::server {

class Worker {
 public:
  Worker(int index, GatewayState& state);
  ~Worker();

  // Binds this worker's acceptors (SO_REUSEPORT) for every listener of the config.
  // Returns false with `error` naming the address on failure. Call before start().
  bool bind(const config::Config& config, std::string& error);
  // Starts the thread.
  void start();
  // Stops accepting and asks every connection to finish (GOAWAY). Thread-safe.
  void drain();
  // Stops the io_context and joins the thread. Thread-safe; call once.
  void stop();
  // Open downstream connections (updated on the worker thread, read from any thread).
  size_t connections() const { return connections_.load(); }

 private:
  void accept(size_t listener_index);
  // `slot` holds the connection's unit of GatewayState::open_connections until it ends.
  void start_connection(std::unique_ptr<http2::Transport> transport,
                        std::shared_ptr<const policy::PeerCertificate> peer_cert, std::shared_ptr<void> slot);

  int index_;
  GatewayState& state_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  upstream::PoolSet pools_;
  std::unique_ptr<routing::RedisAffinityStore> store_;  // with sessions.store: redis
  std::unique_ptr<policy::RedisQuotas> redis_quotas_;   // with quotas.store: redis
  // Chosen at startup from sessions.store and quotas.store; the proxy sees only these.
  std::unique_ptr<routing::SessionStore> session_store_;
  std::unique_ptr<policy::QuotaService> quota_service_;
  std::unique_ptr<engines::WorkerEngines> engines_;  // the process's EngineManager, completions posted here
  policy::JwksKeySource key_source_;  // the process's JwksCache, completions posted here
  std::unordered_set<std::shared_ptr<http2::ServerConnection>> conns_;
  std::atomic<size_t> connections_{0};
  // Refusals past limits.max_connections are logged at most once a second.
  std::chrono::steady_clock::time_point last_refusal_log_{};
  uint64_t refusals_unlogged_ = 0;
  std::thread thread_;
};

}  // namespace sparkgate::server
