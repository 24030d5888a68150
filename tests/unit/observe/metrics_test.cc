#include "observe/metrics.h"

#include <doctest/doctest.h>

#include <boost/json.hpp>

#include <thread>
#include <vector>

#include "observe/session_stats.h"

using namespace sparkgate::observe;

namespace {

// The value of `series` in `text` (exact series text), or -1.
double value_of(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

}  // namespace

TEST_CASE("RPC families count per method, code and cluster, with bytes and durations") {
  Metrics m;
  auto& etl = m.cluster("etl");
  CHECK(&etl == &m.cluster("etl"));  // one object per cluster name
  etl.stream_opened();
  etl.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kExecutePlan), 0, 0.2, 0.05, 100, 5000);
  etl.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kExecutePlan), 13, 0.3, -1, 50, 0);
  etl.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kConfig), 0, 0.001, -1, 20, 30);
  m.cluster("").rpc_done(kUnknownRpc, 12, 0.0001, -1, 0, 0);
  m.cluster("").rpc_done(kUnknownRpc, 99, 0.0001, -1, 0, 0);  // out of range: UNKNOWN
  const auto text = m.render({});
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="OK",rpc="ExecutePlan"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="INTERNAL",rpc="ExecutePlan"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="OK",rpc="Config"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="",code="UNIMPLEMENTED",rpc="unknown"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="",code="UNKNOWN",rpc="unknown"})") == 1);
  CHECK(value_of(text, R"(sparkgate_bytes_total{cluster="etl",direction="in"})") == 170);
  CHECK(value_of(text, R"(sparkgate_bytes_total{cluster="etl",direction="out"})") == 5030);
  CHECK(value_of(text, R"(sparkgate_active_streams{cluster="etl"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_count{cluster="etl",rpc="ExecutePlan"})") == 2);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_bucket{cluster="etl",rpc="ExecutePlan",le="0.25"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpc_first_response_seconds_count{cluster="etl",rpc="ExecutePlan"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpc_first_response_seconds_count{cluster="etl",rpc="Config"})") == -1);
}

TEST_CASE("RPC counts from many threads are summed at scrape, and a second scrape adds only what is new") {
  Metrics m;
  auto& etl = m.cluster("etl");
  const auto config = static_cast<RpcLabel>(sparkgate::spark::Rpc::kConfig);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        etl.stream_opened();
        etl.rpc_done(config, 0, 0.002, -1, 3, 7);
      }
    });
  }
  for (auto& t : threads) t.join();
  // Streams opened on the workers above are closed here, on another thread.
  for (int i = 0; i < kThreads * kPerThread - 5; ++i) etl.stream_closed();
  auto text = m.render({});
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="OK",rpc="Config"})") == kThreads * kPerThread);
  CHECK(value_of(text, R"(sparkgate_bytes_total{cluster="etl",direction="in"})") == 3 * kThreads * kPerThread);
  CHECK(value_of(text, R"(sparkgate_active_streams{cluster="etl"})") == 5);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_bucket{cluster="etl",rpc="Config",le="0.001"})") == 0);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_bucket{cluster="etl",rpc="Config",le="0.0025"})") ==
        kThreads * kPerThread);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_sum{cluster="etl",rpc="Config"})") ==
        doctest::Approx(0.002 * kThreads * kPerThread));
  // A bound is inclusive (le), as in prometheus-cpp's own Observe.
  etl.rpc_done(config, 5, 0.001, -1, 0, 0);
  for (int i = 0; i < 5; ++i) etl.stream_closed();
  text = m.render({});
  text = m.render({});  // scraping twice counts nothing twice
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="OK",rpc="Config"})") == kThreads * kPerThread);
  CHECK(value_of(text, R"(sparkgate_rpcs_total{cluster="etl",code="NOT_FOUND",rpc="Config"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_bucket{cluster="etl",rpc="Config",le="0.001"})") == 1);
  CHECK(value_of(text, R"(sparkgate_rpc_duration_seconds_count{cluster="etl",rpc="Config"})") ==
        kThreads * kPerThread + 1);
  CHECK(value_of(text, R"(sparkgate_active_streams{cluster="etl"})") == 0);
}

TEST_CASE("scrape-time families come from the input") {
  Metrics m;
  m.set_build_info("1.2.3");
  ScrapeInput in;
  in.backends.push_back({"etl", "10.0.0.5:15002", 3, true});
  in.backends.push_back({"etl", "10.0.0.6:15002", 0, false});
  in.downstream_connections = 7;
  in.sessions_created = 11;
  m.upstream_connections("10.0.0.5:15002").Increment();
  const auto text = m.render(in);
  CHECK(value_of(text, R"(sparkgate_sessions{backend="10.0.0.5:15002",cluster="etl"})") == 3);
  CHECK(value_of(text, R"(sparkgate_backend_healthy{backend="10.0.0.5:15002",cluster="etl"})") == 1);
  CHECK(value_of(text, R"(sparkgate_backend_healthy{backend="10.0.0.6:15002",cluster="etl"})") == 0);
  CHECK(value_of(text, "sparkgate_downstream_connections") == 7);
  CHECK(value_of(text, "sparkgate_sessions_created_total") == 11);
  CHECK(value_of(text, R"(sparkgate_upstream_connections{backend="10.0.0.5:15002"})") == 1);
  CHECK(value_of(text, R"(sparkgate_build_info{version="1.2.3"})") == 1);
}

TEST_CASE("session stats count RPCs, errors by code and bytes") {
  SessionStats s;
  s.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kConfig), 0, 10, 20);
  s.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kConfig), 5, 1, 2);
  s.rpc_done(static_cast<RpcLabel>(sparkgate::spark::Rpc::kExecutePlan), 0, 100, 200);
  boost::json::object o;
  s.to_json(o);
  CHECK(boost::json::serialize(o.at("rpcs")) == R"({"ExecutePlan":1,"Config":2})");
  CHECK(boost::json::serialize(o.at("errors")) == R"({"NOT_FOUND":1})");
  CHECK(o.at("bytes_in").to_number<int>() == 111);
  CHECK(o.at("bytes_out").to_number<int>() == 222);
}
