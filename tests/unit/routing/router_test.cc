#include "routing/router.h"

#include <doctest/doctest.h>

#include <map>

#include "config/config_loader.h"

using namespace sparkgate;

namespace {

std::shared_ptr<const config::Config> load(const std::string& clusters, const std::string& routes = "  - {cluster: c}\n") {
  auto r = config::load_config_string("listeners: [{address: 127.0.0.1:1}]\nclusters:\n" + clusters + "routes:\n" + routes,
                                      "r.yaml");
  for (const auto& e : r.errors) MESSAGE(e.to_string());
  REQUIRE(r.config);
  return r.config;
}

const spark::RpcInfo& rpc(const char* name) {
  return *spark::find_rpc_by_path(std::string("/spark.connect.SparkConnectService/") + name);
}

struct Call {
  grpcwire::Status status;
  routing::RouteDecision d;
  std::string backend() const { return d.backend ? d.backend->name() : "-"; }
};

Call route(routing::Router& router, const config::Config& cfg, const std::string& user, const std::string& session,
           const char* method = "Config") {
  spark::Envelope env;
  env.user_id = user;
  env.session_id = session;
  http2::HeaderMap headers;
  base::Principal p{user, {}, {}};
  Call c;
  c.status = router.route(cfg, {&rpc(method), &env, &headers, &p}, c.d);
  return c;
}

const char* kTwo = "  - name: c\n    backends: [{address: 127.0.0.1:2}, {address: 127.0.0.1:3}]\n";

}  // namespace

TEST_CASE("router: sessions spread by least_sessions and stay on their backend") {
  auto cfg = load(kTwo);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  std::map<std::string, std::string> first;
  std::map<std::string, int> per_backend;
  for (int i = 0; i < 1000; ++i) {
    auto c = route(router, *cfg, "u", "s" + std::to_string(i));
    REQUIRE(c.status.ok());
    first["s" + std::to_string(i)] = c.backend();
    per_backend[c.backend()]++;
  }
  CHECK(per_backend["127.0.0.1:2"] == 500);
  CHECK(per_backend["127.0.0.1:3"] == 500);
  for (const char* m : {"ExecutePlan", "AnalyzePlan", "AddArtifacts", "ArtifactStatus", "Interrupt",
                        "ReattachExecute", "ReleaseExecute", "FetchErrorDetails", "CloneSession", "GetStatus"}) {
    for (int i = 0; i < 1000; i += 97) {
      auto c = route(router, *cfg, "u", "s" + std::to_string(i), m);
      REQUIRE(c.status.ok());
      CHECK(c.backend() == first["s" + std::to_string(i)]);
    }
  }
  CHECK(router.sessions().size() == 1000);
  auto c = route(router, *cfg, "u", "s1", "ReleaseSession");
  router.session_released(c.d.session);
  CHECK(router.sessions().size() == 999);
}

TEST_CASE("router: deny routes and unmatched requests get PERMISSION_DENIED") {
  auto cfg = load(kTwo, "  - {match: {users: [mallory]}, deny: \"mallory is suspended\"}\n"
                        "  - {match: {users: [alice]}, cluster: c}\n");
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto c = route(router, *cfg, "mallory", "s");
  CHECK(c.status.code == grpcwire::StatusCode::kPermissionDenied);
  CHECK(c.status.message == "mallory is suspended");
  c = route(router, *cfg, "bob", "s");
  CHECK(c.status.code == grpcwire::StatusCode::kPermissionDenied);
  CHECK(c.status.message.find("'bob'") != std::string::npos);
  CHECK(route(router, *cfg, "alice", "s").status.ok());
}

TEST_CASE("router: an unhealthy backend takes no new sessions; its sessions get UNAVAILABLE, then lost") {
  auto cfg = load(kTwo);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto a = route(router, *cfg, "u", "on-a");
  auto b = route(router, *cfg, "u", "on-b");
  REQUIRE(a.backend() != b.backend());
  auto dead = a.d.backend;
  CHECK(dead->probe_failed(1, "connection refused"));
  for (int i = 0; i < 10; ++i) CHECK(route(router, *cfg, "u", "new" + std::to_string(i)).backend() == b.backend());
  auto again = route(router, *cfg, "u", "on-a");
  CHECK(again.status.code == grpcwire::StatusCode::kUnavailable);
  CHECK(again.status.message.find(dead->name()) != std::string::npos);
  CHECK(again.status.message.find("connection refused") != std::string::npos);
  // It comes back (a new epoch: it was unreachable, so it restarted): the old session is lost.
  CHECK(dead->probe_succeeded(1));
  auto lost = route(router, *cfg, "u", "on-a");
  CHECK(lost.status.code == grpcwire::StatusCode::kNotFound);
  CHECK(lost.status.message.find("was lost") != std::string::npos);
  CHECK(route(router, *cfg, "u", "on-a").status.code == grpcwire::StatusCode::kNotFound);  // stays ended
  CHECK(route(router, *cfg, "u", "on-b").status.ok());
  // New sessions use it again.
  int on_dead = 0;
  for (int i = 0; i < 10; ++i) on_dead += route(router, *cfg, "u", "later" + std::to_string(i)).backend() == dead->name();
  CHECK(on_dead > 0);
}

TEST_CASE("router: a changed server-side session id ends the session") {
  auto cfg = load(kTwo);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto c = route(router, *cfg, "u", "s");
  router.learn_server_side_session_id(c.d.session, "id-1");
  CHECK(route(router, *cfg, "u", "s").status.ok());
  router.learn_server_side_session_id(c.d.session, "id-2");
  auto after = route(router, *cfg, "u", "s");
  CHECK(after.status.code == grpcwire::StatusCode::kNotFound);
  CHECK(after.status.message.find("id-1 to id-2") != std::string::npos);
}

TEST_CASE("router: drained and full backends") {
  auto cfg = load("  - name: c\n    backends: [{address: 127.0.0.1:2, max_sessions: 2}, {address: 127.0.0.1:3, drain: true}]\n");
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  CHECK(route(router, *cfg, "u", "1").backend() == "127.0.0.1:2");
  CHECK(route(router, *cfg, "u", "2").backend() == "127.0.0.1:2");
  auto full = route(router, *cfg, "u", "3");
  CHECK(full.status.code == grpcwire::StatusCode::kResourceExhausted);
  CHECK(full.status.message.find("max_sessions") != std::string::npos);
  // Undrain by reload: the existing sessions keep their backend and the count carries over.
  auto cfg2 = load("  - name: c\n    backends: [{address: 127.0.0.1:2, max_sessions: 2}, {address: 127.0.0.1:3}]\n");
  backends.apply_config(cfg2);
  CHECK(route(router, *cfg2, "u", "3").backend() == "127.0.0.1:3");
  CHECK(route(router, *cfg2, "u", "1").backend() == "127.0.0.1:2");
  // Removing a backend ends its sessions with a clear error.
  auto cfg3 = load("  - name: c\n    backends: [{address: 127.0.0.1:3}]\n");
  backends.apply_config(cfg3);
  auto gone = route(router, *cfg3, "u", "1");
  CHECK(gone.status.code == grpcwire::StatusCode::kNotFound);
  CHECK(gone.status.message.find("no longer part of cluster 'c'") != std::string::npos);
  CHECK(route(router, *cfg3, "u", "3").status.ok());
}

TEST_CASE("router: two replicas with rendezvous placement agree without sharing state") {
  auto cfg = load("  - name: c\n    placement: rendezvous\n    backends: [{address: 127.0.0.1:2}, {address: 127.0.0.1:3}, {address: 127.0.0.1:4}]\n");
  routing::BackendRegistry b1, b2;
  b1.apply_config(cfg);
  b2.apply_config(cfg);
  routing::Router r1(b1), r2(b2);
  for (int i = 0; i < 300; ++i) {
    std::string s = "s" + std::to_string(i);
    auto x = route(r1, *cfg, "u", s);
    auto y = route(r2, *cfg, "u", s, i % 2 ? "ReattachExecute" : "ExecutePlan");
    CHECK(x.backend() == y.backend());
  }
}

TEST_CASE("router: calls that create no session are not registered") {
  auto cfg = load(kTwo);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto c = route(router, *cfg, "u", "unknown", "ReleaseSession");
  CHECK(c.status.ok());
  CHECK_FALSE(c.d.session);
  CHECK(router.sessions().size() == 0);
}

TEST_CASE("router: dns-discovered backends join and leave") {
  auto cfg = load("  - name: c\n    dns: spark.example:15002\n");
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  CHECK(route(router, *cfg, "u", "s0").status.code == grpcwire::StatusCode::kUnavailable);
  backends.apply_discovery("c", {{"10.0.0.1", 15002}, {"10.0.0.2", 15002}});
  auto s1 = route(router, *cfg, "u", "s1");
  REQUIRE(s1.status.ok());
  // The address of s1 disappears from DNS: s1 keeps it (drained), new sessions avoid it.
  std::string kept = s1.backend();
  std::string other = kept == "10.0.0.1:15002" ? "10.0.0.2" : "10.0.0.1";
  backends.apply_discovery("c", {{other, 15002}});
  CHECK(route(router, *cfg, "u", "s1").backend() == kept);
  for (int i = 0; i < 5; ++i) CHECK(route(router, *cfg, "u", "n" + std::to_string(i)).backend() == other + ":15002");
  // Once its last session is gone, it leaves the cluster.
  router.session_released(s1.d.session);
  backends.prune();
  CHECK_FALSE(backends.snapshot()->find("c", kept));
}

TEST_CASE("router: a backend that only stalled keeps its sessions; one that refused connections lost them") {
  auto cfg = load(kTwo);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto s = route(router, *cfg, "u", "s");
  auto b = s.d.backend;
  // Probe timeouts (a long GC pause, say): out, then back with the same epoch.
  CHECK_FALSE(b->probe_failed(2, "no answer to Health/Check: timed out after 400 ms"));
  CHECK(b->probe_failed(2, "no answer to Health/Check: timed out after 400 ms"));
  CHECK(route(router, *cfg, "u", "s").status.code == grpcwire::StatusCode::kUnavailable);
  CHECK_FALSE(b->probe_succeeded(2));
  CHECK(b->probe_succeeded(2));
  auto resumed = route(router, *cfg, "u", "s");
  CHECK(resumed.status.ok());
  CHECK(resumed.backend() == b->name());
  // Live traffic and probes count apart: two live failures and one probe failure with
  // thresholds of 3 eject nobody.
  CHECK_FALSE(b->report_failure(3, "Connection refused"));
  CHECK_FALSE(b->report_failure(3, "Connection refused"));
  CHECK_FALSE(b->probe_failed(3, "cannot connect: Connection refused"));
  CHECK(b->healthy.load());
  CHECK(b->report_failure(3, "Connection refused"));
  CHECK(b->probe_succeeded(1));
  auto lost = route(router, *cfg, "u", "s");
  CHECK(lost.status.code == grpcwire::StatusCode::kNotFound);
  CHECK(lost.status.message.find("refused connections") != std::string::npos);
}

TEST_CASE("router: panic routing: with no healthy backend, new and pinned sessions try the backends anyway") {
  const char* one = "  - name: c\n    backends: [{address: 127.0.0.1:2}]\n";
  auto cfg = load(one);
  routing::BackendRegistry backends;
  backends.apply_config(cfg);
  routing::Router router(backends);
  auto before = route(router, *cfg, "u", "before");
  REQUIRE(before.status.ok());
  auto b = before.d.backend;
  // The server goes away (refused: it restarted) and the probes eject it.
  CHECK(b->probe_failed(1, "cannot connect: Connection refused"));
  REQUIRE_FALSE(b->healthy.load());
  // A new session is placed on it anyway (the connect decides), and so is its next call.
  auto during = route(router, *cfg, "u", "during");
  REQUIRE(during.status.ok());
  CHECK(during.backend() == b->name());
  CHECK(route(router, *cfg, "u", "during").status.ok());
  // The session from before the outage is tried too: if the server restarted, its new
  // server-side session id ends it (a separate check).
  CHECK(route(router, *cfg, "u", "before").status.ok());
  // An RPC that creates no session, for an unknown session, is routed there as well.
  CHECK(route(router, *cfg, "u", "unknown", "ReleaseSession").backend() == b->name());
  // Back (a new epoch): the session made during the outage lives on the restarted server
  // and continues; the one from before is lost.
  CHECK(b->probe_succeeded(1));
  CHECK(route(router, *cfg, "u", "during").status.ok());
  auto lost = route(router, *cfg, "u", "before");
  CHECK(lost.status.code == grpcwire::StatusCode::kNotFound);
  CHECK(lost.status.message.find("was lost") != std::string::npos);
}

TEST_CASE("router: panic routing off, or only drained backends left: UNAVAILABLE at once") {
  SUBCASE("panic_routing: false") {
    auto cfg = load("  - name: c\n    panic_routing: false\n    backends: [{address: 127.0.0.1:2}]\n");
    routing::BackendRegistry backends;
    backends.apply_config(cfg);
    routing::Router router(backends);
    auto s = route(router, *cfg, "u", "s");
    REQUIRE(s.status.ok());
    CHECK(s.d.backend->probe_failed(1, "cannot connect: Connection refused"));
    auto n = route(router, *cfg, "u", "new");
    CHECK(n.status.code == grpcwire::StatusCode::kUnavailable);
    CHECK(n.status.message.find("has no healthy backend") != std::string::npos);
    CHECK(route(router, *cfg, "u", "s").status.code == grpcwire::StatusCode::kUnavailable);
  }
  SUBCASE("an unhealthy backend that is also drained is not tried") {
    auto cfg = load("  - name: c\n    backends: [{address: 127.0.0.1:2, drain: true}, {address: 127.0.0.1:3}]\n");
    routing::BackendRegistry backends;
    backends.apply_config(cfg);
    routing::Router router(backends);
    auto snap = backends.snapshot();
    auto drained = snap->find("c", "127.0.0.1:2");
    auto other = snap->find("c", "127.0.0.1:3");
    REQUIRE(drained);
    REQUIRE(other);
    CHECK(drained->probe_failed(1, "timed out"));
    CHECK(other->probe_failed(1, "timed out"));
    for (int i = 0; i < 5; ++i) CHECK(route(router, *cfg, "u", "n" + std::to_string(i)).backend() == other->name());
    backends.drain_backend(other->name(), nullptr, true);
    CHECK(route(router, *cfg, "u", "x").status.code == grpcwire::StatusCode::kUnavailable);
  }
}
