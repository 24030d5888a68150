// Active health checks and upstream TLS, driven in-process: a HealthChecker on its own
// io_context thread probes fake backends (tests/fakes/) listed in a BackendRegistry, and
// ClientConnection / unary_call / PoolSet are exercised directly against fakes, some of
// them serving TLS with a CA and certificate made by the openssl CLI at test time.
//
// The gateway binary is not involved, so these run the same in direct mode.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <sstream>
#include <stdexcept>
#include <thread>

// harness.h first: it names ::grpc types from inside namespace sparkgate, which the
// gateway's sparkgate::grpcwire would shadow.
#include "harness.h"
#include "spark_view.pb.h"

#include "config/config_loader.h"
#include "http2/client_connection.h"
#include "routing/backend_state.h"
#include "server/health_targets.h"
#include "upstream/health_checker.h"
#include "upstream/conn_pool.h"
#include "upstream/tls_client.h"
#include "upstream/unary_call.h"

namespace sparkgate::itest {
namespace {

namespace asio = boost::asio;
namespace view = sparkgate::view;

// An io_context with one thread, like the gateway's control thread.
struct IoThread {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  std::thread thread{[this] { io.run(); }};

  ~IoThread() {
    sync();  // lets work posted before (a checker's shutdown) run
    io.stop();
    thread.join();
  }
  // Runs `fn` on the thread and waits for it.
  template <typename Fn>
  auto run(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io, [&task] { task(); });
    return result.get();
  }
  void sync() {
    run([] { return 0; });
  }
};

// ---- configs --------------------------------------------------------------------------

struct ClusterSpec {
  std::string name;
  std::vector<std::string> backends;  // "127.0.0.1:PORT"
  std::string health_check;           // YAML flow map, e.g. "{interval: 100ms}"
  std::string tls;                    // YAML flow map, or "" for h2c
};

std::shared_ptr<const config::Config> load(const std::vector<ClusterSpec>& clusters) {
  std::ostringstream y;
  y << "listeners:\n  - address: 127.0.0.1:" << free_port() << "\nclusters:\n";
  for (const auto& c : clusters) {
    y << "  - name: " << c.name << "\n    backends:\n";
    for (const auto& b : c.backends) y << "      - address: " << b << "\n";
    if (!c.health_check.empty()) y << "    health_check: " << c.health_check << "\n";
    if (!c.tls.empty()) y << "    tls: " << c.tls << "\n";
  }
  y << "routes:\n  - cluster: " << clusters.at(0).name << "\n";
  const auto r = config::load_config_string(y.str(), "health-test.yaml");
  if (!r.config) {
    std::string errors;
    for (const auto& e : r.errors) errors += e.to_string() + "\n";
    throw std::runtime_error("test config does not load:\n" + errors + y.str());
  }
  return r.config;
}

// A registry and a checker over a swappable config, on their own thread.
class CheckerRig {
 public:
  explicit CheckerRig(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {
    registry_.apply_config(current());
    checker_ = std::make_unique<upstream::HealthChecker>(io_.io.get_executor(), targets_,
                                                        [this] { return current(); });
    checker_->start();
  }
  ~CheckerRig() {
    checker_->stop();
    checker_.reset();
  }

  routing::BackendPtr backend(const std::string& cluster, const std::string& address) const {
    auto b = registry_.snapshot()->find(cluster, address);
    if (!b) throw std::runtime_error("no backend " + address + " in cluster " + cluster);
    return b;
  }
  // A reload: the registry and the checker see `config` from now on.
  void apply(std::shared_ptr<const config::Config> config) {
    {
      std::lock_guard lock(mu_);
      config_ = config;
    }
    registry_.apply_config(config);
  }

 private:
  std::shared_ptr<const config::Config> current() const {
    std::lock_guard lock(mu_);
    return config_;
  }

  IoThread io_;
  mutable std::mutex mu_;
  std::shared_ptr<const config::Config> config_;
  routing::BackendRegistry registry_;
  server::RegistryHealthTargets targets_{registry_};
  std::unique_ptr<upstream::HealthChecker> checker_;
};

// A TCP listener that never accepts: the kernel completes the handshake (backlog), so a
// client connects and then waits forever for the first byte.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 64) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot open a silent listener");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// ---- TLS material -----------------------------------------------------------------------

// ---- direct sessions ----------------------------------------------------------------------

struct Connected {
  std::shared_ptr<http2::ClientConnection> session;  // null on failure
  std::string error;
};

Connected connect_session(IoThread& io, const std::string& address, const std::optional<http2::ClientTls>& tls,
                          std::chrono::milliseconds timeout = 5000ms) {
  const auto colon = address.rfind(':');
  asio::ip::tcp::resolver resolver(io.io);
  auto endpoints = resolver.resolve(address.substr(0, colon), address.substr(colon + 1));
  auto promise = std::make_shared<std::promise<Connected>>();
  auto future = promise->get_future();
  asio::post(io.io, [&io, address, endpoints, tls, timeout, promise] {
    auto s = std::make_shared<http2::ClientConnection>(io.io.get_executor(), address, http2::ClientConnectionOptions{});
    s->connect(endpoints, timeout, tls, [s, promise](const std::string& error) {
      promise->set_value({error.empty() ? s : nullptr, error});
    });
  });
  if (future.wait_for(timeout + 5s) != std::future_status::ready) throw std::runtime_error("connect never finished");
  return future.get();
}

void close_session(IoThread& io, const std::shared_ptr<http2::ClientConnection>& s) {
  if (s) io.run([&] { s->close("test done"); });
}

struct CallOutcome {
  upstream::UnaryResult result;
  bool returned_first = false;  // unary_call had returned before done ran
};

CallOutcome unary(IoThread& io, const std::shared_ptr<http2::ClientConnection>& s, const std::string& path,
                  const std::vector<std::pair<std::string, std::string>>& headers, const std::string& message,
                  std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<CallOutcome>>();
  auto future = promise->get_future();
  asio::post(io.io, [=] {
    http2::HeaderMap extra;
    for (const auto& [k, v] : headers) extra.add(k, v);
    auto returned = std::make_shared<bool>(false);
    upstream::unary_call(*s, path, extra, message, timeout, [promise, returned](upstream::UnaryResult r) {
      promise->set_value({std::move(r), *returned});
    });
    *returned = true;
  });
  if (future.wait_for(timeout + 10s) != std::future_status::ready) throw std::runtime_error("done never called");
  return future.get();
}

std::string describe(const upstream::UnaryResult& r) {
  std::ostringstream s;
  s << "transport_ok=" << r.transport_ok << " error='" << r.transport_error << "' timed_out=" << r.timed_out
    << " grpc_status=" << r.grpc_status << " grpc_message='" << r.grpc_message
    << "' response=" << r.response_message.size() << " bytes";
  return s.str();
}

std::string spark_path(const std::string& rpc) { return "/spark.connect.SparkConnectService/" + rpc; }

constexpr const char* kHealthPath = "/grpc.health.v1.Health/Check";

}  // namespace

// ---- unary_call -------------------------------------------------------------------------

TEST_CASE("upstream unary_call (health probes, ReleaseSession): result fields, errors, timeout") {
  FakeServer fake({"--health", "SERVING"});
  IoThread io;
  const Connected c = connect_session(io, fake.address(), std::nullopt);
  REQUIRE_MESSAGE(c.session, c.error);

  SUBCASE("OK with a response message") {
    const std::string req = request_for("Config", "unary-ok");
    const CallOutcome o = unary(io, c.session, spark_path("Config"), {{"x-echo-a", "1"}}, req, 5000ms);
    CHECK(o.returned_first);
    REQUIRE_MESSAGE(o.result.transport_ok, describe(o.result));
    CHECK(o.result.grpc_status == 0);
    CHECK(o.result.grpc_message.empty());
    view::ConfigResponse resp;
    REQUIRE(resp.ParseFromString(o.result.response_message));
    CHECK(resp.session_id() == "unary-ok");
  }

  SUBCASE("a gRPC error with a percent-encoded message, trailers-only") {
    const CallOutcome o =
        unary(io, c.session, spark_path("ReleaseSession"),
              {{"x-fake-status", "9"}, {"x-fake-message", "session busy: 100% in use"}},
              request_for("ReleaseSession", "unary-err"), 5000ms);
    CHECK(o.returned_first);
    REQUIRE_MESSAGE(o.result.transport_ok, describe(o.result));
    CHECK(o.result.grpc_status == 9);
    CHECK(o.result.grpc_message == "session busy: 100% in use");
    CHECK(o.result.response_message.empty());
  }

  SUBCASE("grpc.health.v1.Health/Check with an empty request") {
    const CallOutcome o = unary(io, c.session, kHealthPath, {}, "", 5000ms);
    REQUIRE_MESSAGE(o.result.transport_ok, describe(o.result));
    CHECK(o.result.grpc_status == 0);
    CHECK(o.result.response_message == std::string("\x08\x01", 2));
  }

  SUBCASE("timeout resets the stream; the connection stays usable") {
    const auto started = std::chrono::steady_clock::now();
    const CallOutcome o = unary(io, c.session, spark_path("Config"), {{"x-fake-stall-ms", "3000"}},
                                request_for("Config", "unary-slow"), 150ms);
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(o.returned_first);
    CHECK_FALSE(o.result.transport_ok);
    CHECK(o.result.timed_out);
    CHECK(o.result.transport_error == "timed out after 150 ms");
    CHECK(took >= 150ms);
    CHECK(took < 2500ms);
    const CallOutcome again = unary(io, c.session, spark_path("Config"), {}, request_for("Config", "after"), 5000ms);
    CHECK_MESSAGE(again.result.transport_ok, describe(again.result));
    CHECK(again.result.grpc_status == 0);
    CHECK(io.run([&] { return c.session->is_closed(); }) == false);
  }

  SUBCASE("the backend dies mid-call: transport error, exactly one done") {
    const CallOutcome o = unary(io, c.session, spark_path("ExecutePlan"),
                                {{"x-fake-messages", "5"}, {"x-fake-exit-after", "1"}},
                                request_for("ExecutePlan", "unary-crash"), 5000ms);
    CHECK(o.returned_first);
    CHECK_FALSE(o.result.transport_ok);
    CHECK_FALSE(o.result.timed_out);
    CHECK_MESSAGE(o.result.transport_error.find("connection lost") != std::string::npos, describe(o.result));
  }

  SUBCASE("a closed session fails asynchronously") {
    close_session(io, c.session);
    const CallOutcome o = unary(io, c.session, kHealthPath, {}, "", 1000ms);
    CHECK(o.returned_first);
    CHECK_FALSE(o.result.transport_ok);
    CHECK(o.result.transport_error.find("not open") != std::string::npos);
  }
  close_session(io, c.session);
}

// ---- the health checker -------------------------------------------------------------------

TEST_CASE("health checker: a live backend stays healthy on one kept connection") {
  FakeServer plain;                            // UNIMPLEMENTED, like Spark Connect
  FakeServer serving({"--health", "SERVING"});  // answers SERVING
  CheckerRig rig(load({{"spark", {plain.address()}, "{interval: 100ms, timeout: 80ms}", ""},
                       {"served", {serving.address()}, "{interval: 100ms, timeout: 80ms}", ""}}));
  std::this_thread::sleep_for(700ms);
  for (const auto& [cluster, fake] : {std::pair{"spark", &plain}, std::pair{"served", &serving}}) {
    CAPTURE(cluster);
    const auto b = rig.backend(cluster, fake->address());
    CHECK_MESSAGE(b->healthy.load(), b->unhealthy_reason());
    CHECK(b->unhealthy_reason().empty());
    CHECK(b->epoch.load() == 0);
    // Several probes went out on a single connection (no reconnect per probe).
    CHECK(established_connections_to(fake->port()) == 1);
  }
}

TEST_CASE("health checker: a killed backend is ejected after unhealthy_threshold probes and returns with a new epoch") {
  auto fake = std::make_unique<FakeServer>();
  const uint16_t port = fake->port();
  const std::string address = fake->address();
  // retry_interval 0s: probes every interval, so the thresholds are what is measured
  // (the fast re-probe has its own test below).
  CheckerRig rig(load({{"spark", {address},
                        "{interval: 200ms, timeout: 150ms, unhealthy_threshold: 3, healthy_threshold: 2, "
                        "retry_interval: 0s}",
                        ""}}));
  const auto b = rig.backend("spark", address);
  std::this_thread::sleep_for(500ms);
  REQUIRE_MESSAGE(b->healthy.load(), b->unhealthy_reason());

  fake->process().stop();
  const auto killed = std::chrono::steady_clock::now();
  // Three failed probes 200 ms apart: not ejected on the first.
  std::this_thread::sleep_for(150ms);
  CHECK_MESSAGE(b->healthy.load(), "ejected after a single failed probe: " << b->unhealthy_reason());
  REQUIRE(wait_until([&] { return !b->healthy.load(); }, 5s));
  CHECK(std::chrono::steady_clock::now() - killed >= 400ms);
  const std::string reason = b->unhealthy_reason();
  CHECK_MESSAGE(reason.find("health check failed") != std::string::npos, reason);
  CHECK_MESSAGE(reason.find("refused") != std::string::npos, reason);
  CHECK(b->epoch.load() == 0);

  fake.reset();
  FakeServer again({}, port);
  REQUIRE(wait_until([&] { return b->healthy.load(); }, 5s));
  CHECK(b->epoch.load() == 1);
  CHECK(b->unhealthy_reason().empty());
}

TEST_CASE("health checker: fast re-probe: a restarted backend is healthy again within about a second, not an interval") {
  auto fake = std::make_unique<FakeServer>();
  const uint16_t port = fake->port();
  const std::string address = fake->address();
  // A long interval: without the fast re-probe, the return would take 2 x 5 s.
  CheckerRig rig(load({{"spark", {address},
                        "{interval: 5s, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 2, "
                        "retry_interval: 100ms, retry_max_interval: 400ms}",
                        ""}}));
  const auto b = rig.backend("spark", address);
  std::this_thread::sleep_for(300ms);
  REQUIRE_MESSAGE(b->healthy.load(), b->unhealthy_reason());
  fake->process().stop();
  // The next regular probe fails (within one interval); the second failure follows
  // retry_interval later, not an interval later.
  REQUIRE(wait_until([&] { return !b->healthy.load(); }, 7s));
  // Down for a while, so that the backoff reaches its cap (400 ms).
  std::this_thread::sleep_for(1500ms);
  fake.reset();
  FakeServer again({}, port);
  const auto back = std::chrono::steady_clock::now();
  REQUIRE(wait_until([&] { return b->healthy.load(); }, 4s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - back);
  MESSAGE("restarted fake listening -> healthy: " << took.count() << " ms (interval 5 s)");
  // At most the capped delay (400 ms) to the first good probe, 100 ms to the second, and
  // the probes' own time: well under the 5 s interval.
  CHECK(took < 2500ms);
  CHECK(b->epoch.load() == 1);
}

TEST_CASE("health checker: NOT_SERVING is unhealthy, and comes back when SERVING") {
  auto fake = std::make_unique<FakeServer>(std::vector<std::string>{"--health", "NOT_SERVING"});
  const uint16_t port = fake->port();
  const std::string address = fake->address();
  CheckerRig rig(load({{"spark", {address},
                        "{interval: 100ms, timeout: 80ms, unhealthy_threshold: 2, healthy_threshold: 1}", ""}}));
  const auto b = rig.backend("spark", address);
  REQUIRE(wait_until([&] { return !b->healthy.load(); }, 5s));
  CHECK_MESSAGE(b->unhealthy_reason().find("NOT_SERVING") != std::string::npos, b->unhealthy_reason());

  fake.reset();
  FakeServer serving({"--health", "SERVING"}, port);
  REQUIRE(wait_until([&] { return b->healthy.load(); }, 5s));
}

TEST_CASE("health checker: a backend that accepts and never answers fails by timeout") {
  SilentListener silent;
  CheckerRig rig(load({{"spark", {silent.address()},
                        "{interval: 100ms, timeout: 50ms, unhealthy_threshold: 2, healthy_threshold: 2}", ""}}));
  const auto b = rig.backend("spark", silent.address());
  REQUIRE(wait_until([&] { return !b->healthy.load(); }, 5s));
  const std::string reason = b->unhealthy_reason();
  CHECK_MESSAGE(reason.find("timed out after 50 ms") != std::string::npos, reason);
}

TEST_CASE("health checker: follows config changes (enabled: false, backend removed)") {
  FakeServer fake;
  const std::string address = fake.address();
  const auto enabled = load({{"spark", {address}, "{interval: 100ms, timeout: 80ms}", ""}});
  CheckerRig rig(enabled);
  REQUIRE(wait_until([&] { return established_connections_to(fake.port()) == 1; }, 5s));

  rig.apply(load({{"spark", {address}, "{enabled: false}", ""}}));
  CHECK(wait_until([&] { return established_connections_to(fake.port()) == 0; }, 5s));

  rig.apply(enabled);
  CHECK(wait_until([&] { return established_connections_to(fake.port()) == 1; }, 5s));

  FakeServer other;
  rig.apply(load({{"spark", {other.address()}, "{interval: 100ms, timeout: 80ms}", ""}}));
  CHECK(wait_until([&] { return established_connections_to(fake.port()) == 0; }, 5s));
  CHECK(wait_until([&] { return established_connections_to(other.port()) == 1; }, 5s));
}

// ---- upstream TLS -------------------------------------------------------------------------

TEST_CASE("upstream tls: ClientConnection verifies the certificate, the name and ALPN") {
  TestPki pki;
  FakeServer fake(pki.fake_args());
  IoThread io;
  const auto context = [&](const std::string& ca) {
    std::string error;
    auto ctx = upstream::make_upstream_tls_context(config::UpstreamTls{ca, "", "", ""}, error);
    REQUIRE_MESSAGE(ctx, error);
    return ctx;
  };

  SUBCASE("the right CA and name: handshake, then a call") {
    for (const std::string name : {"localhost", "127.0.0.1"}) {
      CAPTURE(name);
      const Connected c = connect_session(io, fake.address(), http2::ClientTls{context(pki.ca_cert), name});
      REQUIRE_MESSAGE(c.session, c.error);
      CHECK(c.session->is_tls());
      const CallOutcome o =
          unary(io, c.session, spark_path("Config"), {}, request_for("Config", "over-tls"), 5000ms);
      REQUIRE_MESSAGE(o.result.transport_ok, describe(o.result));
      CHECK(o.result.grpc_status == 0);
      view::ConfigResponse resp;
      REQUIRE(resp.ParseFromString(o.result.response_message));
      CHECK(resp.session_id() == "over-tls");
      close_session(io, c.session);
    }
  }

  SUBCASE("a CA that did not sign the certificate") {
    const Connected c = connect_session(io, fake.address(), http2::ClientTls{context(pki.other_ca_cert), "localhost"});
    CHECK_FALSE(c.session);
    CHECK_MESSAGE(c.error.rfind("TLS handshake with " + fake.address() + " failed: certificate verify failed (", 0) == 0,
                  c.error);
  }

  SUBCASE("a server name the certificate does not cover") {
    const Connected c = connect_session(io, fake.address(), http2::ClientTls{context(pki.ca_cert), "spark.example"});
    CHECK_FALSE(c.session);
    CHECK_MESSAGE(c.error.find("certificate verify failed") != std::string::npos, c.error);
    CHECK_MESSAGE(c.error.find("hostname mismatch") != std::string::npos, c.error);
    CHECK_MESSAGE(c.error.find("spark.example") != std::string::npos, c.error);
  }

  SUBCASE("a backend without TLS") {
    FakeServer plain;
    const Connected c = connect_session(io, plain.address(), http2::ClientTls{context(pki.ca_cert), "localhost"}, 3000ms);
    CHECK_FALSE(c.session);
    CHECK_MESSAGE(c.error.rfind("TLS handshake with " + plain.address() + " failed", 0) == 0, c.error);
  }

  SUBCASE("a TLS server that does not select h2 with ALPN") {
    const uint16_t port = free_port();
    // -www: serve without reading stdin (whose EOF would end each connection at once).
    Child server({openssl_bin(), "s_server", "-www", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                  pki.server_cert, "-key", pki.server_key},
                 (pki.dir.path() / "s_server.out").string(), (pki.dir.path() / "s_server.err").string(), nullptr);
    REQUIRE(wait_until(
        [&] { return read_file(pki.dir.path() / "s_server.out").find("ACCEPT") != std::string::npos; }, 5s));
    const Connected c = connect_session(io, "127.0.0.1:" + std::to_string(port),
                                        http2::ClientTls{context(pki.ca_cert), "localhost"}, 3000ms);
    CHECK_FALSE(c.session);
    CHECK_MESSAGE(c.error.find("did not select HTTP/2 with ALPN") != std::string::npos, c.error);
  }

  SUBCASE("the handshake counts against the connect timeout") {
    SilentListener silent;
    const auto started = std::chrono::steady_clock::now();
    const Connected c =
        connect_session(io, silent.address(), http2::ClientTls{context(pki.ca_cert), "localhost"}, 200ms);
    CHECK_FALSE(c.session);
    CHECK(std::chrono::steady_clock::now() - started < 3s);
    CHECK_MESSAGE(c.error.find("TLS handshake with " + silent.address() + " timed out") != std::string::npos,
                  c.error);
  }
}

TEST_CASE("upstream tls: context cache and PoolSet pools per TLS setting") {
  TestPki pki;
  upstream::TlsContextCache cache;
  std::string error;
  const config::UpstreamTls a{pki.ca_cert, "localhost", "", ""};
  const config::UpstreamTls b{pki.other_ca_cert, "", "", ""};
  auto ca1 = cache.get(a, error);
  auto ca2 = cache.get(config::UpstreamTls{pki.ca_cert, "127.0.0.1", "", ""}, error);
  auto other = cache.get(b, error);
  REQUIRE(ca1);
  CHECK(ca1 == ca2);  // the server name is per connection, not part of the context
  CHECK(other != ca1);
  CHECK(cache.size() == 2);
  CHECK_FALSE(cache.get(config::UpstreamTls{(pki.dir.path() / "missing.pem").string(), "", "", ""}, error));
  CHECK_MESSAGE(error.find("cannot load CA bundle") != std::string::npos, error);

  FakeServer fake(pki.fake_args());
  IoThread io;
  // Created, used and destroyed on the io thread, like a worker's.
  auto pools_owner = std::make_unique<upstream::PoolSet>(io.io.get_executor(), upstream::PoolOptions{});
  upstream::PoolSet& pools = *pools_owner;
  const config::Endpoint backend{"127.0.0.1", fake.port()};
  // No server_name: the backend's host (an IP address) is checked against the IP SAN.
  const std::optional<config::UpstreamTls> tls = config::UpstreamTls{pki.ca_cert, "", "", ""};
  auto acquire = [&](const std::optional<config::UpstreamTls>& t) {
    return io.run([&] {
      auto p = std::make_shared<std::promise<std::pair<bool, std::string>>>();
      pools.get(backend, t).acquire([p](http2::ClientConnection* s, const std::string& err) {
        p->set_value({s != nullptr && s->is_tls(), err});
      });
      return p;
    })->get_future();
  };
  auto ok = acquire(tls);
  REQUIRE(ok.wait_for(10s) == std::future_status::ready);
  const auto [is_tls, err] = ok.get();
  CHECK_MESSAGE(is_tls, err);
  CHECK(io.run([&] { return &pools.get(backend, tls) != &pools.get(backend, std::nullopt); }));
  CHECK(io.run([&] { return &pools.get(backend, tls) == &pools.get(backend, config::UpstreamTls{pki.ca_cert, "", "", ""}); }));
  io.run([&] {
    pools.close_all();
    pools_owner.reset();
    return 0;
  });
}

TEST_CASE("health checker: probes over upstream tls, and names a certificate failure") {
  TestPki pki;
  FakeServer fake(std::vector<std::string>{"--tls-cert", pki.server_cert, "--tls-key", pki.server_key, "--health",
                                           "SERVING"});
  const std::string hc = "{interval: 100ms, timeout: 80ms, unhealthy_threshold: 2, healthy_threshold: 2}";
  CheckerRig rig(load({{"good", {fake.address()}, hc, "{ca: " + pki.ca_cert + ", server_name: localhost}"},
                       {"bad", {fake.address()}, hc, "{ca: " + pki.other_ca_cert + "}"}}));
  const auto bad = rig.backend("bad", fake.address());
  REQUIRE(wait_until([&] { return !bad->healthy.load(); }, 5s));
  CHECK_MESSAGE(bad->unhealthy_reason().find("certificate verify failed") != std::string::npos,
                bad->unhealthy_reason());
  const auto good = rig.backend("good", fake.address());
  CHECK_MESSAGE(good->healthy.load(), good->unhealthy_reason());
}

}  // namespace sparkgate::itest
