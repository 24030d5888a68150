// TLS listeners: a throwaway CA and a `localhost` / 127.0.0.1 server certificate are made
// with the openssl CLI at test time. grpc++ clients with SslCredentials reach the fake
// through the TLS listener byte for byte; a plaintext client on the TLS port fails
// cleanly; --check-config loads the TLS material, not just the file names.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "harness.h"
#include "raw_h2.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;

GatewayOptions tls_gateway(const FakeServer& fake, const TestPki& pki) {
  GatewayOptions options = one_backend(fake.address());
  options.tls = ListenerTls{pki.server_cert, pki.server_key};
  return options;
}

}  // namespace

TEST_CASE("TLS listener: Config and a streaming ExecutePlan arrive intact") {
  if (direct_mode()) return;  // the fake speaks h2c only
  TestPki pki;
  FakeServer fake;
  Gateway gw(tls_gateway(fake, pki));
  auto channel = make_tls_channel(gw.address(), pki.ca_pem, "localhost");

  const std::string config_req = request_for("Config", "tls-config");
  CallOptions config_options;
  config_options.op_timeout = 10s;
  const CallResult c = call(channel, "Config", {config_req}, config_options);
  REQUIRE_MESSAGE(c.status.ok(), c.describe() << "\ngateway stderr:\n" << gw.stderr_text());
  REQUIRE(c.responses.size() == 1);
  view::ConfigResponse config_resp;
  REQUIRE(config_resp.ParseFromString(c.responses[0]));
  CHECK(config_resp.session_id() == "tls-config");
  CHECK(c.trailer("x-fake-method") == "Config");
  CHECK(c.trailer("x-fake-request-sha256") == sha256_hex(config_req));

  // A large plan (several TLS records and HTTP/2 frames) and several response messages.
  const std::string plan_req = execute_plan_request("tls-exec", "op-tls-exec", 300 * 1024);
  CallOptions options;
  options.op_timeout = 10s;
  options.metadata = {{"x-fake-messages", "6"}, {"x-fake-message-bytes", "70000"}};
  const CallResult r = call(channel, "ExecutePlan", {plan_req}, options);
  REQUIRE_MESSAGE(r.status.ok(), r.describe() << "\ngateway stderr:\n" << gw.stderr_text());
  CHECK_FALSE(r.hung);
  CHECK(r.trailer("x-fake-method") == "ExecutePlan");
  CHECK(r.trailer("x-fake-request-bytes") == std::to_string(plan_req.size()));
  CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(plan_req));
  REQUIRE(r.responses.size() == 6);
  const std::string pattern = fake_pattern(70000);
  for (size_t i = 0; i < r.responses.size(); ++i) {
    CAPTURE(i);
    view::ExecutePlanResponse msg;
    REQUIRE(msg.ParseFromString(r.responses[i]));
    CHECK(msg.session_id() == "tls-exec");
    CHECK(msg.operation_id() == "op-tls-exec");
    CHECK(msg.arrow_batch().row_count() == static_cast<int64_t>(i));
    CHECK(msg.arrow_batch().data() == pattern);
    CHECK(msg.has_result_complete() == (i + 1 == r.responses.size()));
  }
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("TLS listener: a plaintext client fails cleanly and TLS clients still work") {
  if (direct_mode()) return;
  TestPki pki;
  FakeServer fake;
  Gateway gw(tls_gateway(fake, pki));

  // h2c prior knowledge on the TLS port: the connection fails, promptly.
  const auto started = std::chrono::steady_clock::now();
  const RawH2Response raw =
      raw_h2_request(gw.port(), method_path("Config"), grpc_frame(request_for("Config", "h2c")),
                     {}, 8s);
  CHECK_FALSE_MESSAGE(raw.timed_out, "the gateway neither answered nor closed the connection");
  CHECK_MESSAGE(!raw.error.empty(), "a plaintext HTTP/2 request on a TLS port must fail");
  CHECK(raw.header_blocks == 0);
  CHECK(raw.get(":status").empty());
  CHECK(std::chrono::steady_clock::now() - started < 5s);

  // The same with grpc++ and insecure credentials: an error status, not a hang.
  auto plain = make_channel(gw.address());
  CallOptions quick;
  quick.op_timeout = 10s;
  const CallResult p = call(plain, "Config", {request_for("Config", "plain")}, quick);
  CHECK_FALSE(p.hung);
  CHECK_MESSAGE(p.status.error_code() == grpc::StatusCode::UNAVAILABLE, p.describe());
  CHECK(p.responses.empty());
  CHECK(p.trailer("x-fake-method").empty());

  // The gateway is still up and serves TLS clients on a fresh connection.
  REQUIRE_MESSAGE(gw.running(), gw.stderr_text());
  auto channel = make_tls_channel(gw.address(), pki.ca_pem, "localhost");
  const std::string req = request_for("ExecutePlan", "after-plain");
  CallOptions options;
  options.op_timeout = 10s;
  options.metadata = {{"x-fake-messages", "3"}};
  const CallResult r = call(channel, "ExecutePlan", {req}, options);
  CHECK_MESSAGE(r.status.ok(), r.describe() << "\ngateway stderr:\n" << gw.stderr_text());
  CHECK(r.responses.size() == 3);
  CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(req));
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("--check-config loads TLS material: mismatched key, missing cert") {
  if (direct_mode()) return;
  TestPki pki;
  TempDir dir;
  const uint16_t port = free_port();
  GatewayOptions options = one_backend("127.0.0.1:15003");

  SUBCASE("matching cert and key: valid") {
    options.tls = ListenerTls{pki.server_cert, pki.server_key};
    const std::string path = dir.write("good.yaml", gateway_config_yaml(options, port, 9901));
    const RunResult r = run_to_exit(dir, "good", {gateway_bin(), "--config", path, "--check-config"});
    CHECK_MESSAGE(r.exit_code == 0, r.stderr_text);
  }

  SUBCASE("a key that does not match the certificate") {
    options.tls = ListenerTls{pki.server_cert, pki.other_key};
    const std::string yaml = gateway_config_yaml(options, port, 9901);
    const std::string path = dir.write("mismatch.yaml", yaml);
    const RunResult r = run_to_exit(dir, "mismatch", {gateway_bin(), "--config", path, "--check-config"});
    INFO("config:\n" << yaml << "stderr:\n" << r.stderr_text);
    CHECK(r.exit_code == 1);
    CHECK(r.stderr_text.find(path) != std::string::npos);
    // OpenSSL itself reports "key values mismatch" when the key is loaded; the gateway's
    // own check says "does not match". Either names the problem.
    CHECK_MESSAGE((r.stderr_text.find("mismatch") != std::string::npos ||
                   r.stderr_text.find("does not match") != std::string::npos),
                  "the message should say that key and certificate do not match");
    CHECK(r.stderr_text.find(pki.other_key) != std::string::npos);
  }

  SUBCASE("a missing certificate file: FILE:LINE") {
    const std::string missing = (dir.path() / "no-such-cert.pem").string();
    options.tls = ListenerTls{missing, pki.server_key};
    const std::string yaml = gateway_config_yaml(options, port, 9901);
    const std::string path = dir.write("missing.yaml", yaml);
    const int line = line_of(yaml, "cert: " + missing);
    REQUIRE(line > 0);
    const RunResult r = run_to_exit(dir, "missing", {gateway_bin(), "--config", path, "--check-config"});
    INFO("config:\n" << yaml << "stderr:\n" << r.stderr_text);
    CHECK(r.exit_code == 1);
    const std::string expected = path + ":" + std::to_string(line) + ":";
    CHECK_MESSAGE(r.stderr_text.find(expected) != std::string::npos, "expected " << expected);
    CHECK(r.stderr_text.find("no-such-cert.pem") != std::string::npos);
  }
}

}  // namespace sparkgate::itest
