#include "idle_connections.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "bench_messages.h"

namespace sparkgate::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kConfigPath = "/spark.connect.SparkConnectService/Config";

struct Connection {
  uint32_t index = 0;      // in IdleRun::connections_, and the epoll data
  int fd = -1;
  nghttp2_session* session = nullptr;
  bool connected = false;
  bool settled = false;    // the RPC finished, or the connection failed
  bool ok = false;         // the RPC succeeded and the connection is open
  bool want_write = false;
  std::string request;     // the gRPC-framed Config request
  size_t request_sent = 0;
  bool stream_closed = false;
  uint32_t reset_code = 0;  // NGHTTP2_NO_ERROR unless the stream was reset
  std::string grpc_status;  // from the trailers; empty if none came
  std::string pending;     // produced by nghttp2, not yet taken by the socket
};

class IdleRun {
 public:
  explicit IdleRun(const IdleOptions& options) : options_(options), rng_(std::random_device{}()) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    nghttp2_session_callbacks_new(&callbacks_);
    nghttp2_session_callbacks_set_on_header_callback(callbacks_, &IdleRun::on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks_, &IdleRun::on_stream_close);
    connections_.reserve(static_cast<size_t>(options.connections));
  }

  ~IdleRun() {
    for (auto& c : connections_) close_connection(*c);
    nghttp2_session_callbacks_del(callbacks_);
    if (epoll_ >= 0) close(epoll_);
  }

  IdleRun(const IdleRun&) = delete;
  IdleRun& operator=(const IdleRun&) = delete;

  IdleResult run() {
    IdleResult result;
    const int baseline = std::clamp(options_.baseline, 0, options_.connections);
    const auto start = Clock::now();
    open_until(baseline);
    auto setup = Clock::now() - start;
    pump_for(options_.settle_s);
    result.at_baseline = sample_process(options_.proxy_pid);
    const auto second = Clock::now();
    open_until(options_.connections);
    setup += Clock::now() - second;
    pump_for(options_.settle_s);
    result.at_full = sample_process(options_.proxy_pid);
    pump_for(options_.hold_s);
    result.setup_s = std::chrono::duration<double>(setup).count();
    for (const auto& c : connections_) {
      if (c->ok) ++result.completed;
    }
    result.errors = errors_;
    result.first_error = first_error_;
    return result;
  }

 private:
  void error(Connection& c, const std::string& what) {
    if (errors_++ == 0) first_error_ = what;
    if (c.ok) c.ok = false;
    if (!c.settled) {
      c.settled = true;
      --in_flight_;
    }
    close_connection(c);
  }

  void close_connection(Connection& c) {
    if (c.session != nullptr) {
      nghttp2_session_del(c.session);
      c.session = nullptr;
    }
    if (c.fd >= 0) {
      epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
      c.fd = -1;
    }
  }

  // Opens connections up to `target` (at most in_flight at once) and waits until every
  // one of them has settled, or the timeout.
  void open_until(int target) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options_.timeout_s));
    while (true) {
      while (static_cast<int>(connections_.size()) < target && in_flight_ < options_.in_flight) open_next();
      if (static_cast<int>(connections_.size()) >= target && in_flight_ == 0) return;
      if (Clock::now() >= deadline) {
        for (auto& c : connections_) {
          if (!c->settled) error(*c, "connection or RPC not finished within the timeout");
        }
        return;
      }
      pump(50);
    }
  }

  void pump_for(double seconds) {
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    while (Clock::now() < end) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
      pump(static_cast<int>(std::clamp<long long>(left, 1, 100)));
    }
  }

  void open_next() {
    auto c = std::make_unique<Connection>();
    const uint32_t index = static_cast<uint32_t>(connections_.size());
    Envelope env{make_uuid(rng_), "bench-user-" + std::to_string(index % std::max(options_.users, 1)),
                 std::string(kPythonClientType)};
    const std::string message = config_request(env);
    c->request.push_back('\0');
    for (int shift = 24; shift >= 0; shift -= 8) c->request.push_back(static_cast<char>((message.size() >> shift) & 0xff));
    c->request += message;
    c->index = index;
    connections_.push_back(std::move(c));
    Connection& conn = *connections_.back();
    ++in_flight_;
    conn.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn.fd < 0) {
      error(conn, std::string("socket: ") + std::strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(options_.port));
    inet_pton(AF_INET, options_.host.c_str(), &addr.sin_addr);
    if (connect(conn.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 && errno != EINPROGRESS) {
      error(conn, std::string("connect: ") + std::strerror(errno));
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = index;
    conn.want_write = true;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, conn.fd, &ev);
  }

  void pump(int timeout_ms) {
    epoll_event events[256];
    const int n = epoll_wait(epoll_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      Connection& c = *connections_[events[i].data.u32];
      if (c.fd < 0) continue;
      if (!c.connected) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          error(c, std::string("connect: ") + std::strerror(err));
          continue;
        }
        start_session(c);
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) receive(c);
      if (c.fd >= 0) flush(c);
    }
  }

  void start_session(Connection& c) {
    c.connected = true;
    nghttp2_session_client_new(&c.session, callbacks_, &c);
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(c.session, NGHTTP2_FLAG_NONE, settings, 1);
    const std::string authority = options_.host + ":" + std::to_string(options_.port);
    auto nv = [](std::string_view name, std::string_view value) {
      return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                        reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                        NGHTTP2_NV_FLAG_NONE};
    };
    const nghttp2_nv headers[] = {
        nv(":method", "POST"),          nv(":scheme", "http"),
        nv(":path", kConfigPath),       nv(":authority", authority),
        nv("content-type", "application/grpc"), nv("te", "trailers"),
        nv("user-agent", "sparkgate-bench-idle nghttp2/" NGHTTP2_VERSION),
    };
    nghttp2_data_provider provider{};
    provider.read_callback = &IdleRun::read_request;
    if (nghttp2_submit_request(c.session, nullptr, headers, std::size(headers), &provider, &c) < 0) {
      error(c, "nghttp2_submit_request failed");
      return;
    }
    flush(c);
  }

  void receive(Connection& c) {
    uint8_t buffer[16384];
    while (c.fd >= 0) {
      const ssize_t n = read(c.fd, buffer, sizeof buffer);
      if (n > 0) {
        if (nghttp2_session_mem_recv(c.session, buffer, static_cast<size_t>(n)) < 0) {
          error(c, "HTTP/2 protocol error from the peer");
          return;
        }
        settle_if_done(c);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      error(c, c.settled ? "the peer closed an idle connection" : "the peer closed the connection during the RPC");
      return;
    }
  }

  // The stream's close callback only records the outcome; the counters move here,
  // outside nghttp2.
  void settle_if_done(Connection& c) {
    if (c.settled || !c.stream_closed) return;
    if (c.reset_code != NGHTTP2_NO_ERROR) {
      error(c, "Config over raw h2c: stream reset with HTTP/2 error " + std::to_string(c.reset_code));
    } else if (c.grpc_status != "0") {
      error(c, "Config over raw h2c: grpc-status '" + c.grpc_status + "'");
    } else {
      c.settled = true;
      c.ok = true;
      --in_flight_;
    }
  }

  void flush(Connection& c) {
    while (c.fd >= 0) {
      if (!c.pending.empty()) {
        const ssize_t n = write(c.fd, c.pending.data(), c.pending.size());
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) {
          error(c, std::string("write: ") + std::strerror(errno));
          return;
        }
        c.pending.erase(0, static_cast<size_t>(n));
        if (!c.pending.empty()) break;
      }
      const uint8_t* data = nullptr;
      const ssize_t produced = nghttp2_session_mem_send(c.session, &data);
      if (produced < 0) {
        error(c, "nghttp2_session_mem_send failed");
        return;
      }
      if (produced == 0) break;
      c.pending.assign(reinterpret_cast<const char*>(data), static_cast<size_t>(produced));
    }
    if (c.fd < 0) return;
    const bool want_write = !c.pending.empty();
    if (want_write != c.want_write) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want_write ? EPOLLOUT : 0u);
      ev.data.u32 = c.index;
      epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_write = want_write;
    }
    if (c.pending.empty()) c.pending.shrink_to_fit();
  }

  // WARNING: nghttp2 callbacks; they must not call back into nghttp2.
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
    auto* c = static_cast<Connection*>(user_data);
    if (frame->hd.type == NGHTTP2_HEADERS &&
        std::string_view(reinterpret_cast<const char*>(name), namelen) == "grpc-status") {
      c->grpc_status.assign(reinterpret_cast<const char*>(value), valuelen);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t, uint32_t error_code, void* user_data) {
    auto* c = static_cast<Connection*>(user_data);
    c->stream_closed = true;
    c->reset_code = error_code;
    return 0;
  }

  static ssize_t read_request(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* data_flags,
                              nghttp2_data_source*, void* user_data) {
    auto* c = static_cast<Connection*>(user_data);
    const size_t n = std::min(length, c->request.size() - c->request_sent);
    std::memcpy(buf, c->request.data() + c->request_sent, n);
    c->request_sent += n;
    if (c->request_sent == c->request.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  IdleOptions options_;
  std::mt19937_64 rng_;
  int epoll_ = -1;
  nghttp2_session_callbacks* callbacks_ = nullptr;
  std::vector<std::unique_ptr<Connection>> connections_;
  int in_flight_ = 0;
  uint64_t errors_ = 0;
  std::string first_error_;
};

}  // namespace

IdleResult run_idle_connections(const IdleOptions& options) {
  IdleRun run(options);
  return run.run();
}

}  // namespace sparkgate::bench
