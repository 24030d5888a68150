// `sparkgate --config FILE --check-config`: exit 0 on a valid file; exit 1 with
// "FILE:LINE: reason" on stderr for an invalid one.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "harness.h"

namespace sparkgate::itest {
namespace {

using CheckResult = RunResult;

CheckResult check_config(const TempDir& dir, const std::string& name, const std::string& yaml) {
  return run_to_exit(dir, name, {gateway_bin(), "--config", dir.write(name, yaml), "--check-config"});
}

const std::string kMinimal =
    "listeners:\n"
    "  - address: 127.0.0.1:15002\n"
    "clusters:\n"
    "  - name: local\n"
    "    backends:\n"
    "      - address: 127.0.0.1:15003\n"
    "routes:\n"
    "  - cluster: local\n";

}  // namespace

TEST_CASE("--check-config accepts valid files") {
  if (direct_mode()) return;
  TempDir dir;
  const CheckResult minimal = check_config(dir, "minimal.yaml", kMinimal);
  CHECK_MESSAGE(minimal.exit_code == 0, minimal.stderr_text);

  GatewayOptions options = one_backend("127.0.0.1:15003");
  options.backends.push_back("127.0.0.1:15004");
  options.max_message_bytes = 134217728;
  const CheckResult full = check_config(dir, "full.yaml", gateway_config_yaml(options, 15002, 9901));
  CHECK_MESSAGE(full.exit_code == 0, full.stderr_text);
}

TEST_CASE("--check-config rejects invalid files with FILE:LINE: reasons") {
  if (direct_mode()) return;
  TempDir dir;
  struct Case {
    std::string name;
    std::string yaml;
    std::string marker;  // text on the offending line
  };
  const std::vector<Case> cases = {
      {"unknown_key.yaml", kMinimal + "bogus_setting: 1\n", "bogus_setting"},
      {"unknown_nested_key.yaml",
       "listeners:\n  - address: 127.0.0.1:15002\n    adress_typo: x\n" + kMinimal.substr(kMinimal.find("clusters:")),
       "adress_typo"},
      {"unknown_cluster.yaml",
       kMinimal.substr(0, kMinimal.find("routes:")) + "routes:\n  - cluster: nope\n",
       "cluster: nope"},
      {"bad_listener_address.yaml",
       "listeners:\n  - address: 127.0.0.1:notaport\n" + kMinimal.substr(kMinimal.find("clusters:")), "notaport"},
      {"bad_backend_port.yaml",
       "listeners:\n  - address: 127.0.0.1:15002\nclusters:\n  - name: local\n    backends:\n"
       "      - address: 127.0.0.1:99999\nroutes:\n  - cluster: local\n",
       "99999"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const int line = line_of(c.yaml, c.marker);
    REQUIRE(line > 0);
    const CheckResult r = check_config(dir, c.name, c.yaml);
    const std::string expected = (dir.path() / c.name).string() + ":" + std::to_string(line) + ":";
    INFO("config:\n" << c.yaml << "stderr:\n" << r.stderr_text);
    CHECK(r.exit_code == 1);
    CHECK_MESSAGE(r.stderr_text.find(expected) != std::string::npos, "expected " << expected);
  }
}

}  // namespace sparkgate::itest
