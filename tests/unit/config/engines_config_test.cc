// The engines: block of a cluster (docs/engines.md): defaults, every field, and the
// errors, each at its file:line.
#include <doctest/doctest.h>

#include "config/config_loader.h"
#include "config_errors.h"

using namespace sparkgate;
using namespace sparkgate::config;
using sparkgate::testing::all_errors;
using sparkgate::testing::has_error;

namespace {

std::string with_cluster(const std::string& cluster) {
  return "listeners:\n  - address: 127.0.0.1:15002\nclusters:\n" + cluster + "routes:\n  - cluster: e\n";
}

}  // namespace

TEST_CASE("engines: defaults") {
  auto r = load_config_string(with_cluster("  - name: e\n    engines: {}\n"), "c.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& c = r.config->clusters.at(0);
  REQUIRE(c.engines);
  CHECK(c.backends.empty());
  CHECK(c.engines->share == Engines::Share::kUser);
  CHECK(c.engines->launcher == Engines::Launcher::kLocal);
  CHECK(c.engines->master == "local[1]");
  CHECK(c.engines->spark_home.empty());
  CHECK(c.engines->max_engines == 10);
  CHECK(c.engines->idle_timeout == std::chrono::minutes(30));
  CHECK(c.engines->start_timeout == std::chrono::minutes(3));
  CHECK_FALSE(c.health_check.enabled);
}

TEST_CASE("engines: every field") {
  auto r = load_config_string(with_cluster(R"(  - name: e
    engines:
      share: tenant
      launcher: local
      local:
        spark_home: /opt/spark
        master: local[2]
        conf: {spark.driver.memory: 512m, spark.ui.enabled: "false"}
      max_engines: 3
      idle_timeout: 90s
      start_timeout: 2m
      stop_grace: 1s
  - name: f
    engines:
      share: cluster
      launcher: command
      command:
        argv: [/bin/launch, --flag]
)"),
                              "c.yaml");
  INFO(all_errors(r));
  REQUIRE(r.config);
  const auto& e = *r.config->clusters.at(0).engines;
  CHECK(e.share == Engines::Share::kTenant);
  CHECK(e.spark_home == "/opt/spark");
  CHECK(e.master == "local[2]");
  REQUIRE(e.conf.size() == 2);
  CHECK(e.conf[0] == std::pair<std::string, std::string>{"spark.driver.memory", "512m"});
  CHECK(e.max_engines == 3);
  CHECK(e.idle_timeout == std::chrono::seconds(90));
  CHECK(e.start_timeout == std::chrono::minutes(2));
  CHECK(e.stop_grace == std::chrono::seconds(1));
  const auto& f = *r.config->clusters.at(1).engines;
  CHECK(f.share == Engines::Share::kCluster);
  CHECK(f.launcher == Engines::Launcher::kCommand);
  CHECK(f.argv == std::vector<std::string>{"/bin/launch", "--flag"});
  CHECK(engine_share_name(f.share) == "cluster");
}

TEST_CASE("engines: errors name file, line and reason") {
  auto r = load_config_string(with_cluster(R"(  - name: a
    backends: [{address: "h:1"}]
    engines: {}
  - name: b
    engines:
      share: team
      launcher: yarn
  - name: c
    engines:
      launcher: command
  - name: d
    engines:
      launcher: command
      command: {argv: []}
      local: {master: "local[1]"}
  - name: e
    engines:
      local:
        conf: {spark.connect.authenticate.token: x}
        colour: red
      max_engines: 0
      idle_timeout: 10ms
      credentials: {}
)"),
                              "c.yaml");
  CHECK_FALSE(r.config);
  INFO(all_errors(r));
  CHECK(has_error(r, 6, "cluster 'a' has engines and backends; give either backends/dns or engines"));
  CHECK(has_error(r, 9, "engines share 'team' of cluster 'b' is not one of user, group, tenant, cluster"));
  CHECK(has_error(r, 10, "engines launcher 'yarn' of cluster 'b' is not one of local, command"));
  CHECK(has_error(r, 13, "with launcher: command needs command: {argv: [program, ...]}"));
  CHECK(has_error(r, 17, "engines command argv must name a program"));
  CHECK(has_error(r, 18, "local is only allowed with launcher: local"));
  CHECK(has_error(r, 22, "engines local conf must not set spark.connect.authenticate.token"));
  CHECK(has_error(r, 23, "unknown key 'colour' in engines local"));
  CHECK(has_error(r, 24, "engines max_engines must be between 1 and 100000 (got 0)"));
  CHECK(has_error(r, 25, "engines idle_timeout"));
  CHECK(has_error(r, 26, "unknown key 'credentials' in cluster engines"));
  for (const auto& e : r.errors) CHECK(e.to_string().rfind("c.yaml:", 0) == 0);
}
