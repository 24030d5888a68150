// Many concurrent streams on one client connection, including behind a backend that
// allows only a few concurrent streams per connection.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "harness.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;

struct Outcome {
  int ok = 0;
  std::vector<std::string> failures;
};

// Runs `n` concurrent ExecutePlan calls over `channel`, each in its own thread, all
// started at once; each must stream `messages` responses carrying its own session_id.
Outcome run_concurrent(const std::shared_ptr<grpc::Channel>& channel, int n, int messages,
                       const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::vector<CallResult> results(static_cast<size_t>(n));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      CallOptions options;
      options.metadata = {{"x-fake-messages", std::to_string(messages)},
                          {"x-fake-message-bytes", "2048"}};
      options.metadata.insert(options.metadata.end(), extra.begin(), extra.end());
      options.op_timeout = 60s;
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      results[static_cast<size_t>(i)] =
          call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-" + std::to_string(i))},
               options);
    });
  }
  while (ready.load() < n) std::this_thread::sleep_for(1ms);
  go.store(true);
  for (auto& t : threads) t.join();

  Outcome outcome;
  for (int i = 0; i < n; ++i) {
    const CallResult& r = results[static_cast<size_t>(i)];
    bool good = r.status.ok() && r.responses.size() == static_cast<size_t>(messages);
    for (const auto& bytes : r.responses) {
      view::ExecutePlanResponse msg;
      good = good && msg.ParseFromString(bytes) && msg.session_id() == "s-" + std::to_string(i);
    }
    if (good) {
      ++outcome.ok;
    } else if (outcome.failures.size() < 5) {
      outcome.failures.push_back("call " + std::to_string(i) + ": " + r.describe());
    }
  }
  return outcome;
}

std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace

TEST_CASE("200 concurrent streams over one client connection") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  REQUIRE(call(channel, "Config", {request_for("Config", "warm")}).status.ok());

  const auto start = std::chrono::steady_clock::now();
  const Outcome o = run_concurrent(channel, 200, 4);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start).count();
  MESSAGE("200 concurrent ExecutePlan calls (4 responses each): " << o.ok << " ok in " << ms
          << " ms");
  CHECK_MESSAGE(o.ok == 200, join(o.failures));
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("200 concurrent calls behind a backend with max-concurrent-streams 10") {
  FakeServer fake({"--max-concurrent-streams", "10"});
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  REQUIRE(call(channel, "Config", {request_for("Config", "warm")}).status.ok());

  // Each call holds its upstream stream for 300 ms, so the 200 cannot fit into one
  // 10-stream upstream connection at once.
  // Meanwhile count the upstream connections the gateway holds to the backend.
  std::atomic<bool> done{false};
  int peak_connections = 0;
  std::thread sampler([&] {
    while (!done.load()) {
      peak_connections = std::max(peak_connections, established_connections_to(fake.port()));
      std::this_thread::sleep_for(20ms);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  const Outcome o = run_concurrent(channel, 200, 3, {{"x-fake-stall-ms", "300"}});
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start).count();
  done.store(true);
  sampler.join();
  MESSAGE("200 concurrent calls through a 10-stream backend: " << o.ok << " ok in " << ms
          << " ms over at most " << peak_connections
          << " upstream connections (one 10-stream connection would need >= 6000 ms)");
  CHECK_MESSAGE(o.ok == 200, join(o.failures));
  // DESIGN.md §1.5: the pool opens another connection when the peer's limit is reached.
  if (!direct_mode()) CHECK(peak_connections >= 2);
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
