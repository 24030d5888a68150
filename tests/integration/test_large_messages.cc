// Large messages stream through within max_message_bytes, larger ones are refused with
// RESOURCE_EXHAUSTED, and a slow reader throttles the backend instead of filling the
// gateway's memory.
#include <doctest/doctest.h>

#include <thread>

#include "harness.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;

constexpr size_t kMiB = size_t{1} << 20;
constexpr uint64_t kLimit = 134217728;  // 128 MiB, Spark's default

bool mentions_limit(const std::string& message) {
  return message.find("134217728") != std::string::npos ||
         message.find("128 MiB") != std::string::npos;
}

}  // namespace

TEST_CASE("100 MiB messages pass; 129 MiB messages get RESOURCE_EXHAUSTED") {
  FakeServer fake;
  GatewayOptions options = one_backend(fake.address());
  options.max_message_bytes = kLimit;
  Gateway gw(options);
  auto channel = make_channel(gw.address());

  SUBCASE("100 MiB request") {
    const std::string req = execute_plan_request("s-big-req", "op-big", 100 * kMiB);
    const auto start = std::chrono::steady_clock::now();
    const CallResult r = call(channel, "ExecutePlan", {req});
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start).count();
    MESSAGE("100 MiB request through the gateway: " << ms << " ms");
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-bytes") == std::to_string(req.size()));
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(req));
    REQUIRE(r.responses.size() == 1);
    view::ExecutePlanResponse resp;
    REQUIRE(resp.ParseFromString(r.responses[0]));
    CHECK(resp.session_id() == "s-big-req");
    CHECK(resp.operation_id() == "op-big");
  }

  SUBCASE("100 MiB response") {
    CallOptions options;
    options.metadata = {{"x-fake-messages", "1"},
                        {"x-fake-message-bytes", std::to_string(100 * kMiB)}};
    const CallResult r = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-big-resp")},
                              options);
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    REQUIRE(r.responses.size() == 1);
    view::ExecutePlanResponse resp;
    REQUIRE(resp.ParseFromString(r.responses[0]));
    CHECK(resp.session_id() == "s-big-resp");
    CHECK(resp.has_result_complete());
    CHECK(resp.arrow_batch().data().size() == 100 * kMiB);
    CHECK(sha256_hex(resp.arrow_batch().data()) == sha256_hex(fake_pattern(100 * kMiB)));
  }

  SUBCASE("129 MiB request") {
    const std::string req = execute_plan_request("s-too-big", "op-too-big", 129 * kMiB);
    const CallResult r = call(channel, "ExecutePlan", {req});
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED, r.describe());
    CHECK_MESSAGE(mentions_limit(r.status.error_message()), r.describe());
    CHECK_FALSE(r.hung);
  }

  SUBCASE("129 MiB response") {
    // max_message_bytes applies in both directions (config.h, DESIGN.md §7).
    CallOptions options;
    options.metadata = {{"x-fake-messages", "1"},
                        {"x-fake-message-bytes", std::to_string(129 * kMiB)}};
    const CallResult r = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-resp-big")},
                              options);
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED, r.describe());
    CHECK_MESSAGE(mentions_limit(r.status.error_message()), r.describe());
    CHECK(r.responses.empty());
    CHECK_FALSE(r.hung);
  }

  const CallResult next = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-next")});
  CHECK_MESSAGE(next.status.ok(), next.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
  MESSAGE("gateway VmHWM after the large-message case: " << gw.vm_hwm_kib() / 1024 << " MiB");
}

TEST_CASE("slow reader: 1 GiB result, backend throttled, gateway memory bounded") {
  constexpr size_t kMessages = 256;
  constexpr size_t kMessageBytes = 4 * kMiB;
  // Under AddressSanitizer (asan_build()) freed blocks stay resident in its quarantine,
  // 256 MiB by default (quarantine_size_mb), on top of the shadow memory: the bound grows
  // by that much and still catches a gateway that buffers the 1 GiB result.
  constexpr long kAsanQuarantineKiB = 256 * 1024;
  const long rss_bound_kib = 200 * 1024 + (asan_build() ? kAsanQuarantineKiB : 0);
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address(), /*bdp_probe=*/false);

  CallOptions options;
  options.metadata = {{"x-fake-messages", std::to_string(kMessages)},
                      {"x-fake-message-bytes", std::to_string(kMessageBytes)}};
  StreamingCall c(channel, method_path("ExecutePlan"), options);
  REQUIRE(c.write(request_for("ExecutePlan", "s-slow")));
  REQUIRE(c.writes_done());

  size_t received = 0;
  uint64_t data_bytes = 0;
  bool complete = false;
  auto take = [&](const std::string& msg) {
    view::ExecutePlanResponse resp;
    if (!resp.ParseFromString(msg)) return false;
    ++received;
    data_bytes += resp.arrow_batch().data().size();
    complete = complete || resp.has_result_complete();
    return resp.session_id() == "s-slow";
  };
  for (int i = 0; i < 3; ++i) {
    auto msg = c.read();
    REQUIRE(msg.has_value());
    REQUIRE(take(*msg));
  }

  // Stop reading. Whatever the transport windows hold, the backend must stall soon; give
  // the pipeline 1.5 s to fill, then take two samples 1 s apart.
  std::this_thread::sleep_for(1500ms);
  const FakeStats s1 = fake_stats(fake);
  std::this_thread::sleep_for(1s);
  const FakeStats s2 = fake_stats(fake);
  std::this_thread::sleep_for(500ms);
  const long paused_rss = gw.vm_hwm_kib();
  MESSAGE("during the pause the backend had sent " << s2.sent_bytes / kMiB << " MiB ("
          << s2.sent_messages << " messages) while the client had read " << received
          << "; gateway VmHWM " << paused_rss / 1024 << " MiB");
  CHECK_MESSAGE(s1.sent_bytes == s2.sent_bytes,
                "the backend kept sending while the client was not reading: "
                    << s1.sent_bytes << " -> " << s2.sent_bytes << " bytes");
  CHECK(s2.sent_bytes < 256 * kMiB);

  while (auto msg = c.read()) {
    REQUIRE(take(*msg));
    if (received % 32 == 0) std::this_thread::sleep_for(20ms);
  }
  const CallResult r = c.finish();
  CHECK_MESSAGE(r.status.ok(), r.describe());
  CHECK(received == kMessages);
  CHECK(data_bytes == kMessages * kMessageBytes);
  CHECK(complete);

  const long hwm = gw.vm_hwm_kib();
  MESSAGE("gateway peak RSS (VmHWM) over a 1 GiB slow-reader stream: " << hwm / 1024 << " MiB ("
          << hwm << " KiB)");
  if (!direct_mode()) {
    CHECK(hwm > 0);
    CHECK(hwm < rss_bound_kib);
  }
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
