// Backend failures: a backend that is down, one that dies mid-stream, and one that shuts
// down gracefully with GOAWAY. The client gets a clean UNAVAILABLE naming the backend and
// the gateway keeps running.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <future>
#include <thread>

#include "harness.h"

namespace sparkgate::itest {
namespace {

bool names(const grpc::Status& status, const std::string& address) {
  return status.error_message().find(address) != std::string::npos;
}

}  // namespace

TEST_CASE("backend down from the start: UNAVAILABLE naming the backend") {
  const std::string dead = "127.0.0.1:" + std::to_string(free_port());
  Gateway gw(one_backend(dead));
  auto channel = make_channel(gw.address());
  for (const std::string rpc : {"Config", "ExecutePlan"}) {
    CAPTURE(rpc);
    CallOptions options;
    options.op_timeout = 30s;
    const CallResult r = call(channel, rpc, {request_for(rpc, "s-down")}, options);
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::UNAVAILABLE, r.describe());
    CHECK_MESSAGE(names(r.status, dead), r.describe() << " should name " << dead);
    CHECK_FALSE(r.hung);
  }
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("backend dies mid-stream: UNAVAILABLE naming it, gateway survives") {
  auto fake = std::make_unique<FakeServer>();
  const std::string backend = fake->address();
  Gateway gw(one_backend(backend));
  auto channel = make_channel(gw.address());

  // Warm up the upstream connection first, so the crash hits an established one.
  REQUIRE(call(channel, "Config", {request_for("Config", "warm")}).status.ok());

  CallOptions options;
  options.metadata = {{"x-fake-messages", "10"}, {"x-fake-exit-after", "2"}};
  const CallResult r = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-crash")},
                            options);
  CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::UNAVAILABLE, r.describe());
  CHECK_MESSAGE(names(r.status, backend), r.describe() << " should name " << backend);
  CHECK(r.responses.size() == 2);
  CHECK_FALSE(r.hung);
  REQUIRE(fake->process().wait_exit(5s));
  CHECK(WEXITSTATUS(*fake->process().exit_status()) == 3);

  CHECK_MESSAGE(gw.running(), "the gateway died with its backend:\n" << gw.stderr_text());
  CallOptions quick;
  quick.op_timeout = 30s;
  const CallResult after = call(channel, "Config", {request_for("Config", "s-after")}, quick);
  CHECK_MESSAGE(after.status.error_code() == grpc::StatusCode::UNAVAILABLE, after.describe());
  CHECK_MESSAGE(names(after.status, backend), after.describe());
  CHECK_FALSE(after.hung);
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("upstream GOAWAY: in-flight calls finish, later calls fail cleanly or succeed") {
  auto fake = std::make_unique<FakeServer>(std::vector<std::string>{"--goaway-grace-ms", "5000"});
  const uint16_t backend_port = fake->port();
  const std::string backend = fake->address();
  Gateway gw(one_backend(backend));
  auto channel = make_channel(gw.address());
  REQUIRE(call(channel, "Config", {request_for("Config", "warm")}).status.ok());

  // A long call that is in flight on the same upstream connection when GOAWAY arrives.
  auto long_call = std::async(std::launch::async, [&] {
    CallOptions options;
    options.metadata = {{"x-fake-messages", "5"},
                        {"x-fake-stall-after", "2"},
                        {"x-fake-stall-ms", "1500"}};
    return call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-long")}, options);
  });
  std::this_thread::sleep_for(300ms);

  CallOptions goaway;
  goaway.metadata = {{"x-fake-goaway", "1"}};
  const CallResult g = call(channel, "Config", {request_for("Config", "s-goaway")}, goaway);
  CHECK_MESSAGE(g.status.ok(), "the call that triggered GOAWAY: " << g.describe());

  const CallResult l = long_call.get();
  CHECK_MESSAGE(l.status.ok(), "the call in flight during GOAWAY: " << l.describe());
  CHECK(l.responses.size() == 5);

  // The backend finishes its graceful shutdown and exits.
  REQUIRE(fake->process().wait_exit(10s));
  CHECK(gw.running());

  CallOptions quick;
  quick.op_timeout = 30s;
  const CallResult down = call(channel, "Config", {request_for("Config", "s-down")}, quick);
  CHECK_MESSAGE(down.status.error_code() == grpc::StatusCode::UNAVAILABLE, down.describe());
  CHECK_MESSAGE(names(down.status, backend), down.describe());
  CHECK_FALSE(down.hung);

  // A new backend on the same address: the gateway must open a new connection (the old
  // one is gone) and serve again. PySpark retries UNAVAILABLE, so allow a few attempts.
  fake.reset();
  fake = std::make_unique<FakeServer>(std::vector<std::string>{}, backend_port);
  CallResult again;
  const auto until = std::chrono::steady_clock::now() + 10s;
  do {
    again = call(channel, "Config", {request_for("Config", "s-again")}, quick);
    if (again.status.ok()) break;
    std::this_thread::sleep_for(200ms);
  } while (std::chrono::steady_clock::now() < until);
  CHECK_MESSAGE(again.status.ok(), "after the backend came back: " << again.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
