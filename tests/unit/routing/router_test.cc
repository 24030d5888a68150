#include "routing/router.h"

#include <doctest/doctest.h>

#include <map>

#include "config/config_loader.h"

using namespace sparkgate;

TEST_CASE("sessions stay on their backend and spread over the cluster") {
  auto r = config::load_config_string(R"(listeners: [{address: 127.0.0.1:1}]
clusters:
  - name: c
    backends: [{address: 127.0.0.1:2}, {address: 127.0.0.1:3}]
routes: [{cluster: c}]
)",
                                      "r.yaml");
  REQUIRE(r.config);
  routing::Router router;
  const auto* rpc = spark::find_rpc_by_path("/spark.connect.SparkConnectService/Config");
  http2::HeaderMap headers;
  std::map<std::string, std::string> first;
  std::map<std::string, int> per_backend;
  for (int i = 0; i < 20; ++i) {
    spark::Envelope env;
    env.user_id = "u";
    env.session_id = "s" + std::to_string(i);
    routing::RouteDecision d;
    REQUIRE(router.route(*r.config, *rpc, env, headers, d).ok());
    first[env.session_id] = d.backend.to_string();
    per_backend[d.backend.to_string()]++;
  }
  CHECK(per_backend["127.0.0.1:2"] == 10);
  CHECK(per_backend["127.0.0.1:3"] == 10);
  for (int i = 0; i < 20; ++i) {
    spark::Envelope env;
    env.user_id = "u";
    env.session_id = "s" + std::to_string(i);
    routing::RouteDecision d;
    REQUIRE(router.route(*r.config, *rpc, env, headers, d).ok());
    CHECK(d.backend.to_string() == first[env.session_id]);
  }
  CHECK(router.session_count() == 20);
  router.forget_session("u", "s0");
  CHECK(router.session_count() == 19);
}
