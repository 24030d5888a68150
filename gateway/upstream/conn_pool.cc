#include "upstream/conn_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "observe/metrics.h"

namespace sparkgate::upstream {

ConnPool::ConnPool(boost::asio::any_io_executor executor, config::Endpoint backend,
                   std::optional<config::UpstreamTls> tls, std::shared_ptr<TlsContextCache> tls_cache,
                   PoolOptions options)
    : executor_(executor),
      backend_(std::move(backend)),
      backend_name_(backend_.to_string()),
      tls_(std::move(tls)),
      tls_cache_(std::move(tls_cache)),
      options_(options),
      resolver_(executor),
      connections_gauge_(options.metrics ? &options.metrics->upstream_connections(backend_name_) : nullptr) {}

ConnPool::~ConnPool() {
  *alive_ = false;
  if (connections_gauge_) connections_gauge_->Decrement(static_cast<double>(reported_connections_));
  for (auto& s : conns_) s->on_unusable = nullptr;
}

http2::ClientConnection* ConnPool::pick() {
  http2::ClientConnection* best = nullptr;
  for (auto& s : conns_) {
    if (!s->has_capacity()) continue;
    // Fill the busiest connection that still has room, so idle ones can be retired and
    // streams share windows on few connections.
    if (!best || s->active_streams() > best->active_streams()) best = s.get();
  }
  return best;
}

http2::ClientConnection* ConnPool::least_loaded() {
  http2::ClientConnection* least = nullptr;
  for (auto& c : conns_) {
    if (c->is_connected() && !c->is_draining() && (!least || c->active_streams() < least->active_streams()))
      least = c.get();
  }
  return least;
}

void ConnPool::acquire(Ready ready) {
  if (auto* s = pick()) {
    ready(s, "");
    return;
  }
  add_waiter(std::move(ready), nullptr);
}

PoolAnswer ConnPool::acquire(PoolWaiter& waiter) {
  PoolAnswer a;
  if ((a.conn = pick())) return a;
  if (connecting_ == 0 && conns_.size() >= options_.max_connections && (a.conn = least_loaded())) return a;
  add_waiter({}, &waiter);  // never served inside this call now
  a.pending = &waiters_.back();
  return a;
}

void ConnPool::serve_first(std::list<Waiting>& list, http2::ClientConnection* s, const std::string& error) {
  // Off the list before the call: the wait is over once its completion starts.
  Waiting w = std::move(list.front());
  list.pop_front();
  w.call(s, error);
}

void ConnPool::fail_waiters(const std::string& error) {
  std::list<Waiting> failing;
  failing.splice(failing.end(), waiters_);
  for (auto& w : failing) w.in = &failing;
  while (!failing.empty()) serve_first(failing, nullptr, error);
}

void ConnPool::add_waiter(Ready ready, PoolWaiter* waiter) {
  waiters_.emplace_back(std::move(ready), waiter);
  waiters_.back().self = std::prev(waiters_.end());
  waiters_.back().in = &waiters_;
  if (connecting_ == 0) {
    if (conns_.size() < options_.max_connections) {
      open_connection();
    } else {
      // At the cap: queue on the least loaded connection; nghttp2 holds the stream until
      // the backend has room.
      serve_waiters();
    }
  }
}

void ConnPool::open_connection() {
  auto s = std::make_shared<http2::ClientConnection>(executor_, backend_name_, options_.connection);
  s->on_unusable = [this, alive = alive_](http2::ClientConnection& dead) {
    if (*alive) forget(dead);
  };
  conns_.push_back(s);
  ++connecting_;
  std::optional<http2::ClientTls> client_tls;
  if (tls_) {
    std::string error;
    auto ctx = tls_cache_ ? tls_cache_->get(*tls_, error) : make_upstream_tls_context(*tls_, error);
    if (!ctx) {
      // Reported from a handler, like every other connect failure (acquire() may be
      // running inside another connection's callback).
      boost::asio::post(executor_, [this, s, error, alive = alive_] {
        if (*alive) on_connected(s, "TLS setup failed: " + error);
      });
      return;
    }
    client_tls = http2::ClientTls{std::move(ctx), tls_->server_name.empty() ? backend_.host : tls_->server_name};
  }
  resolver_.async_resolve(
      backend_.host, std::to_string(backend_.port),
      [this, s, alive = alive_, client_tls = std::move(client_tls)](const boost::system::error_code& ec,
                                boost::asio::ip::tcp::resolver::results_type results) {
        if (!*alive) return;
        if (ec) {
          on_connected(s, "cannot resolve " + backend_.host + ": " + ec.message());
          return;
        }
        s->connect(results, options_.connect_timeout, client_tls,
                   [this, s, alive](const std::string& error) {
                     if (*alive) on_connected(s, error);
                   });
      });
}

void ConnPool::on_connected(const std::shared_ptr<http2::ClientConnection>& s, const std::string& error) {
  --connecting_;
  if (!error.empty()) {
    spdlog::warn("backend {} unreachable: {}", backend_name_, error);
    std::erase(conns_, s);
    // Every waiter fails: they all wanted this backend, and it just refused us.
    fail_waiters(error);
    return;
  }
  report_connections();
  spdlog::debug("connected to backend {} ({} connections)", backend_name_, conns_.size());
  serve_waiters();
}

void ConnPool::serve_waiters() {
  while (!waiters_.empty()) {
    auto* s = pick();
    if (!s) {
      if (connecting_ > 0) return;
      if (conns_.size() < options_.max_connections) {
        open_connection();
        return;
      }
      // At the cap: least-loaded usable connection.
      http2::ClientConnection* least = least_loaded();
      if (!least) {
        open_connection();
        return;
      }
      s = least;
    }
    serve_first(waiters_, s, "");
  }
}

void ConnPool::close_all() {
  auto conns = conns_;
  for (auto& s : conns) s->close("gateway stopping");
  conns_.clear();
  report_connections();
  resolver_.cancel();
  fail_waiters("the gateway is stopping");
}

void ConnPool::report_connections() {
  if (!connections_gauge_) return;
  const auto open = static_cast<int64_t>(
      std::count_if(conns_.begin(), conns_.end(), [](const auto& s) { return s->is_connected(); }));
  connections_gauge_->Increment(static_cast<double>(open - reported_connections_));
  reported_connections_ = open;
}

void ConnPool::forget(http2::ClientConnection& dead) {
  std::erase_if(conns_, [&](const auto& s) { return s.get() == &dead; });
  report_connections();
  // Waiters queued while this connection looked usable get a new one.
  if (!waiters_.empty() && connecting_ == 0) boost::asio::post(executor_, [this, alive = alive_] {
      if (*alive) serve_waiters();
    });
}

}  // namespace sparkgate::upstream

namespace sparkgate::upstream {

bool same_tls(const std::optional<config::UpstreamTls>& a, const std::optional<config::UpstreamTls>& b) {
  if (!a || !b) return !a && !b;
  return a->ca == b->ca && a->server_name == b->server_name && a->cert == b->cert && a->key == b->key;
}

ConnPool& PoolSet::get(const config::Endpoint& backend, const std::optional<config::UpstreamTls>& tls) {
  // Called on every RPC: compares fields instead of formatting the address.
  for (auto& p : pools_) {
    const auto& ep = p->endpoint();
    if (ep.port == backend.port && ep.host == backend.host && same_tls(p->tls(), tls)) return *p;
  }
  pools_.push_back(std::make_unique<ConnPool>(executor_, backend, tls, tls_cache_, options_));
  return *pools_.back();
}

void PoolSet::close_all() {
  for (auto& p : pools_) p->close_all();
}

size_t PoolSet::connections() const {
  size_t n = 0;
  for (const auto& p : pools_) n += p->connections();
  return n;
}

}  // namespace sparkgate::upstream
