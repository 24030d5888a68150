// Routing through the real gateway binary onto several fake backends: placement spread,
// stickiness of every RPC, route rules, health transitions, drain, expiry, backend
// restarts, reload under load and two replicas agreeing by rendezvous hashing.
//
// Each fake has its own random server_side_session_id, and puts it in every response;
// that is how a test tells which backend served a call.
#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "harness.h"
#include "spark/response_scanner.h"
#include "spark/rpc.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

// The server_side_session_id in the first response message of `r`, or "" if none.
std::string ssid_of(const CallResult& r, std::string_view rpc) {
  if (r.responses.empty()) return "";
  const auto* info = spark::find_rpc_by_path(method_path(rpc));
  if (!info) return "";
  const auto& msg = r.responses.front();
  spark::ResponseScanner scan(*info, msg.size());
  scan.feed({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
  return std::string(scan.server_side_session_id());
}

std::string config_request(const std::string& session, const std::string& user) {
  sparkgate::view::ConfigRequest req;
  req.set_session_id(session);
  req.mutable_user_context()->set_user_id(user);
  req.set_client_type("itest");
  return req.SerializeAsString();
}

// The backend (its server-side session id) that serves `session` of `user`, by a Config call.
struct Served {
  ::grpc::Status status;
  std::string ssid;
};
Served config_call(const std::shared_ptr<::grpc::Channel>& ch, const std::string& session,
                   const std::string& user = "alice", const CallOptions& options = {}) {
  auto r = call(ch, "Config", {config_request(session, user)}, options);
  return {r.status, ssid_of(r, "Config")};
}

// Each fake's id, asked directly.
std::string ssid_of_fake(const FakeServer& f) {
  auto s = config_call(make_channel(f.address()), "probe");
  REQUIRE(s.status.ok());
  return s.ssid;
}

std::string cluster_yaml(const std::string& name, const std::vector<std::string>& backends,
                         const std::string& extra = "") {
  std::string y = "  - name: " + name + "\n" + extra + "    backends:\n";
  for (const auto& b : backends) y += "      - address: " + b + "\n";
  return y;
}

}  // namespace

TEST_CASE("routing: 1000 sessions spread evenly over three backends; every RPC sticks") {
  FakeServer a, b, c;
  std::map<std::string, std::string> name_of{{ssid_of_fake(a), "a"}, {ssid_of_fake(b), "b"}, {ssid_of_fake(c), "c"}};
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n" + cluster_yaml("spark", {a.address(), b.address(), c.address()}) +
                    "routes:\n  - cluster: spark\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  std::map<std::string, int> per_backend;
  std::map<std::string, std::string> home;
  for (int i = 0; i < 1000; ++i) {
    auto s = config_call(ch, "s" + std::to_string(i));
    REQUIRE(s.status.ok());
    REQUIRE(name_of.count(s.ssid));
    per_backend[name_of[s.ssid]]++;
    home["s" + std::to_string(i)] = s.ssid;
  }
  MESSAGE("placement spread: a=" << per_backend["a"] << " b=" << per_backend["b"] << " c=" << per_backend["c"]);
  for (const char* n : {"a", "b", "c"}) {
    CHECK(per_backend[n] >= 333);
    CHECK(per_backend[n] <= 334);
  }
  // Every RPC of a session reaches the session's backend.
  for (const auto& rpc : spark::all_rpcs()) {
    if (rpc.rpc == spark::Rpc::kReleaseSession) continue;  // last, below
    for (int i = 0; i < 1000; i += 111) {
      std::string sid = "s" + std::to_string(i);
      std::string name(rpc.name);
      CAPTURE(name);
      CAPTURE(sid);
      std::vector<std::string> reqs{request_for(rpc.name, sid)};
      if (rpc.rpc == spark::Rpc::kAddArtifacts) reqs.push_back(request_for(rpc.name, sid));
      auto r = call(ch, rpc.name, reqs);
      REQUIRE(r.status.ok());
      CHECK(ssid_of(r, rpc.name) == home[sid]);
    }
  }
  // ReleaseSession reaches the backend and ends the pin: the id may then start afresh.
  auto rel = call(ch, "ReleaseSession", {request_for("ReleaseSession", "s0")});
  REQUIRE(rel.status.ok());
  CHECK(ssid_of(rel, "ReleaseSession") == home["s0"]);
}

TEST_CASE("routing: rules by header and by user, deny, and no match") {
  FakeServer etl, adhoc;
  auto etl_id = ssid_of_fake(etl);
  auto adhoc_id = ssid_of_fake(adhoc);
  GatewayOptions o;
  o.backends = {etl.address()};
  o.clusters_yaml = "clusters:\n" + cluster_yaml("etl", {etl.address()}) + cluster_yaml("adhoc", {adhoc.address()}) +
                    "routes:\n"
                    "  - match: {users: [mallory]}\n    deny: \"mallory is suspended until Friday\"\n"
                    "  - match: {headers: {x-sparkgate-cluster: etl}}\n    cluster: etl\n"
                    "  - match: {users: [bob]}\n    cluster: etl\n"
                    "  - match: {users: [alice, carol]}\n    cluster: adhoc\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  CHECK(config_call(ch, "s1", "alice").ssid == adhoc_id);
  CHECK(config_call(ch, "s2", "bob").ssid == etl_id);
  CallOptions hdr;
  hdr.metadata = {{"x-sparkgate-cluster", "etl"}};
  CHECK(config_call(ch, "s3", "carol", hdr).ssid == etl_id);
  auto denied = config_call(ch, "s4", "mallory");
  CHECK(denied.status.error_code() == ::grpc::StatusCode::PERMISSION_DENIED);
  CHECK(denied.status.error_message() == "mallory is suspended until Friday");
  auto nomatch = config_call(ch, "s5", "dave");
  CHECK(nomatch.status.error_code() == ::grpc::StatusCode::PERMISSION_DENIED);
  CHECK(nomatch.status.error_message().find("'dave'") != std::string::npos);
  // A user cannot reach another user's session by its id: (user, session) is the key.
  CHECK(config_call(ch, "s2", "alice").ssid == adhoc_id);
}

TEST_CASE("routing: health checks eject a dead backend and bring it back; its old sessions are lost") {
  FakeServer a, b;
  const uint16_t a_port = a.port();
  auto a_id = ssid_of_fake(a);
  auto b_id = ssid_of_fake(b);
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n" +
                    cluster_yaml("spark", {a.address(), b.address()},
                                 "    health_check: {interval: 200ms, timeout: 100ms, unhealthy_threshold: 2, "
                                 "healthy_threshold: 2}\n") +
                    "routes:\n  - cluster: spark\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  std::string on_a, on_b;
  for (int i = 0; i < 10 && (on_a.empty() || on_b.empty()); ++i) {
    auto s = config_call(ch, "h" + std::to_string(i));
    REQUIRE(s.status.ok());
    (s.ssid == a_id ? on_a : on_b) = "h" + std::to_string(i);
  }
  REQUIRE(!on_a.empty());
  REQUIRE(!on_b.empty());

  const auto killed_at = std::chrono::steady_clock::now();
  a.process().stop(0ms);
  // The session on a: UNAVAILABLE naming a, both before and after the checker notices.
  CallOptions quick;
  quick.op_timeout = 10s;
  auto down = config_call(ch, on_a, "alice", quick);
  CHECK(down.status.error_code() == ::grpc::StatusCode::UNAVAILABLE);
  CHECK(down.status.error_message().find(a.address()) != std::string::npos);
  // The health checker ejects a (2 failed probes 200 ms apart); from then on the session
  // on a is told so, and new sessions all go to b.
  REQUIRE(wait_until(
      [&] {
        return config_call(ch, on_a, "alice", quick).status.error_message().find("unhealthy") != std::string::npos;
      },
      5s));
  const auto ejected_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at).count();
  MESSAGE("failover: new sessions avoid the dead backend " << ejected_ms << " ms after it died");
  for (int i = 0; i < 20; ++i) CHECK(config_call(ch, "new" + std::to_string(i)).ssid == b_id);
  auto unhealthy = config_call(ch, on_a, "alice", quick);
  CHECK(unhealthy.status.error_code() == ::grpc::StatusCode::UNAVAILABLE);
  CHECK(unhealthy.status.error_message().find("unhealthy") != std::string::npos);
  CHECK(config_call(ch, on_b).ssid == b_id);

  // Restart a on the same port: it is used again, and the old session is reported lost.
  FakeServer a2({}, a_port);
  auto a2_id = ssid_of_fake(a2);
  REQUIRE(wait_until(
      [&] {
        auto s = config_call(ch, "back-" + std::to_string(std::rand()));
        return s.status.ok() && s.ssid == a2_id;
      },
      5s));
  auto lost = config_call(ch, on_a);
  CHECK(lost.status.error_code() == ::grpc::StatusCode::NOT_FOUND);
  CHECK(lost.status.error_message().find("session " + on_a + " was lost") != std::string::npos);
  CHECK(config_call(ch, on_b).ssid == b_id);
}

TEST_CASE("routing: a backend restart between health checks is caught by its new server-side session id") {
  auto a = std::make_unique<FakeServer>();
  const uint16_t port = a->port();
  GatewayOptions o;
  o.backends = {a->address()};
  o.clusters_yaml = "clusters:\n" + cluster_yaml("spark", {a->address()}, "    health_check: {enabled: false}\n") +
                    "routes:\n  - cluster: spark\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(config_call(ch, "r1").status.ok());
  a.reset();
  a = std::make_unique<FakeServer>(std::vector<std::string>{}, port);
  // The first call after the restart reaches the new process (nothing told the gateway);
  // its answer carries another server-side session id, so the session ends there.
  config_call(ch, "r1");
  auto after = config_call(ch, "r1");
  CHECK(after.status.error_code() == ::grpc::StatusCode::NOT_FOUND);
  CHECK(after.status.error_message().find("server-side session id changed") != std::string::npos);
  CHECK(config_call(ch, "r2").status.ok());
}

TEST_CASE("routing: a drained backend keeps its sessions and takes no new ones") {
  FakeServer a, b;
  auto a_id = ssid_of_fake(a);
  auto b_id = ssid_of_fake(b);
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n" + cluster_yaml("spark", {a.address(), b.address()}) + "routes:\n  - cluster: spark\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  std::vector<std::string> on_a;
  for (int i = 0; i < 10; ++i) {
    auto s = config_call(ch, "d" + std::to_string(i));
    if (s.ssid == a_id) on_a.push_back("d" + std::to_string(i));
  }
  REQUIRE(on_a.size() == 5);
  gw.rewrite_config("clusters:\n  - name: spark\n    backends:\n      - {address: " + a.address() +
                        ", drain: true}\n      - {address: " + b.address() + "}\nroutes:\n  - cluster: spark\n",
                    "");
  REQUIRE(wait_until([&] { return gw.stderr_text().find("configuration reloaded") != std::string::npos; }, 5s));
  for (int i = 0; i < 20; ++i) CHECK(config_call(ch, "after" + std::to_string(i)).ssid == b_id);
  for (const auto& s : on_a) CHECK(config_call(ch, s).ssid == a_id);
}

TEST_CASE("routing: idle sessions are released on their backend and later calls say they expired") {
  FakeServer a;
  GatewayOptions o;
  o.backends = {a.address()};
  o.log_level = "debug";
  o.extra_yaml = "sessions:\n  idle_timeout: 400ms\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(config_call(ch, "idle-1").status.ok());
  REQUIRE(config_call(ch, "busy-1").status.ok());
  // Keep one session busy; let the other idle out.
  auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(config_call(ch, "busy-1").status.ok());
    std::this_thread::sleep_for(100ms);
  }
  auto expired = config_call(ch, "idle-1");
  CHECK(expired.status.error_code() == ::grpc::StatusCode::NOT_FOUND);
  CHECK(expired.status.error_message().find("session idle-1 expired") != std::string::npos);
  CHECK(expired.status.error_message().find("sessions.idle_timeout") != std::string::npos);
  // The gateway itself sent ReleaseSession, and the backend accepted it.
  CHECK(wait_until(
      [&] { return gw.stderr_text().find("released expired session idle-1 on backend " + a.address()) != std::string::npos; },
      3s));
  CHECK(config_call(ch, "busy-1").status.ok());
}

TEST_CASE("routing: reload under load loses no RPC") {
  FakeServer a, b, c;
  auto cfg = [&](bool with_c, const std::string& marker) {
    std::vector<std::string> backs{a.address(), b.address()};
    if (with_c) backs.push_back(c.address());
    return "clusters:\n" + cluster_yaml("spark", backs) + cluster_yaml("other" + marker, {c.address()}) +
           "routes:\n  - match: {users: [nobody-" + marker + "]}\n    cluster: other" + marker +
           "\n  - cluster: spark\n";
  };
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = cfg(false, "0");
  Gateway gw(o);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, warmed_up{0};
  std::vector<std::thread> load;
  std::mutex mu;
  std::string first_failure;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      auto ch = make_channel(gw.address());
      for (int i = 0; !stop; ++i) {
        // The same 50 sessions per thread stay in use across every reload. They are all
        // created before the first reload: a session created while backend c is in the
        // cluster could be placed on c, and is rightly lost when c leaves it.
        if (i == 50) ++warmed_up;
        std::string sid = "t" + std::to_string(t) + "-" + std::to_string(i % 50);
        auto r = call(ch, i % 3 ? "Config" : "ExecutePlan",
                      {i % 3 ? config_request(sid, "alice") : execute_plan_request(sid)});
        if (r.status.ok()) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard lock(mu);
          if (first_failure.empty()) first_failure = r.describe();
        }
      }
    });
  }
  const bool warm = wait_until([&] { return warmed_up.load() == 4; }, 60s);
  CHECK(warm);
  for (int k = 1; warm && k <= 10; ++k) {
    std::this_thread::sleep_for(200ms);
    gw.rewrite_config(cfg(k % 2 == 1, std::to_string(k)), "");
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : load) t.join();
  MESSAGE("reload under load: " << ok.load() << " RPCs ok, " << failed.load() << " failed, 10 reloads");
  CHECK(failed.load() == 0);
  CHECK(first_failure == "");
  CHECK(ok.load() > 100);
  auto err = gw.stderr_text();
  int reloads = 0;
  for (size_t p = err.find("configuration reloaded"); p != std::string::npos; p = err.find("configuration reloaded", p + 1)) ++reloads;
  CHECK(reloads >= 10);  // the file watcher may see a rename before the SIGHUP does
}

TEST_CASE("routing: an invalid config on reload keeps the old one serving") {
  FakeServer a;
  GatewayOptions o;
  o.backends = {a.address()};
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(config_call(ch, "k1").status.ok());
  gw.rewrite_config("clusters:\n  - name: local\n    backends: [{address: " + a.address() +
                        "}]\n    colour: blue\nroutes:\n  - cluster: nowhere\n",
                    "");
  REQUIRE(wait_until([&] { return gw.stderr_text().find("still running the previous configuration") != std::string::npos; }, 5s));
  auto err = gw.stderr_text();
  CHECK(err.find("sparkgate.yaml:") != std::string::npos);
  CHECK(err.find("unknown key 'colour'") != std::string::npos);
  CHECK(err.find("unknown cluster 'nowhere'") != std::string::npos);
  CHECK(config_call(ch, "k1").status.ok());
  CHECK(config_call(ch, "k2").status.ok());
  // A valid file again: reloaded; both outcomes are counted.
  gw.rewrite_config("clusters:\n" + cluster_yaml("local", {a.address()}) + "routes:\n  - cluster: local\n", "");
  REQUIRE(wait_until([&] { return gw.stderr_text().find("configuration reloaded") != std::string::npos; }, 5s));
  auto metrics = http_get(gw.admin_port(), "/metrics");
  CHECK(metrics.status == 200);
  // The file watcher can see a rename before the SIGHUP arrives: each change counts once
  // or twice, never zero times.
  auto count = [&](const std::string& result) {
    const std::string key = "sparkgate_config_reloads_total{result=\"" + result + "\"} ";
    auto at = metrics.body.find(key);
    return at == std::string::npos ? -1 : std::atoi(metrics.body.c_str() + at + key.size());
  };
  CHECK(count("failure") >= 1);
  CHECK(count("failure") <= 2);
  CHECK(count("success") >= 1);
  CHECK(count("success") <= 2);
}

TEST_CASE("routing: the config file is watched; a changed file reloads without a signal") {
  FakeServer a, b;
  auto b_id = ssid_of_fake(b);
  GatewayOptions o;
  o.backends = {a.address()};
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(config_call(ch, "w1").status.ok());
  gw.rewrite_config("clusters:\n" + cluster_yaml("only-b", {b.address()}) + "routes:\n  - cluster: only-b\n", "",
                    /*signal=*/false);
  REQUIRE(wait_until([&] { return gw.stderr_text().find("(the file changed)") != std::string::npos; }, 5s));
  CHECK(config_call(ch, "w2").ssid == b_id);
  // The session of the removed cluster gets a clear error.
  auto gone = config_call(ch, "w1");
  CHECK(gone.status.error_code() == ::grpc::StatusCode::NOT_FOUND);
  CHECK(gone.status.error_message().find("w1") != std::string::npos);
}

TEST_CASE("routing: two gateway replicas with rendezvous placement agree on every session") {
  FakeServer a, b, c;
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n" +
                    cluster_yaml("spark", {a.address(), b.address(), c.address()}, "    placement: rendezvous\n") +
                    "routes:\n  - cluster: spark\n";
  Gateway g1(o), g2(o);
  auto c1 = make_channel(g1.address());
  auto c2 = make_channel(g2.address());
  // One session whose calls alternate between the replicas.
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    auto s = config_call(i % 2 ? c2 : c1, "alternating");
    REQUIRE(s.status.ok());
    seen.insert(s.ssid);
  }
  CHECK(seen.size() == 1);
  // And 200 sessions, each started on one replica and continued on the other.
  std::map<std::string, int> spread;
  for (int i = 0; i < 200; ++i) {
    std::string sid = "r" + std::to_string(i);
    auto x = config_call(i % 2 ? c1 : c2, sid);
    auto y = call(i % 2 ? c2 : c1, "ExecutePlan", {execute_plan_request(sid)});
    REQUIRE(y.status.ok());
    CHECK(x.ssid == ssid_of(y, "ExecutePlan"));
    spread[x.ssid]++;
  }
  CHECK(spread.size() == 3);
}

}  // namespace sparkgate::itest

namespace sparkgate::itest {

TEST_CASE("routing: with sessions.store redis, replicas and a restarted gateway keep exact affinity") {
  auto redis = start_redis();
  FakeServer a, b, c;
  GatewayOptions o;
  o.backends = {a.address()};
  // round_robin on its own would send a session's calls through two replicas to two
  // different backends; the store must make them agree.
  o.clusters_yaml = "clusters:\n" +
                    cluster_yaml("spark", {a.address(), b.address(), c.address()}, "    placement: round_robin\n") +
                    "routes:\n  - cluster: spark\n";
  o.extra_yaml = "sessions:\n  store: redis\n  redis: {address: " + redis->address() + "}\n";
  std::map<std::string, std::string> home;
  {
    Gateway g1(o), g2(o);
    auto c1 = make_channel(g1.address());
    auto c2 = make_channel(g2.address());
    for (int i = 0; i < 60; ++i) {
      std::string sid = "x" + std::to_string(i);
      auto first = config_call(i % 2 ? c1 : c2, sid);
      REQUIRE(first.status.ok());
      home[sid] = first.ssid;
      for (int k = 0; k < 3; ++k) {
        auto again = config_call(k % 2 ? c1 : c2, sid);
        REQUIRE(again.status.ok());
        CHECK(again.ssid == home[sid]);
      }
    }
    std::set<std::string> used;
    for (const auto& [sid, ssid] : home) used.insert(ssid);
    CHECK(used.size() == 3);
  }
  // Both replicas are gone; a fresh one still knows every session's backend.
  Gateway g3(o);
  auto c3 = make_channel(g3.address());
  for (const auto& [sid, ssid] : home) CHECK(config_call(c3, sid).ssid == ssid);
}

TEST_CASE("routing: with the redis store down, sessions are placed locally and keep working") {
  auto redis = start_redis();
  const uint16_t redis_port = redis->port();
  redis->kill();
  FakeServer a;
  GatewayOptions o;
  o.backends = {a.address()};
  o.extra_yaml = "sessions:\n  store: redis\n  redis: {address: 127.0.0.1:" + std::to_string(redis_port) +
                 ", timeout: 200ms}\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  CHECK(config_call(ch, "no-redis").status.ok());
  CHECK(config_call(ch, "no-redis").status.ok());
  CHECK(gw.stderr_text().find("session store unavailable") != std::string::npos);
}

}  // namespace sparkgate::itest

namespace sparkgate::itest {

TEST_CASE("routing: a cluster's credentials replace the client's; other clusters pass the client's through") {
  FakeServer secured, open;
  setenv("SPARKGATE_ITEST_BACKEND_TOKEN", "backend-secret-1", 1);
  GatewayOptions o;
  o.backends = {secured.address()};
  o.clusters_yaml = "clusters:\n" +
                    cluster_yaml("secured", {secured.address()},
                                 "    credentials: {token_env: SPARKGATE_ITEST_BACKEND_TOKEN}\n") +
                    cluster_yaml("open", {open.address()}) +
                    "routes:\n  - match: {users: [alice]}\n    cluster: secured\n  - cluster: open\n";
  Gateway gw(o);
  unsetenv("SPARKGATE_ITEST_BACKEND_TOKEN");
  auto ch = make_channel(gw.address());
  CallOptions with_token;
  with_token.metadata = {{"authorization", "Bearer client-token"}, {"authentication", "Bearer scala-token"}};
  auto r = call(ch, "Config", {config_request("c1", "alice")}, with_token);
  REQUIRE(r.status.ok());
  CHECK(r.trailer("x-fake-authorization") == "Bearer backend-secret-1");
  auto s = call(ch, "Config", {config_request("c2", "bob")}, with_token);
  REQUIRE(s.status.ok());
  CHECK(s.trailer("x-fake-authorization") == "Bearer client-token");
  // The secret never reaches the log.
  CHECK(gw.stderr_text().find("backend-secret-1") == std::string::npos);
}

TEST_CASE("routing: dns discovery adds new addresses and drains vanished ones") {
  // Three fakes on one port at three loopback addresses stand for the pods behind a
  // headless Service; the hosts file stands for its DNS records.
  const uint16_t port = free_port();
  FakeServer p1({"--host", "127.0.0.11"}, port), p2({"--host", "127.0.0.12"}, port);
  auto id_of = [&](const std::string& host) {
    auto s = config_call(make_channel(host + ":" + std::to_string(port)), "probe");
    REQUIRE(s.status.ok());
    return s.ssid;
  };
  const auto id1 = id_of("127.0.0.11"), id2 = id_of("127.0.0.12");
  TempDir dir;
  const std::string hosts = dir.write("hosts", "127.0.0.11 spark.itest\n");
  GatewayOptions o;
  o.backends = {"127.0.0.11:" + std::to_string(port)};
  o.clusters_yaml = "clusters:\n  - name: pods\n    dns: spark.itest:" + std::to_string(port) +
                    "\n    dns_refresh: 100ms\nroutes:\n  - cluster: pods\n";
  o.extra_args = {"--hosts-file", hosts};
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  REQUIRE(wait_until([&] { return config_call(ch, "first").status.ok(); }, 5s));
  CHECK(config_call(ch, "first").ssid == id1);
  // A second pod appears: new sessions use it (least_sessions).
  dir.write("hosts", "127.0.0.11 spark.itest\n127.0.0.12 spark.itest\n");
  REQUIRE(wait_until([&] { return config_call(ch, "second-" + std::to_string(std::rand())).ssid == id2; }, 5s));
  // The first pod leaves DNS: its session keeps it, new sessions avoid it.
  dir.write("hosts", "127.0.0.12 spark.itest\n");
  std::this_thread::sleep_for(500ms);
  CHECK(config_call(ch, "first").ssid == id1);
  for (int i = 0; i < 10; ++i) CHECK(config_call(ch, "later" + std::to_string(i)).ssid == id2);
  // Once that session is released, the vanished address goes for good.
  REQUIRE(call(ch, "ReleaseSession", {request_for("ReleaseSession", "first")}).status.ok());
  std::this_thread::sleep_for(300ms);
  CHECK(config_call(ch, "first").ssid == id2);  // a new session with the old id
}

TEST_CASE("routing: TLS to the backends, verified against the cluster's CA") {
  TestPki pki;
  FakeServer tls_fake(pki.fake_args());
  GatewayOptions o;
  o.backends = {tls_fake.address()};
  const std::string tls_cluster = "    tls: {ca: " + pki.ca_cert + ", server_name: localhost}\n";
  o.clusters_yaml = "clusters:\n" + cluster_yaml("secure", {tls_fake.address()}, tls_cluster) +
                    cluster_yaml("wrong-ca", {tls_fake.address()},
                                 "    tls: {ca: " + pki.other_ca_cert + "}\n    health_check: {enabled: false}\n") +
                    "routes:\n  - match: {users: [mallory]}\n    cluster: wrong-ca\n  - cluster: secure\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  CallOptions twenty;
  twenty.metadata = {{"x-fake-messages", "20"}};
  auto ok = call(ch, "ExecutePlan", {execute_plan_request("t1")}, twenty);
  CHECK(ok.status.ok());
  CHECK(ok.responses.size() == 20);
  auto bad = config_call(ch, "t2", "mallory");
  CHECK(bad.status.error_code() == ::grpc::StatusCode::UNAVAILABLE);
  CHECK(bad.status.error_message().find("certificate verify failed") != std::string::npos);
}

}  // namespace sparkgate::itest

namespace sparkgate::itest {

TEST_CASE("routing: CloneSession places the clone on the source session's backend") {
  FakeServer a, b;
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n" + cluster_yaml("spark", {a.address(), b.address()}) + "routes:\n  - cluster: spark\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  auto src = config_call(ch, "src");
  REQUIRE(src.status.ok());
  // least_sessions would put the next new session on the other backend; clones must not.
  for (const std::string wanted : {"dst-1", ""}) {
    sparkgate::view::CloneSessionRequest req;
    req.set_session_id("src");
    req.mutable_user_context()->set_user_id("alice");
    if (!wanted.empty()) req.set_new_session_id(wanted);
    auto r = call(ch, "CloneSession", {req.SerializeAsString()});
    REQUIRE(r.status.ok());
    REQUIRE(r.responses.size() == 1);
    sparkgate::view::CloneSessionResponse resp;
    REQUIRE(resp.ParseFromString(r.responses[0]));
    const std::string clone = resp.new_session_id();
    REQUIRE(!clone.empty());
    if (!wanted.empty()) CHECK(clone == wanted);
    CHECK(config_call(ch, clone).ssid == src.ssid);
    CHECK(call(ch, "ExecutePlan", {execute_plan_request(clone)}).status.ok());
  }
  // And an unrelated new session does go to the other backend.
  CHECK(config_call(ch, "fresh").ssid != src.ssid);
}

}  // namespace sparkgate::itest

namespace sparkgate::itest {

TEST_CASE("routing: a new session whose backend cannot be reached is placed on another one") {
  FakeServer live;
  auto live_id = ssid_of_fake(live);
  const std::string dead = "127.0.0.1:" + std::to_string(free_port());
  GatewayOptions o;
  o.backends = {live.address()};
  // No health checks and no passive ejection: the dead backend stays "healthy", so
  // placement keeps choosing it, and every such session must move on its first call.
  o.clusters_yaml = "clusters:\n" +
                    cluster_yaml("spark", {dead, live.address()},
                                 "    health_check: {enabled: false, passive_failures: 0}\n") +
                    "routes:\n  - cluster: spark\n";
  o.log_level = "info";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  for (int i = 0; i < 10; ++i) {
    auto s = config_call(ch, "m" + std::to_string(i));
    CHECK(s.status.ok());
    CHECK(s.ssid == live_id);
  }
  CHECK(gw.stderr_text().find("placed on " + live.address() + " instead") != std::string::npos);
}

}  // namespace sparkgate::itest
