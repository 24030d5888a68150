// Observability through the real binary: exact metric values and per-session stats after a
// known sequence of RPCs, the JSON access log and request correlation (x-request-id,
// traceparent) as the backend sees them, the gateway's own grpc.health.v1 check on the main
// listener, readiness transitions, DELETE of a session mid-stream, the admin API's token.
#include <doctest/doctest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"

namespace sparkgate::itest {
namespace {

namespace json = boost::json;

// Bytes of one message on the wire: the 5-byte gRPC prefix and the payload.
uint64_t wire(const std::string& message) { return 5 + message.size(); }
uint64_t wire(const std::vector<std::string>& messages) {
  uint64_t n = 0;
  for (const auto& m : messages) n += wire(m);
  return n;
}

json::object parse_object(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  REQUIRE_MESSAGE(!ec, "not JSON: " << text);
  REQUIRE_MESSAGE(v.is_object(), "not a JSON object: " << text);
  return v.as_object();
}

// The access-log lines (JSON objects, one per line) of `type` ("rpc", "session_end").
std::vector<json::object> log_lines(const Gateway& gw, const std::string& type) {
  std::vector<json::object> out;
  std::istringstream in(gw.stdout_text());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto o = parse_object(line);
    if (o.contains("type") && o.at("type").as_string() == type) out.push_back(std::move(o));
  }
  return out;
}

int64_t int_at(const json::object& o, const char* key) {
  REQUIRE_MESSAGE(o.contains(key), key << " missing in " << json::serialize(o));
  return o.at(key).to_number<int64_t>();
}

std::string str_at(const json::object& o, const char* key) {
  REQUIRE_MESSAGE(o.contains(key), key << " missing in " << json::serialize(o));
  return std::string(o.at(key).as_string());
}

// Waits (up to 3 s) for `series` to read `want` in /metrics, then checks it.
void check_metric(const Gateway& gw, const std::string& series, double want) {
  wait_until([&] { return scrape_metric(gw.admin_port(), series) == want; }, 3s);
  const auto got = scrape_metric(gw.admin_port(), series);
  CHECK_MESSAGE(got == want, series << " = " << (got ? std::to_string(*got) : "absent") << ", want " << want);
}

// grpc.health.v1.Health/Check on the gateway's main listener: the ServingStatus, or -1
// (with what went wrong in `why`).
int health_status(const std::shared_ptr<grpc::Channel>& channel, std::string& why) {
  CallOptions o;
  o.op_timeout = 30s;
  StreamingCall c(channel, "/grpc.health.v1.Health/Check", o);
  const bool sent = c.write(std::string()) && c.writes_done();
  auto msg = sent ? c.read() : std::nullopt;
  auto r = c.finish();
  why = "sent=" + std::to_string(sent) + " message=" + (msg ? std::to_string(msg->size()) + " bytes" : "none") +
        " " + r.describe();
  if (!r.status.ok() || !msg || msg->size() != 2 || (*msg)[0] != 0x08) return -1;
  return (*msg)[1];
}

const std::regex kUuid("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
const std::regex kTraceparent("00-[0-9a-f]{32}-[0-9a-f]{16}-01");

}  // namespace

TEST_CASE("metrics, session stats and the access log after a known sequence of RPCs") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());

  uint64_t in_a = 0, out_a = 0, in_b = 0, out_b = 0;
  for (int i = 0; i < 2; ++i) {
    const auto req = request_for("Config", "obs-a");
    auto r = call(channel, "Config", {req});
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    in_a += wire(req);
    out_a += wire(r.responses);
  }
  CallOptions stream;
  stream.metadata = {{"x-fake-messages", "4"}, {"x-fake-message-bytes", "1000"}};
  const auto plan = execute_plan_request("obs-a", "op-obs-1", 3000);
  auto executed = call(channel, "ExecutePlan", {plan}, stream);
  REQUIRE_MESSAGE(executed.status.ok(), executed.describe());
  REQUIRE(executed.responses.size() == 4);
  in_a += wire(plan);
  out_a += wire(executed.responses);

  CallOptions failing;
  failing.metadata = {{"x-fake-status", "13"}, {"x-fake-message", "boom"}};
  const auto analyze = request_for("AnalyzePlan", "obs-a");
  auto failed = call(channel, "AnalyzePlan", {analyze}, failing);
  REQUIRE(failed.status.error_code() == grpc::StatusCode::INTERNAL);
  in_a += wire(analyze);
  out_a += wire(failed.responses);

  const auto other = request_for("Config", "obs-b");
  auto b = call(channel, "Config", {other});
  REQUIRE(b.status.ok());
  in_b += wire(other);
  out_b += wire(b.responses);

  auto unknown = call(channel, "Nope", {request_for("Config", "obs-c")});
  REQUIRE(unknown.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);

  const std::string backend = fake.address();
  SUBCASE("metrics") {
    check_metric(gw, "sparkgate_rpcs_total{cluster=\"local\",code=\"OK\",rpc=\"Config\"}", 3);
    check_metric(gw, "sparkgate_rpcs_total{cluster=\"local\",code=\"OK\",rpc=\"ExecutePlan\"}", 1);
    check_metric(gw, "sparkgate_rpcs_total{cluster=\"local\",code=\"INTERNAL\",rpc=\"AnalyzePlan\"}", 1);
    check_metric(gw, "sparkgate_rpcs_total{cluster=\"\",code=\"UNIMPLEMENTED\",rpc=\"unknown\"}", 1);
    check_metric(gw, "sparkgate_bytes_total{cluster=\"local\",direction=\"in\"}", static_cast<double>(in_a + in_b));
    check_metric(gw, "sparkgate_bytes_total{cluster=\"local\",direction=\"out\"}",
                 static_cast<double>(out_a + out_b));
    check_metric(gw, "sparkgate_rpc_duration_seconds_count{cluster=\"local\",rpc=\"Config\"}", 3);
    check_metric(gw, "sparkgate_rpc_first_response_seconds_count{cluster=\"local\",rpc=\"ExecutePlan\"}", 1);
    check_metric(gw, "sparkgate_active_streams{cluster=\"local\"}", 0);
    check_metric(gw, "sparkgate_sessions{backend=\"" + backend + "\",cluster=\"local\"}", 2);
    check_metric(gw, "sparkgate_sessions_created_total", 2);
    check_metric(gw, "sparkgate_backend_healthy{backend=\"" + backend + "\",cluster=\"local\"}", 1);
    check_metric(gw, "sparkgate_downstream_connections", 1);
    check_metric(gw, "sparkgate_upstream_connections{backend=\"" + backend + "\"}", 1);
    const auto body = http_get(gw.admin_port(), "/metrics").body;
    // Unary RPCs have no time-to-first-response series.
    CHECK_FALSE(metric_value(body, "sparkgate_rpc_first_response_seconds_count{cluster=\"local\",rpc=\"Config\"}"));
    CHECK(std::regex_search(body, std::regex("\nsparkgate_build_info\\{version=\"[^\"]+\"\\} 1\n")));
  }

  SUBCASE("per-session stats") {
    auto a = http_get(gw.admin_port(), "/v1/sessions/obs-a");
    REQUIRE_MESSAGE(a.status == 200, a.body);
    auto s = parse_object(a.body);
    CHECK(str_at(s, "session_id") == "obs-a");
    CHECK(str_at(s, "user") == "alice");
    CHECK(str_at(s, "cluster") == "local");
    CHECK(str_at(s, "backend") == backend);
    CHECK_FALSE(str_at(s, "server_side_session_id").empty());
    CHECK(int_at(s, "bytes_in") == static_cast<int64_t>(in_a));
    CHECK(int_at(s, "bytes_out") == static_cast<int64_t>(out_a));
    CHECK(int_at(s, "rpcs_in_flight") == 0);
    CHECK(int_at(s, "operations_in_flight") == 0);
    CHECK(json::serialize(s.at("rpcs")) == R"({"ExecutePlan":1,"AnalyzePlan":1,"Config":2})");
    CHECK(json::serialize(s.at("errors")) == R"({"INTERNAL":1})");

    auto all = parse_object(http_get(gw.admin_port(), "/v1/sessions?user=alice").body);
    CHECK(int_at(all, "count") == 2);
    auto none = parse_object(http_get(gw.admin_port(), "/v1/sessions?backend=10.9.9.9:1").body);
    CHECK(int_at(none, "count") == 0);
    CHECK(http_get(gw.admin_port(), "/v1/sessions/obs-c").status == 404);
  }

  SUBCASE("one access-log line per RPC") {
    std::vector<json::object> lines;
    wait_until([&] { return (lines = log_lines(gw, "rpc")).size() >= 6; }, 3s);
    REQUIRE(lines.size() == 6);
    const json::object* ep = nullptr;
    for (const auto& l : lines) {
      if (l.at("rpc").as_string() == "ExecutePlan") ep = &l;
      CHECK(std::regex_match(str_at(l, "request_id"), kUuid));
      CHECK(std::regex_match(str_at(l, "traceparent"), kTraceparent));
    }
    REQUIRE(ep != nullptr);
    CHECK(str_at(*ep, "session") == "obs-a");
    CHECK(str_at(*ep, "user") == "alice");
    CHECK(str_at(*ep, "cluster") == "local");
    CHECK(str_at(*ep, "backend") == backend);
    CHECK(str_at(*ep, "operation_id") == "op-obs-1");
    CHECK(int_at(*ep, "code") == 0);
    CHECK(int_at(*ep, "bytes_in") == static_cast<int64_t>(wire(plan)));
    CHECK(int_at(*ep, "bytes_out") == static_cast<int64_t>(wire(executed.responses)));
    CHECK(str_at(lines.back(), "rpc") == "unknown");
    CHECK(str_at(lines.back(), "status") == "UNIMPLEMENTED");
  }
}

TEST_CASE("x-request-id and traceparent reach the backend: the client's, or new ones") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  CallOptions given;
  given.metadata = {{"x-request-id", "req-42"}, {"traceparent", tp}};
  auto r = call(channel, "Config", {request_for("Config", "corr")}, given);
  REQUIRE_MESSAGE(r.status.ok(), r.describe());
  CHECK(r.trailer("x-fake-x-request-id") == "req-42");
  CHECK(r.trailer("x-fake-traceparent") == tp);

  auto fresh = call(channel, "Config", {request_for("Config", "corr")});
  REQUIRE(fresh.status.ok());
  CHECK(std::regex_match(fresh.trailer("x-fake-x-request-id"), kUuid));
  CHECK(std::regex_match(fresh.trailer("x-fake-traceparent"), kTraceparent));

  CallOptions broken;
  broken.metadata = {{"traceparent", "00-zz-00"}};
  auto replaced = call(channel, "Config", {request_for("Config", "corr")}, broken);
  REQUIRE(replaced.status.ok());
  CHECK(std::regex_match(replaced.trailer("x-fake-traceparent"), kTraceparent));

  std::vector<json::object> lines;
  wait_until([&] { return (lines = log_lines(gw, "rpc")).size() >= 3; }, 3s);
  REQUIRE(lines.size() == 3);
  CHECK(str_at(lines[0], "request_id") == "req-42");
  CHECK(str_at(lines[0], "traceparent") == tp);
  CHECK(str_at(lines[1], "request_id") == fresh.trailer("x-fake-x-request-id"));
  CHECK(str_at(lines[1], "traceparent") == fresh.trailer("x-fake-traceparent"));
}

TEST_CASE("readiness follows backend health and the drain; grpc.health.v1 on the main listener agrees") {
  if (direct_mode()) return;
  auto fake = std::make_unique<FakeServer>();
  const uint16_t backend_port = fake->port();
  GatewayOptions options = one_backend(fake->address());
  options.clusters_yaml =
      "clusters:\n"
      "  - name: local\n"
      "    health_check: {interval: 100ms, timeout: 50ms, unhealthy_threshold: 1, healthy_threshold: 1}\n"
      "    backends:\n"
      "      - address: " + fake->address() + "\n"
      "routes:\n"
      "  - cluster: local\n";
  options.drain_timeout = "5s";
  Gateway gw(options);
  const uint16_t admin = gw.admin_port();
  auto channel = make_channel(gw.address());

  auto ready = http_get(admin, "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready\n");
  std::string why;
  CHECK_MESSAGE(health_status(channel, why) == 1, why);  // SERVING

  fake.reset();  // the only backend goes away
  CHECK(wait_until([&] { return http_get(admin, "/readyz").status == 503; }, 5s));
  auto down = http_get(admin, "/readyz");
  CHECK(down.body == "not ready (no healthy backend)\n");
  CHECK(http_get(admin, "/healthz").status == 200);
  CHECK_MESSAGE(health_status(channel, why) == 2, why);  // NOT_SERVING
  check_metric(gw, "sparkgate_backend_healthy{backend=\"127.0.0.1:" + std::to_string(backend_port) +
                       "\",cluster=\"local\"}",
               0);

  fake = std::make_unique<FakeServer>(std::vector<std::string>{}, backend_port);
  CHECK(wait_until([&] { return http_get(admin, "/readyz").status == 200; }, 5s));
  CHECK_MESSAGE(health_status(channel, why) == 1, why);

  REQUIRE(kill(gw.pid(), SIGTERM) == 0);
  CHECK(wait_until([&] { return http_get(admin, "/readyz").status == 503; }, 2s));
  CHECK(http_get(admin, "/readyz").body == "not ready (draining)\n");
  CHECK(http_get(admin, "/healthz").status == 200);
}

TEST_CASE("DELETE /v1/sessions/{id} mid-stream: the stream ends, the backend is told, the next call is refused") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  const uint16_t admin = gw.admin_port();
  auto channel = make_channel(gw.address());

  CallOptions o;
  o.op_timeout = 20s;
  o.metadata = {{"x-fake-messages", "5"}, {"x-fake-stall-after", "1"}, {"x-fake-stall-ms", "15000"}};
  StreamingCall running(channel, method_path("ExecutePlan"), o);
  REQUIRE(running.write(execute_plan_request("del-1", "op-del")));
  REQUIRE(running.writes_done());
  REQUIRE(running.read().has_value());

  auto before = parse_object(http_get(admin, "/v1/sessions/del-1").body);
  CHECK(int_at(before, "rpcs_in_flight") == 1);
  CHECK(int_at(before, "operations_in_flight") == 1);

  const auto deleted_at = std::chrono::steady_clock::now();
  auto del = http_request(admin, "DELETE", "/v1/sessions/del-1");
  REQUIRE_MESSAGE(del.status == 200, del.body << del.error);
  auto closed = parse_object(del.body);
  CHECK(int_at(closed, "streams_reset") == 1);
  CHECK(str_at(closed, "user") == "alice");

  while (running.read()) {
  }
  auto r = running.finish();
  CHECK(std::chrono::steady_clock::now() - deleted_at < 5s);  // not the 15 s stall
  CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::NOT_FOUND, r.describe());
  CHECK_MESSAGE(r.status.error_message().find("closed by an operator") != std::string::npos, r.describe());
  // The backend saw its stream cancelled, and got a ReleaseSession for the session.
  CHECK(wait_until([&] { return fake_stats(fake).cancelled >= 1; }, 3s));
  CHECK(wait_until(
      [&] {
        return gw.stderr_text().find("released operator-closed session del-1 on backend " + fake.address()) !=
               std::string::npos;
      },
      3s));

  auto next = call(channel, "Config", {request_for("Config", "del-1")});
  CHECK_MESSAGE(next.status.error_code() == grpc::StatusCode::NOT_FOUND, next.describe());
  CHECK(next.status.error_message() ==
        "session del-1 was closed by an operator (sparkgate admin API); start a new Spark session");
  CHECK(http_get(admin, "/v1/sessions/del-1").status == 404);
  CHECK(http_request(admin, "DELETE", "/v1/sessions/del-1").status == 404);
  check_metric(gw, "sparkgate_sessions_closed_total{reason=\"closed_by_operator\"}", 1);
  check_metric(gw, "sparkgate_sessions{backend=\"" + fake.address() + "\",cluster=\"local\"}", 0);

  std::vector<json::object> ends;
  wait_until([&] { return !(ends = log_lines(gw, "session_end")).empty(); }, 3s);
  REQUIRE(ends.size() == 1);
  CHECK(str_at(ends[0], "session") == "del-1");
  CHECK(str_at(ends[0], "reason") == "closed_by_operator");
}

TEST_CASE("admin API: backends, drain and undrain, config without secrets, the bearer token") {
  if (direct_mode()) return;
  FakeServer fake;
  TempDir dir;
  GatewayOptions options = one_backend(fake.address());
  options.admin_token_file = dir.write("admin-token", "s3cret-admin-token\n");
  Gateway gw(options);
  const uint16_t admin = gw.admin_port();
  const std::string auth = "Authorization: Bearer s3cret-admin-token";

  CHECK(http_get(admin, "/v1/backends").status == 401);
  CHECK(http_request(admin, "GET", "/v1/backends", {"Authorization: Bearer wrong"}).status == 401);
  // Probes and scrapes stay open.
  CHECK(http_get(admin, "/readyz").status == 200);
  CHECK(http_get(admin, "/metrics").status == 200);

  auto list = http_request(admin, "GET", "/v1/backends", {auth});
  REQUIRE_MESSAGE(list.status == 200, list.body);
  auto backends = parse_object(list.body).at("backends").as_array();
  REQUIRE(backends.size() == 1);
  CHECK(str_at(backends[0].as_object(), "address") == fake.address());
  CHECK(backends[0].at("accepts_sessions").as_bool());

  auto drained = http_request(admin, "POST", "/v1/backends/" + fake.address() + "/drain", {auth});
  REQUIRE_MESSAGE(drained.status == 200, drained.body);
  auto channel = make_channel(gw.address());
  auto refused = call(channel, "Config", {request_for("Config", "new-while-drained")});
  CHECK_MESSAGE(refused.status.error_code() == grpc::StatusCode::UNAVAILABLE, refused.describe());
  CHECK(refused.status.error_message().find("draining") != std::string::npos);

  CHECK(http_request(admin, "POST", "/v1/backends/" + fake.address() + "/undrain", {auth}).status == 200);
  auto ok = call(channel, "Config", {request_for("Config", "after-undrain")});
  CHECK_MESSAGE(ok.status.ok(), ok.describe());
  CHECK(http_request(admin, "POST", "/v1/backends/10.1.1.1:1/drain", {auth}).status == 404);
  CHECK(http_request(admin, "GET", "/v1/backends/" + fake.address() + "/drain", {auth}).status == 405);

  auto cfg = http_request(admin, "GET", "/v1/config", {auth});
  REQUIRE_MESSAGE(cfg.status == 200, cfg.body);
  CHECK(cfg.body.find("s3cret-admin-token") == std::string::npos);
  auto c = parse_object(cfg.body);
  CHECK(str_at(c.at("admin").at("token").as_object(), "token") == "<redacted>");
  CHECK(str_at(c.at("clusters").at(0).as_object(), "name") == "local");
}

}  // namespace sparkgate::itest
