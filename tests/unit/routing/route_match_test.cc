#include "routing/route_match.h"

#include <doctest/doctest.h>

#include "config/config_loader.h"

using namespace sparkgate;

namespace {
std::shared_ptr<const config::Config> load(const std::string& routes) {
  auto r = config::load_config_string(R"(listeners: [{address: 127.0.0.1:1}]
clusters:
  - {name: etl, backends: [{address: 127.0.0.1:2}]}
  - {name: adhoc, backends: [{address: 127.0.0.1:3}]}
  - {name: default, backends: [{address: 127.0.0.1:4}]}
routes:
)" + routes,
                                      "r.yaml");
  for (const auto& e : r.errors) MESSAGE(e.to_string());
  REQUIRE(r.config);
  return r.config;
}

std::string pick(const config::Config& c, routing::RequestFacts f) {
  const auto* r = routing::match_route(c, f);
  if (!r) return "none";
  return r->deny ? "deny:" + *r->deny : r->cluster;
}
}  // namespace

TEST_CASE("routes: first match wins over users, groups, tenants, headers, client_type and rpc") {
  auto cfg = load(R"(  - match: {users: [mallory]}
    deny: "mallory is suspended"
  - match: {headers: {x-sparkgate-cluster: etl}}
    cluster: etl
  - match: {headers: {x-team: {regex: "data-.*"}}, rpc: [ExecutePlan]}
    cluster: etl
  - match: {groups: [analysts], tenants: [acme]}
    cluster: adhoc
  - match: {client_type: ".*scala.*"}
    cluster: adhoc
  - match: {users: [alice, bob]}
    cluster: default
)");
  http2::HeaderMap none;
  std::vector<std::string> no_groups;
  routing::RequestFacts f{"alice", &no_groups, "", "_SPARK_CONNECT_PYTHON", "Config", &none};
  CHECK(pick(*cfg, f) == "default");

  f.user = "mallory";
  CHECK(pick(*cfg, f) == "deny:mallory is suspended");

  http2::HeaderMap etl;
  etl.add("x-sparkgate-cluster", "etl");
  f.user = "carol";
  f.headers = &etl;
  CHECK(pick(*cfg, f) == "etl");

  http2::HeaderMap other;
  other.add("x-sparkgate-cluster", "etl2");  // exact match only
  f.headers = &other;
  CHECK(pick(*cfg, f) == "none");

  http2::HeaderMap team;
  team.add("x-team", "data-platform");
  f.headers = &team;
  f.rpc = "ExecutePlan";
  CHECK(pick(*cfg, f) == "etl");
  f.rpc = "Config";  // the rpc condition fails
  CHECK(pick(*cfg, f) == "none");
  team.set("x-team", "xdata-platform");  // regexes match the whole value
  f.rpc = "ExecutePlan";
  CHECK(pick(*cfg, f) == "none");

  std::vector<std::string> groups{"staff", "analysts"};
  f.headers = &none;
  f.groups = &groups;
  CHECK(pick(*cfg, f) == "none");  // the tenant condition fails
  f.tenant = "acme";
  CHECK(pick(*cfg, f) == "adhoc");

  f.groups = &no_groups;
  f.tenant = "";
  f.client_type = "spark-connect-scala/4.0";
  CHECK(pick(*cfg, f) == "adhoc");
}

TEST_CASE("routes: a route without match catches everything") {
  auto cfg = load("  - {match: {users: [x]}, cluster: etl}\n  - {cluster: default}\n");
  http2::HeaderMap none;
  routing::RequestFacts f{"anyone", nullptr, "", "", "Config", &none};
  CHECK(pick(*cfg, f) == "default");
  f.user = "x";
  CHECK(pick(*cfg, f) == "etl");
}
