// Per-worker, per-backend pool of HTTP/2 connections. Streams are multiplexed onto a
// connection up to the backend's SETTINGS_MAX_CONCURRENT_STREAMS; when every connection
// is full (or draining after a GOAWAY) the pool opens another, up to a cap.
//
// Threading: one pool per worker; every call on the worker's thread. Owned by the worker.
#pragma once

#include <boost/asio.hpp>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/cancellable.h"
#include "config/config.h"
#include "http2/client_connection.h"
#include "upstream/tls_client.h"

namespace prometheus {
class Gauge;
}
namespace sparkgate::observe {
class Metrics;
}

namespace sparkgate::upstream {

struct PoolOptions {
  std::chrono::milliseconds connect_timeout{5000};
  uint32_t max_connections = 64;
  http2::ClientConnectionOptions connection;
  // Process-wide, or null: each pool keeps sparkgate_upstream_connections{backend} current.
  observe::Metrics* metrics = nullptr;
};

// Waits for a connection (ConnPool::acquire); called at most once per wait.
class PoolWaiter {
 public:
  // `conn` is null on failure and `error` says why. The pointer is valid for the
  // duration of the call; the waiter opens its stream inside it.
  virtual void on_pool_ready(http2::ClientConnection* conn, const std::string& error) = 0;

 protected:
  ~PoolWaiter() = default;
};

// What acquire(PoolWaiter&) gives: a connection now, or a wait to cancel.
struct PoolAnswer {
  http2::ClientConnection* conn = nullptr;  // set: use it now (valid during the caller's turn)
  base::Cancellable* pending = nullptr;     // set: the waiter hears later
};

class ConnPool {
 public:
  // `connection` is null on failure and `error` says why ("connection refused", ...).
  using Ready = std::function<void(http2::ClientConnection* connection, const std::string& error)>;

  // `tls` set: every connection is TLS (server name tls->server_name, or the backend's
  // host when empty), with a context from `tls_cache` looked up per new connection.
  ConnPool(boost::asio::any_io_executor executor, config::Endpoint backend, std::optional<config::UpstreamTls> tls,
           std::shared_ptr<TlsContextCache> tls_cache, PoolOptions options);
  ~ConnPool();

  // Hands `ready` a connection with room for one more stream: at once (synchronously) if
  // one exists, else once a new connection is up or has failed. The connection pointer is
  // valid for the duration of the call; the caller opens its stream inside it.
  // Safe from inside nghttp2 callbacks of other connections.
  void acquire(Ready ready);
  // The same for an object that waits: a connection with room at once, or a wait that
  // ends in waiter.on_pool_ready unless cancelled first. No allocation when a connection
  // has room.
  PoolAnswer acquire(PoolWaiter& waiter);

  const std::string& backend() const { return backend_name_; }
  const config::Endpoint& endpoint() const { return backend_; }
  const std::optional<config::UpstreamTls>& tls() const { return tls_; }
  size_t connections() const { return conns_.size(); }
  // Closes every connection (their streams are told) and fails every waiter.
  void close_all();

 private:
  void open_connection();
  void on_connected(const std::shared_ptr<http2::ClientConnection>& s, const std::string& error);
  void serve_waiters();
  void forget(http2::ClientConnection& s);
  http2::ClientConnection* pick();
  // At the cap: the usable connection with the fewest streams (nghttp2 holds a stream
  // until the backend has room), or null.
  http2::ClientConnection* least_loaded();
  // Brings sparkgate_upstream_connections up to the connections open now.
  void report_connections();

  boost::asio::any_io_executor executor_;
  config::Endpoint backend_;
  std::string backend_name_;
  std::optional<config::UpstreamTls> tls_;
  std::shared_ptr<TlsContextCache> tls_cache_;
  PoolOptions options_;
  boost::asio::ip::tcp::resolver resolver_;
  std::vector<std::shared_ptr<http2::ClientConnection>> conns_;  // usable or connecting
  size_t connecting_ = 0;
  // One wait for a connection: a function or a PoolWaiter. Nodes never move (list), so
  // a wait can cancel itself.
  struct Waiting final : base::Cancellable {
    Waiting(Ready r, PoolWaiter* w) : ready(std::move(r)), waiter(w) {}
    void cancel() override { in->erase(self); }
    void call(http2::ClientConnection* s, const std::string& error) {
      if (waiter) waiter->on_pool_ready(s, error);
      else ready(s, error);
    }
    std::list<Waiting>* in = nullptr;  // the list holding this node
    Ready ready;
    PoolWaiter* waiter;
    std::list<Waiting>::iterator self;
  };
  void add_waiter(Ready ready, PoolWaiter* waiter);
  // Takes the first waiter off `list` and calls it.
  static void serve_first(std::list<Waiting>& list, http2::ClientConnection* s, const std::string& error);
  // Fails every waiter queued now (not those that a failing one queues again).
  void fail_waiters(const std::string& error);
  std::list<Waiting> waiters_;
  prometheus::Gauge* connections_gauge_ = nullptr;
  int64_t reported_connections_ = 0;
  // Tells callbacks that outlive the pool (connect completions) that it is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// True if both settings are absent, or present with the same field values.
bool same_tls(const std::optional<config::UpstreamTls>& a, const std::optional<config::UpstreamTls>& b);

}  // namespace sparkgate::upstream

namespace sparkgate::upstream {

// The pools of one worker, one per (backend address, TLS setting), created on first use.
class PoolSet {
 public:
  // `tls_cache` may be shared between workers; by default each PoolSet has its own.
  PoolSet(boost::asio::any_io_executor executor, PoolOptions options,
          std::shared_ptr<TlsContextCache> tls_cache = std::make_shared<TlsContextCache>())
      : executor_(std::move(executor)), options_(options), tls_cache_(std::move(tls_cache)) {}
  // The pool for `backend` reached with `tls` (nullopt: h2c); the reference stays valid
  // for the PoolSet's life.
  ConnPool& get(const config::Endpoint& backend, const std::optional<config::UpstreamTls>& tls);
  size_t connections() const;
  // Closes every upstream connection, for shutdown.
  void close_all();

 private:
  boost::asio::any_io_executor executor_;
  PoolOptions options_;
  std::shared_ptr<TlsContextCache> tls_cache_;
  std::vector<std::unique_ptr<ConnPool>> pools_;
};

}  // namespace sparkgate::upstream
