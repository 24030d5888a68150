#include "server/worker.h"

#include <spdlog/spdlog.h>

#include "http2/session_memory.h"
#include "policy/local_quota_service.h"
#include "policy/redis_quota_service.h"
#include "proxy/rpc_stream.h"
#include "routing/redis_session_store.h"
#include "server/io_thread.h"

namespace sparkgate::server {

namespace {
constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);

// One unit of GatewayState::open_connections, given back when the last owner lets go.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::atomic<uint32_t>& count) : count_(count) { count_.fetch_add(1); }
  ~ConnectionSlot() { count_.fetch_sub(1); }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  std::atomic<uint32_t>& count_;
};

upstream::PoolOptions pool_options(const config::Config& c, observe::Metrics* metrics) {
  upstream::PoolOptions o;
  o.metrics = metrics;
  o.connect_timeout = c.upstream.connect_timeout;
  o.max_connections = c.upstream.max_connections_per_backend;
  o.connection.stream_window_bytes = c.http2.stream_window_bytes;
  o.connection.connection_window_bytes = c.http2.connection_window_bytes;
  return o;
}
}  // namespace

Worker::Worker(int index, GatewayState& state)
    : index_(index),
      state_(state),
      work_(boost::asio::make_work_guard(io_)),
      pools_(io_.get_executor(), pool_options(*state.config.load(), &state.metrics)),
      key_source_(state.jwks, io_.get_executor()) {
  if (state.engines) engines_ = std::make_unique<engines::WorkerEngines>(*state.engines, io_.get_executor());
  // The store is chosen at startup: switching it needs a restart.
  const auto& sessions = state.config.load()->sessions;
  if (sessions.store == config::Sessions::Store::kRedis)
    store_ = std::make_unique<routing::RedisAffinityStore>(io_.get_executor(), sessions.redis);
  const auto& quotas = state.config.load()->quotas;
  if (quotas.store == config::Quotas::Store::kRedis)
    redis_quotas_ = std::make_unique<policy::RedisQuotas>(io_.get_executor(), quotas.redis);
  // The one place that knows which stores are in use.
  if (store_) session_store_ = std::make_unique<routing::RedisSessionStore>(*store_);
  else session_store_ = std::make_unique<routing::LocalSessionStore>();
  if (redis_quotas_) {
    quota_service_ = std::make_unique<policy::RedisQuotaService>(*redis_quotas_);
  } else {
    auto& sessions = state.router.sessions();
    quota_service_ = std::make_unique<policy::LocalQuotaService>(
        state.quotas, [&sessions](const std::string& user) { return sessions.user_sessions(user); });
  }
}

Worker::~Worker() { stop(); }

bool Worker::bind(const config::Config& config, std::string& error) {
  for (const auto& l : config.listeners) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(l.address.host, ec);
    if (ec) {
      // Listeners bind addresses, not names.
      error = "listener " + l.address.to_string() + ": '" + l.address.host + "' is not an IP address";
      return false;
    }
    boost::asio::ip::tcp::endpoint ep(address, l.address.port);
    auto acc = std::make_unique<boost::asio::ip::tcp::acceptor>(io_);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(boost::asio::socket_base::reuse_address(true), ec);
    if (!ec) {
      int one = 1;
      if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        ec = boost::system::error_code(errno, boost::system::system_category());
    }
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = "cannot listen on " + l.address.to_string() + ": " + ec.message();
      return false;
    }
    acceptors_.push_back(std::move(acc));
  }
  return true;
}

void Worker::start() {
  for (size_t i = 0; i < acceptors_.size(); ++i) accept(i);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), ("sparkgate-w" + std::to_string(index_)).substr(0, 15).c_str());
    io_.run();
  });
}

void Worker::accept(size_t i) {
  acceptors_[i]->async_accept([this, i](const boost::system::error_code& ec, boost::asio::ip::tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptors_[i]->is_open()) return;
    if (ec) {
      // EMFILE and friends: keep the listener alive, try again shortly.
      spdlog::warn("worker {}: accept failed: {}", index_, ec.message());
      auto timer = std::make_shared<boost::asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, i, timer](const boost::system::error_code&) {
        if (acceptors_[i]->is_open()) accept(i);
      });
      return;
    }
    boost::system::error_code ignored;
    socket.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
    // Counted before the limit check: a refused connection holds an fd too until it closes,
    // and is refused in a second at most.
    auto slot = std::make_shared<ConnectionSlot>(state_.open_connections);
    auto tls = i < state_.tls.size() ? state_.tls[i] : nullptr;
    if (!tls) {
      start_connection(std::make_unique<http2::TcpTransport>(std::move(socket)), nullptr, std::move(slot));
    } else {
      auto stream = std::make_unique<http2::TlsTransport::Stream>(std::move(socket), *tls);
      auto* raw = stream.get();
      auto timer = std::make_shared<boost::asio::steady_timer>(io_, kTlsHandshakeTimeout);
      timer->async_wait([raw_weak = raw, timer](const boost::system::error_code& e) {
        if (!e) {
          boost::system::error_code ign;
          raw_weak->next_layer().close(ign);
        }
      });
      auto holder = std::make_shared<std::unique_ptr<http2::TlsTransport::Stream>>(std::move(stream));
      raw->async_handshake(boost::asio::ssl::stream_base::server,
                           [this, holder, timer, slot](const boost::system::error_code& hec) {
                             timer->cancel();
                             if (hec) {
                               spdlog::debug("worker {}: TLS handshake failed: {}", index_, hec.message());
                               return;
                             }
                             auto peer = policy::read_peer_certificate((*holder)->native_handle());
                             start_connection(std::make_unique<http2::TlsTransport>(std::move(*holder)),
                                              std::move(peer), slot);
                           });
    }
    accept(i);
  });
}

void Worker::start_connection(std::unique_ptr<http2::Transport> transport,
                              std::shared_ptr<const policy::PeerCertificate> peer_cert,
                              std::shared_ptr<void> slot) {
  auto cfg = state_.config.load();
  http2::ServerConnectionOptions opts;
  opts.stream_window_bytes = cfg->http2.stream_window_bytes;
  opts.connection_window_bytes = cfg->http2.connection_window_bytes;
  opts.max_concurrent_streams = cfg->http2.max_concurrent_streams;
  opts.max_header_list_bytes = cfg->limits.max_header_list_bytes;
  opts.header_timeout = cfg->limits.header_timeout;
  opts.idle_timeout = cfg->limits.idle_timeout;
  const uint32_t limit = cfg->limits.max_connections ? cfg->limits.max_connections : state_.fd_connection_limit;
  if (state_.open_connections.load() > limit) {
    opts.refuse_with = "connection limit of " + std::to_string(limit) +
                       " reached (limits.max_connections); try again later";
    auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= std::chrono::seconds(1)) {
      spdlog::warn("worker {}: refusing a connection from {} ({} more since the last message): {}", index_,
                   transport->peer(), refusals_unlogged_, opts.refuse_with);
      last_refusal_log_ = now;
      refusals_unlogged_ = 0;
    } else {
      ++refusals_unlogged_;
    }
  }
  auto conn = std::make_shared<http2::ServerConnection>(
      io_.get_executor(), std::move(transport), opts, [this, peer_cert](http2::ServerConnection& s, int32_t id) {
        proxy::ProxyContext ctx{state_.config.load(), &state_.router,       &pools_,
                                session_store_.get(), quota_service_.get(), &state_.metrics,
                                &state_.access_log,   &state_.draining,     peer_cert};
        ctx.keys = &key_source_;
        ctx.spans = &state_.spans;
        ctx.engines = engines_.get();
        // One per RPC: the stream and its control block (a vtable pointer and two counts)
        // in one block from the worker thread's lists (http2/session_memory.h), not malloc.
        static_assert(sizeof(proxy::RpcStream) + 16 <= http2::kLargestPooledBytes,
                      "RpcStream outgrew the per-thread lists: every RPC would malloc it");
        return std::allocate_shared<proxy::RpcStream>(http2::PooledAllocator<proxy::RpcStream>(), s, id,
                                                      std::move(ctx));
      });
  std::weak_ptr<http2::ServerConnection> weak = conn;
  conn->on_finished = [this, weak, slot = std::move(slot)] {
    // Runs inside the connection; erase after it returns.
    boost::asio::post(io_, [this, weak] {
      if (auto s = weak.lock()) {
        conns_.erase(s);
        connections_ = conns_.size();
      }
    });
  };
  conns_.insert(conn);
  connections_ = conns_.size();
  conn->start();
  if (state_.draining) conn->begin_drain();
}

void Worker::drain() {
  boost::asio::post(io_, [this] {
    for (auto& a : acceptors_) {
      boost::system::error_code ec;
      a->close(ec);
    }
    for (auto& s : conns_) s->begin_drain();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    for (auto& a : acceptors_) {
      boost::system::error_code ec;
      a->close(ec);
    }
    // Copy: close() reaches on_finished, which edits the set (via post, but be safe).
    auto conns = conns_;
    for (auto& s : conns) s->close("gateway stopping");
    conns_.clear();
    connections_ = 0;
    pools_.close_all();
    if (store_) store_->close();
    if (redis_quotas_) redis_quotas_->stop();
    work_.reset();
  });
  // Give closing connections a moment to flush, then stop whatever is still pending.
  stop_and_join(io_, thread_);
}

}  // namespace sparkgate::server
