// SIGTERM drain: an in-flight ExecutePlan completes with every message, new connections
// are turned away, /readyz flips to 503 while /healthz stays 200, and the gateway exits 0
// once the last stream is done.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "harness.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;


std::string describe(const HttpAnswer& a) {
  return "status=" + std::to_string(a.status) + " body='" + a.body + "' error='" + a.error + "'";
}

// True if a TCP connect to 127.0.0.1:port is refused.
bool connect_refused(uint16_t port) { return tcp_connect_errno(port) == ECONNREFUSED; }

}  // namespace

TEST_CASE("SIGTERM drain: the in-flight call completes, new connections are turned away") {
  if (direct_mode()) return;
  FakeServer fake;
  GatewayOptions options = one_backend(fake.address());
  // Well above the ~3 s this test needs, so that an exit caused by the timeout (rather
  // than by the last stream ending) shows as a late exit below.
  options.drain_timeout = "12s";
  Gateway gw(options);
  const uint16_t admin = gw.admin_port();

  const HttpAnswer ready_before = http_get(admin, "/readyz");
  CHECK_MESSAGE(ready_before.status == 200, describe(ready_before));
  CHECK(ready_before.body == "ready\n");
  const HttpAnswer health_before = http_get(admin, "/healthz");
  CHECK_MESSAGE(health_before.status == 200, describe(health_before));

  // An idle client connection (as PySpark keeps between calls) must not hold up the drain.
  auto idle_channel = make_channel(gw.address());
  const CallResult idle = call(idle_channel, "Config", {request_for("Config", "idle")});
  REQUIRE_MESSAGE(idle.status.ok(), idle.describe());

  // 6 messages: 2 at once, then a 2.5 s stall, then 4 more.
  auto channel = make_channel(gw.address());
  const std::string req = request_for("ExecutePlan", "drain");
  CallOptions call_options;
  call_options.op_timeout = 10s;
  call_options.metadata = {{"x-fake-messages", "6"},
                           {"x-fake-message-bytes", "1000"},
                           {"x-fake-stall-after", "2"},
                           {"x-fake-stall-ms", "2500"}};
  StreamingCall inflight(channel, method_path("ExecutePlan"), call_options);
  REQUIRE(inflight.write(req));
  REQUIRE(inflight.writes_done());
  std::vector<std::string> responses;
  for (int i = 0; i < 2; ++i) {
    auto msg = inflight.read();
    REQUIRE_MESSAGE(msg.has_value(), "message " << i << " of the in-flight call; gateway stderr:\n"
                                                << gw.stderr_text());
    responses.push_back(std::move(*msg));
  }

  // The stream is open (the fake is stalling): start the drain.
  REQUIRE(kill(gw.pid(), SIGTERM) == 0);
  const auto sigterm_at = std::chrono::steady_clock::now();

  HttpAnswer ready_during;
  do {
    ready_during = http_get(admin, "/readyz");
    if (ready_during.status == 503) break;
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() - sigterm_at < 1s);
  CHECK_MESSAGE(ready_during.status == 503, describe(ready_during));
  const HttpAnswer health_during = http_get(admin, "/healthz");
  CHECK_MESSAGE(health_during.status == 200, describe(health_during));

  // A new connection after the drain started: refused, so the call is UNAVAILABLE.
  std::this_thread::sleep_for(100ms);  // the workers close their acceptors asynchronously
  INFO("TCP connect refused after SIGTERM: " << connect_refused(gw.port()));
  auto late_channel = make_channel(gw.address());
  CallOptions quick;
  quick.op_timeout = 10s;
  const CallResult late = call(late_channel, "Config", {request_for("Config", "late")}, quick);
  CHECK_FALSE(late.hung);
  CHECK_MESSAGE(late.status.error_code() == grpc::StatusCode::UNAVAILABLE, late.describe());
  CHECK(late.trailer("x-fake-method").empty());
  // Everything above ran while the in-flight stream was still open.
  CHECK(std::chrono::steady_clock::now() - sigterm_at < 2s);
  CHECK_MESSAGE(gw.running(), "the gateway exited with a stream still open:\n"
                                  << gw.stderr_text());

  // The in-flight call finishes with all its messages.
  while (auto msg = inflight.read()) responses.push_back(std::move(*msg));
  CallResult r = inflight.finish();
  const auto finished_at = std::chrono::steady_clock::now();
  CHECK_FALSE(r.hung);
  CHECK_MESSAGE(r.status.ok(), r.describe() << "\ngateway stderr:\n" << gw.stderr_text());
  CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(req));
  REQUIRE(responses.size() == 6);
  for (size_t i = 0; i < responses.size(); ++i) {
    CAPTURE(i);
    view::ExecutePlanResponse msg;
    REQUIRE(msg.ParseFromString(responses[i]));
    CHECK(msg.session_id() == "drain");
    CHECK(msg.arrow_batch().row_count() == static_cast<int64_t>(i));
    CHECK(msg.arrow_batch().data() == fake_pattern(1000));
    CHECK(msg.has_result_complete() == (i == 5));
  }

  // With no stream left the drain ends and the process exits 0, well before the 12 s
  // drain timeout.
  while (gw.running() && std::chrono::steady_clock::now() - finished_at < 5s) {
    std::this_thread::sleep_for(20ms);
  }
  CHECK_MESSAGE(!gw.running(), "the gateway still runs 5 s after its last stream ended:\n"
                                   << gw.stderr_text());
  const auto status = gw.terminate(100ms);  // no signal if it already exited
  REQUIRE(status.has_value());
  CHECK_MESSAGE(WIFEXITED(*status), "killed by signal " << WTERMSIG(*status));
  CHECK_MESSAGE(WEXITSTATUS(*status) == 0, gw.stderr_text());
}

}  // namespace sparkgate::itest
