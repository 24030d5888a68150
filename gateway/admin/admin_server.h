// The admin HTTP listener (Boost.Beast): /healthz, /readyz and /metrics. Runs on its own thread so
// that a slow admin client never delays the data path. Binds where the config says; the
// default is loopback.
#pragma once

#include <boost/asio.hpp>

#include <functional>
#include <string>
#include <thread>

#include "config/config.h"

namespace sparkgate::admin {

struct AdminHooks {
  // True once the gateway can serve traffic; false while draining.
  std::function<bool()> ready;
  // The Prometheus text exposition for /metrics.
  std::function<std::string()> metrics;
};

class AdminServer {
 public:
  AdminServer(config::Endpoint address, AdminHooks hooks);
  ~AdminServer();

  // Binds and starts the thread. Returns false with `error` on failure.
  bool start(std::string& error);
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::ip::tcp::socket socket);

  config::Endpoint address_;
  AdminHooks hooks_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::thread thread_;
};

}  // namespace sparkgate::admin
