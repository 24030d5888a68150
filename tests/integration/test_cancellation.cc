// Resets cross the gateway in both directions: a client cancel reaches the backend as a
// stream cancellation, and a backend reset ends the client's call without hurting the
// gateway.
#include <doctest/doctest.h>

#include <thread>

#include "harness.h"

namespace sparkgate::itest {
namespace {

// Polls the fake until its cancelled-stream count exceeds `before`, for up to `timeout`.
uint64_t wait_for_cancel(const FakeServer& fake, uint64_t before,
                         std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  uint64_t now = fake_stats(fake).cancelled;
  while (now <= before && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
    now = fake_stats(fake).cancelled;
  }
  return now;
}

}  // namespace

TEST_CASE("client cancel propagates to the backend") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  const uint64_t before = fake_stats(fake).cancelled;

  SUBCASE("TryCancel mid-stream") {
    CallOptions options;
    options.metadata = {{"x-fake-messages", "1000"},
                        {"x-fake-message-bytes", "1024"},
                        {"x-fake-stall-after", "2"},
                        {"x-fake-stall-ms", "60000"}};
    StreamingCall c(channel, method_path("ExecutePlan"), options);
    REQUIRE(c.write(request_for("ExecutePlan", "s-cancel")));
    REQUIRE(c.writes_done());
    REQUIRE(c.read().has_value());
    REQUIRE(c.read().has_value());
    c.cancel();
    const CallResult r = c.finish();
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::CANCELLED, r.describe());
    const uint64_t after = wait_for_cancel(fake, before, 10s);
    CHECK_MESSAGE(after == before + 1, "the backend never saw the client's cancel");
  }

  SUBCASE("client deadline expires while the backend stalls") {
    CallOptions options;
    options.metadata = {{"x-fake-stall-ms", "60000"}};
    options.deadline = 500ms;
    const CallResult r = call(channel, "AnalyzePlan", {request_for("AnalyzePlan", "s-dl")}, options);
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED, r.describe());
    const uint64_t after = wait_for_cancel(fake, before, 10s);
    CHECK_MESSAGE(after == before + 1, "the backend call outlived the client's deadline");
  }

  SUBCASE("client cancel while the request is still streaming") {
    StreamingCall c(channel, method_path("AddArtifacts"), {});
    REQUIRE(c.write(request_for("AddArtifacts", "s-up")));
    REQUIRE(c.write(random_bytes(64 * 1024)));
    // Give the gateway time to open the upstream stream before the reset.
    std::this_thread::sleep_for(300ms);
    c.cancel();
    const CallResult r = c.finish();
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::CANCELLED, r.describe());
    const uint64_t after = wait_for_cancel(fake, before, 10s);
    CHECK_MESSAGE(after == before + 1, "the backend never saw the client's cancel");
  }

  const CallResult next = call(channel, "Config", {request_for("Config", "next")});
  CHECK_MESSAGE(next.status.ok(), next.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("backend reset ends the client call; the gateway keeps serving") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());

  CallOptions options;
  options.metadata = {{"x-fake-messages", "10"}, {"x-fake-reset-after", "3"}};
  const CallResult r = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-rst")}, options);
  CHECK_MESSAGE((r.status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                 r.status.error_code() == grpc::StatusCode::CANCELLED),
                r.describe());
  CHECK(r.responses.size() == 3);
  CHECK_FALSE(r.hung);

  SUBCASE("reset before any response") {
    CallOptions early;
    early.metadata = {{"x-fake-reset-after", "0"}};
    const CallResult r0 = call(channel, "Config", {request_for("Config", "s-rst0")}, early);
    CHECK_MESSAGE((r0.status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                   r0.status.error_code() == grpc::StatusCode::CANCELLED),
                  r0.describe());
  }

  const CallResult next = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-next")});
  CHECK_MESSAGE(next.status.ok(), next.describe());
  CHECK(next.responses.size() == 1);
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
