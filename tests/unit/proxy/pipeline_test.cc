// The pipeline's order, pauses and cancellation, over the real steps: fake quota service
// and session store, and a real connection pool whose backends refuse connections.
#include "proxy/pipeline.h"

#include <doctest/doctest.h>

#include <boost/asio.hpp>

#include "proxy_fakes.h"
#include "upstream/conn_pool.h"

using namespace sparkgate;
using namespace sparkgate::proxy;
using namespace sparkgate::proxy::testing;

namespace {

struct FakeOwner : PipelineOwner {
  void on_stop() override { ++stops; }
  void on_routed() override { ++routed; }
  void on_unrouted() override { ++unrouted; }
  int stops = 0, routed = 0, unrouted = 0;
};

// A loopback port nobody listens on.
uint16_t refusing_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

struct PipelineFixture {
  explicit PipelineFixture(const std::string& extra = {})
      : ports{refusing_port(), refusing_port()},
        rpc(load_config(extra, "  - name: c\n    backends: [{address: 127.0.0.1:" + std::to_string(ports[0]) +
                                   "}, {address: 127.0.0.1:" + std::to_string(ports[1]) + "}]\n")),
        pools(io.get_executor(), upstream::PoolOptions{}),
        pipeline(rpc.state, owner) {
    rpc.state.ctx.pools = &pools;
    rpc.state.self = self;
    rpc.store.shared = false;
  }
  ~PipelineFixture() {
    pipeline.cancel();
    pools.close_all();
    io.run_for(std::chrono::milliseconds(50));
  }
  void run_until(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) io.run_for(std::chrono::milliseconds(10));
  }
  uint16_t ports[2];
  boost::asio::io_context io;
  RpcFixture rpc;
  upstream::PoolSet pools;
  FakeOwner owner;
  std::shared_ptr<int> self = std::make_shared<int>(0);
  Pipeline pipeline;
};

}  // namespace

TEST_CASE("Pipeline: a stop at authentication ends the RPC before any later step runs") {
  PipelineFixture f("auth:\n  tokens:\n    - {sha256: \"" + policy::token_hash_hex("t") + "\", user: alice}\n");
  f.pipeline.start();
  CHECK(f.owner.stops == 1);
  CHECK(f.pipeline.stopped());
  CHECK(f.rpc.state.reply.code == grpcwire::StatusCode::kUnauthenticated);
  CHECK(f.rpc.quotas.calls.empty());
  CHECK(f.owner.routed == 0);
}

TEST_CASE("Pipeline: pauses for the envelope and for a quota answer, in order, then connects") {
  PipelineFixture f("quotas:\n  default: {requests_per_second: 10}\n");
  f.rpc.quotas.async = true;
  f.pipeline.start();
  CHECK(f.pipeline.paused());  // waiting for the envelope
  CHECK(f.rpc.quotas.calls.empty());
  REQUIRE(f.rpc.receive(request_message("s1", "alice")));
  f.pipeline.poll_envelope();
  CHECK(f.rpc.quotas.calls == std::vector<std::string>{"rate alice"});
  CHECK(f.pipeline.paused());
  CHECK(f.owner.routed == 0);
  f.rpc.quotas.complete({});
  // Routed, and waiting for a connection.
  CHECK(f.owner.routed == 1);
  CHECK(f.pipeline.paused());
  CHECK_FALSE(f.pipeline.done());
}

TEST_CASE("Pipeline: a new session whose backend refuses connections is placed on the other one, once") {
  PipelineFixture f;
  REQUIRE(f.rpc.receive(request_message("s1", "alice")));
  f.pipeline.start();
  REQUIRE(f.pipeline.paused());
  const std::string first = f.rpc.state.backend;
  f.run_until([&] { return f.owner.stops > 0; });
  REQUIRE(f.owner.stops == 1);
  CHECK(f.owner.routed == 2);
  CHECK(f.owner.unrouted == 1);
  CHECK(f.rpc.state.backend != first);
  CHECK(f.rpc.state.reply.code == grpcwire::StatusCode::kUnavailable);
  CHECK(f.rpc.state.reply.message.find("backend " + f.rpc.state.backend + " is unreachable: ") == 0);
  // The session stays counted once, on the backend it was moved to.
  REQUIRE(f.rpc.state.route.session);
  CHECK(f.rpc.state.route.session->in_flight.load() == 1);
  f.pipeline.session_admit().release(std::nullopt);
}

TEST_CASE("Pipeline: cancel while waiting for a connection: the pool's answer never arrives") {
  PipelineFixture f;
  REQUIRE(f.rpc.receive(request_message("s1", "alice")));
  f.pipeline.start();
  REQUIRE(f.pipeline.paused());
  f.pipeline.cancel();
  CHECK_FALSE(f.pipeline.paused());
  f.io.run_for(std::chrono::milliseconds(300));
  CHECK(f.owner.stops == 0);
  f.pipeline.session_admit().release(std::nullopt);
}
