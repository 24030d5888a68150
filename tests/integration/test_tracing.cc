// OTLP trace export through the real binary, against a fake collector (fake_collector.h):
// the spans and their parentage, the traceparent the backend receives, sampling, secret
// headers (sent, never shown or logged), and the failure modes: a collector that is down,
// answers 500, or is slow; a full queue; the drain flush; reloads.
#include <doctest/doctest.h>
#include <signal.h>

#include <regex>
#include <thread>

#include "fake_collector.h"
#include "harness.h"

namespace sparkgate::itest {
namespace {

const std::string kParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::string tracing_yaml(const std::string& endpoint, const std::string& extra = "") {
  return "tracing:\n  otlp:\n    endpoint: " + endpoint + "\n    timeout: 1s\n" + extra;
}

GatewayOptions traced(const FakeServer& fake, const std::string& tracing) {
  auto o = one_backend(fake.address());
  o.extra_yaml = tracing;
  return o;
}

const otlp::Span* find_kind(const std::vector<otlp::Span>& spans, otlp::Span::SpanKind kind, const std::string& name) {
  for (const auto& s : spans) {
    if (s.kind() == kind && s.name() == name) return &s;
  }
  return nullptr;
}

double metric(const Gateway& gw, const std::string& series) { return scrape_metric(gw.admin_port(), series).value_or(-1); }

CallResult config_call(const std::shared_ptr<grpc::Channel>& channel, const std::string& traceparent = "") {
  CallOptions o;
  if (!traceparent.empty()) o.metadata = {{"traceparent", traceparent}};
  return call(channel, "Config", {request_for("Config", "trace-session")}, o);
}

TEST_CASE("tracing: SERVER and CLIENT spans with attributes; the backend gets the CLIENT span's traceparent") {
  if (direct_mode()) return;
  FakeCollector collector;
  FakeServer fake;
  setenv("SG_ITEST_OTLP_KEY", "very-secret-api-key", 1);
  Gateway gw(traced(fake, tracing_yaml(collector.endpoint(),
                                       "    headers: {x-api-key: {env: SG_ITEST_OTLP_KEY}}\n  flush_interval: 100ms\n")));
  auto channel = make_channel(gw.address());
  auto r = config_call(channel, kParent);
  REQUIRE_MESSAGE(r.status.ok(), r.describe());
  auto ex = call(channel, "ExecutePlan", {execute_plan_request("trace-session", "op-trace-1")});
  REQUIRE_MESSAGE(ex.status.ok(), ex.describe());
  REQUIRE(collector.wait_spans(4, 10s));
  auto spans = collector.spans();

  const auto* server = find_kind(spans, otlp::Span::SPAN_KIND_SERVER, "spark.connect.SparkConnectService/Config");
  const auto* client = find_kind(spans, otlp::Span::SPAN_KIND_CLIENT, "spark.connect.SparkConnectService/Config");
  REQUIRE(server);
  REQUIRE(client);
  // The client's trace, the client's span as the parent.
  CHECK(hex(server->trace_id()) == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(hex(server->parent_span_id()) == "00f067aa0ba902b7");
  CHECK(client->trace_id() == server->trace_id());
  CHECK(client->parent_span_id() == server->span_id());
  // The backend saw the CLIENT span as its parent.
  CHECK(r.trailer("x-fake-traceparent") == "00-4bf92f3577b34da6a3ce929d0e0e4736-" + hex(client->span_id()) + "-01");
  CHECK(attribute(*server, "rpc.system") == "grpc");
  CHECK(attribute(*server, "rpc.service") == "spark.connect.SparkConnectService");
  CHECK(attribute(*server, "rpc.method") == "Config");
  CHECK(attribute(*server, "rpc.grpc.status_code") == "0");
  CHECK(attribute(*server, "spark.session_id") == "trace-session");
  CHECK(attribute(*server, "enduser.id").empty());  // no auth: no verified user
  CHECK(attribute(*server, "sparkgate.cluster") == "local");
  CHECK(attribute(*server, "sparkgate.backend").find(fake.address()) != std::string::npos);
  CHECK(attribute(*server, "client.address") == "127.0.0.1");
  CHECK(!attribute(*server, "client.port").empty());
  CHECK(attribute(*client, "server.address") == "127.0.0.1");
  CHECK(attribute(*client, "server.port") == std::to_string(fake.port()));
  CHECK(server->start_time_unix_nano() <= client->start_time_unix_nano());
  CHECK(client->end_time_unix_nano() <= server->end_time_unix_nano());
  CHECK(server->status().code() == otlp::Status::STATUS_CODE_UNSET);

  // No client traceparent: a new trace, a root SERVER span; operation_id recorded.
  const auto* exec = find_kind(spans, otlp::Span::SPAN_KIND_SERVER, "spark.connect.SparkConnectService/ExecutePlan");
  REQUIRE(exec);
  CHECK(exec->parent_span_id().empty());
  CHECK(attribute(*exec, "spark.operation_id") == "op-trace-1");

  // The export request: /v1/traces, protobuf, the secret header.
  auto reqs = collector.requests();
  REQUIRE(!reqs.empty());
  CHECK(reqs[0].method == "POST");
  CHECK(reqs[0].path == "/v1/traces");
  CHECK(reqs[0].headers["content-type"] == "application/x-protobuf");
  CHECK(reqs[0].headers["x-api-key"] == "very-secret-api-key");
  otlp::ExportTraceServiceRequest req;
  REQUIRE(req.ParseFromString(reqs[0].body));
  bool service = false;
  for (const auto& kv : req.resource_spans(0).resource().attributes())
    service |= kv.key() == "service.name" && kv.value().string_value() == "sparkgate";
  CHECK(service);

  // The secret is redacted in /v1/config and never logged.
  auto cfg = http_get(gw.admin_port(), "/v1/config");
  CHECK(cfg.status == 200);
  CHECK(cfg.body.find("very-secret-api-key") == std::string::npos);
  CHECK(cfg.body.find("env SG_ITEST_OTLP_KEY") != std::string::npos);
  CHECK(gw.stderr_text().find("very-secret-api-key") == std::string::npos);
  // The collector has the spans before the gateway has read its answer and counted them.
  CHECK(wait_until([&] { return metric(gw, "sparkgate_spans_exported_total") >= 4; }, 5s));
  CHECK(metric(gw, "sparkgate_span_batches_total{result=\"ok\"}") >= 1);
}

TEST_CASE("tracing: a gRPC error marks both spans; a refusal before routing has no CLIENT span") {
  if (direct_mode()) return;
  FakeCollector collector;
  FakeServer fake;
  Gateway gw(traced(fake, tracing_yaml(collector.endpoint(), "  flush_interval: 100ms\n")));
  auto channel = make_channel(gw.address());
  // The backend answers with an error status (the fake is told to: FAILED_PRECONDITION).
  CallOptions fail;
  fail.metadata = {{"x-fake-status", "9"}, {"x-fake-message", "told to fail"}};
  auto r = call(channel, "ReattachExecute", {reattach_request("nope", "op-x")}, fail);
  CHECK(r.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  // A method Spark does not have is refused by the gateway before routing (UNIMPLEMENTED).
  auto bad = call(channel, "NoSuchRpc", {request_for("Config", "trace-session")});
  CHECK(bad.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  REQUIRE(collector.wait_spans(3, 10s));
  auto spans = collector.spans();
  const auto* server = find_kind(spans, otlp::Span::SPAN_KIND_SERVER, "spark.connect.SparkConnectService/ReattachExecute");
  const auto* client = find_kind(spans, otlp::Span::SPAN_KIND_CLIENT, "spark.connect.SparkConnectService/ReattachExecute");
  REQUIRE(server);
  REQUIRE(client);
  CHECK(server->status().code() == otlp::Status::STATUS_CODE_ERROR);
  CHECK(client->status().code() == otlp::Status::STATUS_CODE_ERROR);
  CHECK(attribute(*server, "rpc.grpc.status_code") == std::to_string(static_cast<int>(r.status.error_code())));
  const auto* refused = find_kind(spans, otlp::Span::SPAN_KIND_SERVER, "spark.connect.SparkConnectService/NoSuchRpc");
  REQUIRE(refused);
  CHECK(refused->status().code() == otlp::Status::STATUS_CODE_ERROR);
  CHECK(attribute(*refused, "rpc.grpc.status_code") == "12");
  CHECK(attribute(*refused, "rpc.method").empty());
  CHECK_FALSE(find_kind(spans, otlp::Span::SPAN_KIND_CLIENT, "spark.connect.SparkConnectService/NoSuchRpc"));
  bool reply_event = false;
  for (const auto& e : refused->events()) reply_event |= e.name().find("sparkgate reply: UNIMPLEMENTED") == 0;
  CHECK(reply_event);
}

TEST_CASE("tracing: sample_ratio 0 traces only sampled parents; an unsampled parent is passed on as it came") {
  if (direct_mode()) return;
  FakeCollector collector;
  FakeServer fake;
  Gateway gw(traced(fake, tracing_yaml(collector.endpoint(), "  sample_ratio: 0\n  flush_interval: 100ms\n")));
  auto channel = make_channel(gw.address());
  auto none = config_call(channel);
  REQUIRE(none.status.ok());
  // A new trace that is not sampled tells the backend so (flags 00).
  CHECK(std::regex_match(none.trailer("x-fake-traceparent"), std::regex("00-[0-9a-f]{32}-[0-9a-f]{16}-00")));
  const std::string unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
  auto u = config_call(channel, unsampled);
  REQUIRE(u.status.ok());
  CHECK(u.trailer("x-fake-traceparent") == unsampled);
  auto s = config_call(channel, kParent);
  REQUIRE(s.status.ok());
  REQUIRE(collector.wait_spans(2, 10s));
  std::this_thread::sleep_for(300ms);  // anything else would have been flushed by now
  auto spans = collector.spans();
  size_t rpc_spans = 0;
  for (const auto& sp : spans) {
    CHECK(hex(sp.trace_id()) == "4bf92f3577b34da6a3ce929d0e0e4736");  // only the sampled parent's trace
    rpc_spans += sp.kind() != otlp::Span::SPAN_KIND_INTERNAL;  // waits (a new connection) aside
  }
  CHECK(rpc_spans == 2);
}

TEST_CASE("tracing: a collector that is down, answers 500 or is slow costs spans, never RPCs") {
  if (direct_mode()) return;
  FakeServer fake;
  SUBCASE("down") {
    uint16_t closed = 0;
    {
      FakeCollector gone;  // a port that was just free
      closed = gone.port();
    }
    Gateway gw(traced(fake, tracing_yaml("http://127.0.0.1:" + std::to_string(closed), "  flush_interval: 50ms\n")));
    auto channel = make_channel(gw.address());
    for (int i = 0; i < 5; ++i) REQUIRE(config_call(channel).status.ok());
    CHECK(wait_until([&] { return metric(gw, "sparkgate_span_batches_total{result=\"unreachable\"}") >= 1; }, 5s));
    CHECK(wait_until([&] { return metric(gw, "sparkgate_spans_dropped_total{reason=\"export_failed\"}") >= 2; }, 5s));
    // Logged, once for the first failure, naming the URL.
    CHECK(gw.stderr_text().find("trace export failed (unreachable): POST http://127.0.0.1:" + std::to_string(closed) +
                                "/v1/traces") != std::string::npos);
  }
  SUBCASE("500") {
    FakeCollector collector;
    collector.answer(500);
    setenv("SG_ITEST_OTLP_KEY2", "another-secret", 1);
    Gateway gw(traced(fake, tracing_yaml(collector.endpoint(),
                                         "    headers: {authorization: {env: SG_ITEST_OTLP_KEY2}}\n"
                                         "  flush_interval: 50ms\n")));
    auto channel = make_channel(gw.address());
    for (int i = 0; i < 3; ++i) REQUIRE(config_call(channel).status.ok());
    CHECK(wait_until([&] { return metric(gw, "sparkgate_span_batches_total{result=\"http_status\"}") >= 1; }, 5s));
    CHECK(metric(gw, "sparkgate_spans_exported_total") == 0);
    CHECK(gw.stderr_text().find("answered HTTP 500") != std::string::npos);
    CHECK(gw.stderr_text().find("another-secret") == std::string::npos);
    // It recovers when the collector does.
    collector.answer(200);
    REQUIRE(config_call(channel).status.ok());
    CHECK(wait_until([&] { return metric(gw, "sparkgate_spans_exported_total") >= 2; }, 5s));
    CHECK(wait_until([&] { return gw.stderr_text().find("works again") != std::string::npos; }, 3s));
  }
  SUBCASE("slow") {
    FakeCollector collector;
    collector.answer(200, 3s);  // past tracing.otlp.timeout (1s)
    Gateway gw(traced(fake, tracing_yaml(collector.endpoint(), "  flush_interval: 50ms\n")));
    auto channel = make_channel(gw.address());
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) REQUIRE(config_call(channel).status.ok());
    // Workers never wait for the exporter.
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK(wait_until([&] { return metric(gw, "sparkgate_span_batches_total{result=\"timeout\"}") >= 1; }, 6s));
  }
}

TEST_CASE("tracing: a full queue drops spans and counts them; RPCs go on") {
  if (direct_mode()) return;
  FakeCollector collector;
  collector.answer(200, 2s);  // the first batch holds the exporter
  FakeServer fake;
  Gateway gw(traced(fake, tracing_yaml(collector.endpoint(), "  queue_size: 4\n  batch_size: 2\n  flush_interval: 1h\n")));
  auto channel = make_channel(gw.address());
  for (int i = 0; i < 10; ++i) REQUIRE(config_call(channel).status.ok());
  // 10 RPCs make 20 spans (and a wait span per new upstream connection, one per worker at
  // most): 2 in flight, 4 queued, the rest dropped.
  CHECK(wait_until([&] { return metric(gw, "sparkgate_spans_dropped_total{reason=\"queue_full\"}") >= 14; }, 5s));
  CHECK(metric(gw, "sparkgate_spans_dropped_total{reason=\"queue_full\"}") <= 16);
}

TEST_CASE("tracing: the drain flushes the queued spans before the gateway exits") {
  if (direct_mode()) return;
  FakeCollector collector;
  FakeServer fake;
  auto o = traced(fake, tracing_yaml(collector.endpoint(), "  flush_interval: 1h\n"));
  o.drain_timeout = "2s";
  Gateway gw(o);
  auto channel = make_channel(gw.address());
  for (int i = 0; i < 3; ++i) REQUIRE(config_call(channel).status.ok());
  std::this_thread::sleep_for(200ms);
  CHECK(collector.spans().empty());  // a batch of 512 or an hour: nothing sent yet
  channel.reset();
  auto status = gw.terminate(10s);
  REQUIRE(status);
  size_t rpc_spans = 0;
  for (const auto& sp : collector.spans()) rpc_spans += sp.kind() != otlp::Span::SPAN_KIND_INTERNAL;
  CHECK(rpc_spans == 6);
}

TEST_CASE("tracing: a reload turns it on, an invalid tracing block keeps the old config") {
  if (direct_mode()) return;
  FakeCollector collector;
  FakeServer fake;
  const std::string clusters = "clusters:\n  - name: local\n    backends:\n      - address: " + fake.address() +
                               "\nroutes:\n  - cluster: local\n";
  auto o = one_backend(fake.address());
  o.clusters_yaml = clusters;
  Gateway gw(o);
  auto channel = make_channel(gw.address());
  REQUIRE(config_call(channel).status.ok());
  std::this_thread::sleep_for(200ms);
  CHECK(collector.request_count() == 0);

  gw.rewrite_config(clusters, tracing_yaml(collector.endpoint(), "  flush_interval: 50ms\n"));
  REQUIRE(wait_until([&] { return metric(gw, "sparkgate_config_reloads_total{result=\"success\"}") >= 1; }, 5s));
  REQUIRE(config_call(channel).status.ok());
  REQUIRE(collector.wait_spans(2, 5s));

  gw.rewrite_config(clusters, tracing_yaml(collector.endpoint(), "  sample_ratio: 7\n"));
  REQUIRE(wait_until([&] { return metric(gw, "sparkgate_config_reloads_total{result=\"failure\"}") >= 1; }, 5s));
  CHECK(gw.stderr_text().find("tracing.sample_ratio must be a number from 0 to 1") != std::string::npos);
  REQUIRE(config_call(channel).status.ok());
  CHECK(collector.wait_spans(4, 5s));  // still exporting with the old block
}

}  // namespace
}  // namespace sparkgate::itest
