// libFuzzer target: the whole downstream side of one client connection. Arbitrary bytes
// from a "client" go through the same code path a socket's bytes take: a Transport under
// the real http2::ServerConnection (nghttp2 server, read loop, write scheduling), with the
// real proxy::RpcStream behind it for every stream (header checks, authentication,
// gRPC framer, envelope inspector, identity rewrite, quotas, routing, upstream connect,
// local replies). The routed backend refuses connections (a loopback port nobody listens
// on), so every routed call ends in the UNAVAILABLE path.
//
// Input: [flags: 1 byte][chunking seed: 2 bytes][the bytes the client sends]
//   flags bit 0: the config with authentication (a static token "fuzz-token" for user
//   "fuzzer", identity rewrite, quotas); otherwise no authentication.
// The bytes are delivered in chunks as a socket would (tests/fuzz/fuzz_util.h); the
// client's end of stream (EOF) comes only once the gateway has nothing more to do, as a
// client that waits for its answers and then hangs up.
// Invariants checked:
//   - the session ends after EOF: closed, its transport closed, on_finished called once,
//     and every stream handler destroyed (LeakSanitizer also runs per input);
//   - everything the gateway wrote is either its HTTP/1.1 400 answer (never to a client
//     that sent the HTTP/2 preface) or a sequence of whole HTTP/2 frames starting with
//     SETTINGS, with connection-level frames on stream 0 and stream frames only on client
//     (odd) streams the client named.
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "fuzz_util.h"
#include "http2/server_connection.h"
#include "http2/transport.h"
#include "policy/local_quota_service.h"
#include "proxy/rpc_stream.h"
#include "routing/session_store.h"
#include "server/gateway_state.h"
#include "upstream/conn_pool.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;
namespace asio = boost::asio;

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// A socket stand-in: each chunk of the fuzz input "arrives" at once, as one read of a
// socket would return it; the end of the input is held back until the driver releases it
// (release_eof), as a client that keeps its connection open while it waits. Writes are
// collected. It also checks the Transport contract from the session's side: a wait only
// after read_available said would_block, never two waits at once, no I/O after close.
class FuzzTransport final : public http2::Transport {
 public:
  FuzzTransport(asio::any_io_executor ex, std::vector<std::span<const uint8_t>> chunks, std::string& written,
                bool& closed)
      : ex_(std::move(ex)), chunks_(std::move(chunks)), written_(written), closed_(closed) {}

  std::span<const uint8_t> read_available(boost::system::error_code& ec) override {
    FUZZ_CHECK(!closed_);
    would_block_ = false;
    ec = {};
    if (next_ < chunks_.size()) return chunks_[next_++];
    if (eof_) {
      ec = asio::error::eof;
      return {};
    }
    ec = asio::error::would_block;
    would_block_ = true;
    return {};
  }

  void async_wait_readable(WaitHandler h) override {
    FUZZ_CHECK(!closed_);
    FUZZ_CHECK(would_block_);   // only after read_available said would_block
    FUZZ_CHECK(!pending_wait_);  // never two waits at once
    would_block_ = false;
    pending_wait_ = std::move(h);
    if (eof_) wake({});
  }

  void async_write(std::span<const asio::const_buffer> bufs, Handler h) override {
    FUZZ_CHECK(!closed_);
    size_t n = 0;
    for (const auto& buf : bufs) {
      written_.append(static_cast<const char*>(buf.data()), buf.size());
      n += buf.size();
    }
    asio::post(ex_, [h = std::move(h), n] { h({}, n); });
  }

  void shutdown_send() override { FUZZ_CHECK(!closed_); }

  void close() override {
    closed_ = true;
    wake(asio::error::operation_aborted);
  }

  const std::string& peer() const override { return peer_; }

  // The client hangs up.
  void release_eof() {
    eof_ = true;
    wake({});
  }

 private:
  void wake(boost::system::error_code ec) {
    if (!pending_wait_) return;
    asio::post(ex_, [h = std::move(pending_wait_), ec] { h(ec); });
    pending_wait_ = nullptr;
  }

  asio::any_io_executor ex_;
  std::vector<std::span<const uint8_t>> chunks_;
  size_t next_ = 0;
  bool eof_ = false;
  bool would_block_ = false;
  WaitHandler pending_wait_;
  std::string& written_;
  bool& closed_;
  std::string peer_ = "fuzz:0";
};

uint16_t refused_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();  // closed again when `a` goes: connects are refused
}

std::shared_ptr<const config::Config> load(const std::string& yaml) {
  auto r = config::load_config_string(yaml, "fuzz.yaml");
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
    std::abort();
  }
  return r.config;
}

const std::shared_ptr<const config::Config>& fuzz_config(bool auth) {
  static const std::string backend = "127.0.0.1:" + std::to_string(refused_port());
  static const std::string common =
      "listeners:\n  - address: 127.0.0.1:0\n"
      "clusters:\n"
      "  - name: etl\n    backends: [{address: " + backend + "}]\n"
      "    health_check: {enabled: false}\n"
      "routes:\n  - cluster: etl\n"
      "upstream:\n  connect_timeout: 1s\n";
  // sha256("fuzz-token")
  static const auto plain = load(common);
  static const auto with_auth = load(
      common +
      "auth:\n  tokens:\n"
      "    - {sha256: \"sha256:33cc09ba35314d19e32ed9a5a30fca56eebbfab5faec7247fd0403cd26e155b5\", user: fuzzer}\n"
      "identity:\n  mode: rewrite\n"
      "quotas:\n  default: {max_sessions: 4, max_concurrent_operations: 2, requests_per_second: 1000, burst: 1000,"
      " max_message_bytes: 65536}\n");
  return auth ? with_auth : plain;
}

// Runs handlers until nothing is ready and nothing arrives for a moment (the refused
// upstream connect completes through the reactor, not at once).
void run_until_idle(asio::io_context& io) {
  for (int quiet = 0; quiet < 2;) {
    if (io.poll() > 0) {
      quiet = 0;
      continue;
    }
    if (io.stopped()) io.restart();
    if (io.run_one_for(std::chrono::microseconds(200)) > 0) quiet = 0;
    else ++quiet;
    if (io.stopped()) io.restart();
  }
}

// Checks that `out` is whole HTTP/2 frames as a server may send them.
void check_frames(std::string_view out, uint32_t max_client_stream) {
  size_t pos = 0;
  bool first = true;
  while (pos < out.size()) {
    FUZZ_CHECK(out.size() - pos >= 9);
    const auto* p = reinterpret_cast<const uint8_t*>(out.data() + pos);
    const uint32_t len = (uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2];
    const uint8_t type = p[3];
    const uint32_t stream = ((uint32_t(p[5]) << 24) | (uint32_t(p[6]) << 16) | (uint32_t(p[7]) << 8) | p[8]) & 0x7fffffffu;
    FUZZ_CHECK(out.size() - pos - 9 >= len);
    if (first) FUZZ_CHECK(type == 0x4 && stream == 0);  // the server preface is SETTINGS
    first = false;
    switch (type) {
      case 0x4:  // SETTINGS
      case 0x6:  // PING
      case 0x7:  // GOAWAY
        FUZZ_CHECK(stream == 0);
        break;
      case 0x0:  // DATA
      case 0x1:  // HEADERS
      case 0x3:  // RST_STREAM
        FUZZ_CHECK(stream != 0 && stream % 2 == 1 && stream <= max_client_stream);
        break;
      case 0x8:  // WINDOW_UPDATE
        FUZZ_CHECK(stream == 0 || stream <= max_client_stream);
        break;
      default:
        fz::fail(__FILE__, __LINE__, "the gateway sent a frame type it never sends");
    }
    pos += 9 + len;
  }
}

// The highest stream id in a HEADERS frame the client sent (scanning its frames as sent,
// after the preface; stops at anything unparsable, where nghttp2 stops too).
uint32_t max_client_stream(std::span<const uint8_t> in) {
  uint32_t max_id = 0;
  size_t pos = kPreface.size();
  while (pos + 9 <= in.size()) {
    const uint8_t* p = in.data() + pos;
    const uint32_t len = (uint32_t(p[0]) << 16) | (uint32_t(p[1]) << 8) | p[2];
    const uint32_t stream = ((uint32_t(p[5]) << 24) | (uint32_t(p[6]) << 16) | (uint32_t(p[7]) << 8) | p[8]) & 0x7fffffffu;
    if (p[3] == 0x1 || p[3] == 0x2 || p[3] == 0x0 || p[3] == 0x3 || p[3] == 0x8 || p[3] == 0x9)
      max_id = std::max(max_id, stream);
    pos += 9 + len;
  }
  return max_id;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Log everything at debug level into nothing: the formatting code runs, the output goes.
  auto logger = std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_st>());
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::debug);
  fuzz_config(false);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  const uint8_t flags = fz::take<uint8_t>(in);
  const uint16_t seed = fz::take<uint16_t>(in);
  const auto& cfg = fuzz_config(flags & 1);

  server::GatewayState state;
  state.config.store(cfg);
  state.backends.apply_config(cfg);
  std::string written;
  bool transport_closed = false;
  int finished = 0;
  std::vector<std::weak_ptr<http2::ServerStreamHandler>> handlers;
  {
    asio::io_context io;
    upstream::PoolOptions po;
    po.connect_timeout = cfg->upstream.connect_timeout;
    po.max_connections = cfg->upstream.max_connections_per_backend;
    po.connection.stream_window_bytes = cfg->http2.stream_window_bytes;
    po.connection.connection_window_bytes = cfg->http2.connection_window_bytes;
    upstream::PoolSet pools(io.get_executor(), po);
    routing::LocalSessionStore session_store;
    policy::LocalQuotaService quota_service(
        state.quotas, [&state](const std::string& user) { return state.router.sessions().user_sessions(user); });
    FuzzTransport* transport = nullptr;
    {
      auto t = std::make_unique<FuzzTransport>(io.get_executor(), fz::chunk(in, seed), written, transport_closed);
      transport = t.get();
      http2::ServerConnectionOptions opts;
      opts.stream_window_bytes = cfg->http2.stream_window_bytes;
      opts.connection_window_bytes = cfg->http2.connection_window_bytes;
      opts.max_concurrent_streams = cfg->http2.max_concurrent_streams;
      opts.max_header_list_bytes = cfg->limits.max_header_list_bytes;
      auto session = std::make_shared<http2::ServerConnection>(
          io.get_executor(), std::move(t), opts, [&](http2::ServerConnection& s, int32_t id) {
            // Member by member: the context grows with the gateway, and a designated
            // initializer that omits a member is an error under -Wextra -Werror.
            proxy::ProxyContext ctx;
            ctx.config = cfg;
            ctx.router = &state.router;
            ctx.pools = &pools;
            ctx.metrics = &state.metrics;
            ctx.quotas = &quota_service;
            ctx.store = &session_store;
            ctx.draining = &state.draining;
            auto h = std::make_shared<proxy::RpcStream>(s, id, std::move(ctx));
            handlers.push_back(h);
            return h;
          });
      session->on_finished = [&finished] { ++finished; };
      session->start();
      run_until_idle(io);
      transport->release_eof();
      run_until_idle(io);
      FUZZ_CHECK(session->is_closed());
      FUZZ_CHECK(transport_closed);
      FUZZ_CHECK(finished == 1);
      FUZZ_CHECK(session->active_streams() == 0);
    }
    pools.close_all();
    run_until_idle(io);
  }
  for (const auto& h : handlers) FUZZ_CHECK(h.expired());

  if (written.starts_with("HTTP/1.")) {
    // The HTTP/1.x answer, only to a client whose first bytes were not the preface.
    FUZZ_CHECK(written.starts_with("HTTP/1.1 400 Bad Request\r\n"));
    FUZZ_CHECK(in.size() < kPreface.size() || std::memcmp(in.data(), kPreface.data(), kPreface.size()) != 0);
  } else {
    // HTTP/2 frames (or nothing, for a client that was not HTTP/2 at all).
    check_frames(written, max_client_stream(in));
  }
  return 0;
}
