// The admin HTTP listener (Boost.Beast): health, readiness, Prometheus metrics and the
// /v1/ API over sessions, backends and the running configuration (docs/operations.md).
// Runs on its own thread so that a slow admin client never delays the data path. Binds
// where the config says; the default is loopback.
//
// It reads the session registry and the backend registry and changes state only through
// routing's interfaces (ending a session, draining a backend) and the hooks
// below.
#pragma once

#include <boost/asio.hpp>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "config/config.h"
#include "routing/router.h"

namespace sparkgate::admin {

struct AdminHooks {
  // Empty when the gateway can serve traffic; otherwise why not ("draining", "no healthy
  // backend"). Called on the admin thread.
  std::function<std::string()> not_ready;
  // The Prometheus text exposition for /metrics.
  std::function<std::string()> metrics;
  // The configuration now in force.
  std::function<std::shared_ptr<const config::Config>()> config;
  // Sends ReleaseSession for `session` to its backend (asynchronously) and forgets it in
  // shared stores. Called after the session left the registry.
  std::function<void(const routing::SessionPtr&)> release_on_backend;
  // The fetched keys of a JWT issuer with discovery/jwks_uri (key ids, fetch times, last
  // error) as a JSON object for /v1/config; empty: none shown. Called on the admin thread.
  std::function<boost::json::object(const std::string& issuer)> jwt_remote_status;
  // Engines on demand: every engine as a JSON array (GET /v1/engines), and the stop of
  // the engine of a share key (DELETE /v1/engines/{key}; false: no such engine).
  std::function<boost::json::array()> list_engines;
  std::function<bool(const std::string& key)> stop_engine;
};

class AdminServer {
 public:
  // `router` outlives the server. `token`: the bearer token /v1/ requires ("" = none).
  AdminServer(config::Endpoint address, routing::Router& router, std::string token, AdminHooks hooks);
  ~AdminServer();

  // Binds and starts the thread. Returns false with `error` on failure.
  bool start(std::string& error);
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);

  config::Endpoint address_;
  routing::Router& router_;
  std::string token_;
  AdminHooks hooks_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

}  // namespace sparkgate::admin
