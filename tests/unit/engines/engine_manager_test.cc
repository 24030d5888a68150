// engines::EngineManager with a fake launcher: concurrent first sessions share one start,
// max_engines, idle stop, crash, start failure and timeout, cancel, admin stop.
#include "engines/engine_manager.h"

#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <map>
#include <set>
#include <thread>

using namespace sparkgate;
using namespace std::chrono_literals;
using engines::EngineAnswer;
using engines::EngineManager;
using engines::EngineProcess;
using engines::EngineTarget;

namespace {

// What the test controls of one fake engine.
struct FakeControl {
  std::atomic<bool> ready{false};
  std::atomic<bool> fail{false};
  std::atomic<bool> exited{false};
  std::atomic<bool> terminated{false};
  std::atomic<bool> killed{false};
  std::atomic<bool> exit_on_term{true};
  uint16_t port = 0;
  std::string token;
};

class FakeProcess final : public EngineProcess {
 public:
  explicit FakeProcess(std::shared_ptr<FakeControl> c) : c_(std::move(c)) {}
  Poll poll_ready(config::Endpoint& address, std::string& error) override {
    if (c_->fail) {
      error = "fake start failed";
      return Poll::kFailed;
    }
    if (!c_->ready) return Poll::kPending;
    address = {"127.0.0.1", c_->port};
    return Poll::kReady;
  }
  bool alive(std::string& why) override {
    if (c_->exited) why = "exited with 1";
    return !c_->exited;
  }
  void terminate() override {
    c_->terminated = true;
    if (c_->exit_on_term) c_->exited = true;
  }
  void kill() override {
    c_->killed = true;
    c_->exited = true;
  }
  int64_t pid() const override { return 4242; }

 private:
  std::shared_ptr<FakeControl> c_;
};

class FakeLauncher final : public engines::Launcher {
 public:
  std::unique_ptr<EngineProcess> launch(const engines::LaunchRequest& r, std::string&) override {
    std::lock_guard lock(mu);
    auto c = std::make_shared<FakeControl>();
    c->port = r.port;
    c->token = r.token;
    launched.push_back(c);
    return std::make_unique<FakeProcess>(c);
  }
  std::shared_ptr<FakeControl> at(size_t i) {
    std::lock_guard lock(mu);
    return i < launched.size() ? launched[i] : nullptr;
  }
  size_t count() {
    std::lock_guard lock(mu);
    return launched.size();
  }
  std::mutex mu;
  std::vector<std::shared_ptr<FakeControl>> launched;
};

struct Waiter final : engines::EngineWaiter {
  void on_engine(const grpcwire::Status& s, const EngineTarget* t) override {
    ++calls;
    status = s;
    if (t) target = *t;
  }
  int calls = 0;
  grpcwire::Status status;
  std::optional<EngineTarget> target;
};

struct Fixture {
  Fixture() {
    cluster.name = "e";
    cluster.engines = config::Engines{};
    cluster.engines->max_engines = 2;
    cluster.engines->idle_timeout = 300ms;
    cluster.engines->start_timeout = 5s;
    cluster.engines->stop_grace = 200ms;
    EngineManager::Hooks hooks;
    hooks.publish = [this](const std::string& c, const std::vector<config::Endpoint>& ready) {
      std::lock_guard lock(mu);
      published[c] = ready;
    };
    hooks.sessions = [this](const std::string&, const std::string& address) -> int64_t {
      std::lock_guard lock(mu);
      return sessions[address];
    };
    auto l = std::make_unique<FakeLauncher>();
    launcher = l.get();
    manager = std::make_unique<EngineManager>(std::move(l), std::move(hooks), nullptr, nullptr, 10ms);
  }
  EngineAnswer acquire(const std::string& key, Waiter& w) {
    return manager->acquire(cluster, key, w, io.get_executor());
  }
  // Runs the io_context until `done` holds (or 5 s passed).
  template <typename F>
  bool until(F done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.restart();
      io.run_for(5ms);
    }
    return true;
  }
  size_t published_count(const std::string& c) {
    std::lock_guard lock(mu);
    return published[c].size();
  }

  boost::asio::io_context io;
  // run_for waits its full slice instead of returning at once when nothing is queued.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard = boost::asio::make_work_guard(io);
  config::Cluster cluster;
  FakeLauncher* launcher = nullptr;
  std::mutex mu;
  std::map<std::string, std::vector<config::Endpoint>> published;
  std::map<std::string, int64_t> sessions;
  std::unique_ptr<EngineManager> manager;
};

}  // namespace

TEST_CASE("engines: share keys") {
  base::Principal p;
  p.user = "alice";
  p.groups = {"data", "ml"};
  p.tenant = "acme";
  CHECK(engines::share_key(config::Engines::Share::kUser, p) == "user:alice");
  CHECK(engines::share_key(config::Engines::Share::kGroup, p) == "group:data");
  CHECK(engines::share_key(config::Engines::Share::kTenant, p) == "tenant:acme");
  CHECK(engines::share_key(config::Engines::Share::kCluster, p) == "cluster");
  base::Principal none;
  none.user = "bob";
  CHECK(engines::share_key(config::Engines::Share::kGroup, none).empty());
  CHECK(engines::share_key(config::Engines::Share::kTenant, none).empty());
}

TEST_CASE("engines: grpc-timeout values") {
  CHECK(engines::parse_grpc_timeout("30S") == std::chrono::seconds(30));
  CHECK(engines::parse_grpc_timeout("1500m") == std::chrono::milliseconds(1500));
  CHECK(engines::parse_grpc_timeout("2M") == std::chrono::minutes(2));
  CHECK(engines::parse_grpc_timeout("1H") == std::chrono::hours(1));
  CHECK(engines::parse_grpc_timeout("7u") == std::chrono::microseconds(7));
  CHECK(engines::parse_grpc_timeout("9n") == std::chrono::nanoseconds(9));
  CHECK_FALSE(engines::parse_grpc_timeout("S"));
  CHECK_FALSE(engines::parse_grpc_timeout("12x"));
  CHECK_FALSE(engines::parse_grpc_timeout("123456789S"));
  CHECK_FALSE(engines::parse_grpc_timeout("-1S"));
}

TEST_CASE("engines: a waiter's own deadline ends its wait; the start goes on for the others") {
  Fixture f;
  Waiter impatient, patient;
  auto a = f.manager->acquire(f.cluster, "user:a", impatient, f.io.get_executor(),
                              std::chrono::steady_clock::now() + 50ms);
  REQUIRE(a.pending);
  f.acquire("user:a", patient);
  REQUIRE(f.until([&] { return impatient.calls == 1; }));
  CHECK(impatient.status.code == grpcwire::StatusCode::kDeadlineExceeded);
  CHECK(impatient.status.message.find("grpc-timeout") != std::string::npos);
  CHECK(patient.calls == 0);
  f.launcher->at(0)->ready = true;
  REQUIRE(f.until([&] { return patient.calls == 1; }));
  CHECK(patient.status.ok());
  CHECK(impatient.calls == 1);
  CHECK(f.launcher->count() == 1);
}

TEST_CASE("engines: tokens are 64 hex digits and differ") {
  auto a = engines::random_token(), b = engines::random_token();
  CHECK(a.size() == 64);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a != b);
  CHECK(engines::pick_free_port() != 0);
}

TEST_CASE("engines: concurrent first sessions share one start; later ones get it at once") {
  Fixture f;
  Waiter w1, w2, w3;
  auto a1 = f.acquire("user:alice", w1);
  auto a2 = f.acquire("user:alice", w2);
  REQUIRE(a1.pending);
  REQUIRE(a2.pending);
  REQUIRE(f.until([&] { return f.launcher->count() == 1; }));
  CHECK(w1.calls == 0);
  auto info = f.manager->list();
  REQUIRE(info.size() == 1);
  CHECK(info[0].state == "starting");
  f.launcher->at(0)->ready = true;
  REQUIRE(f.until([&] { return w1.calls == 1 && w2.calls == 1; }));
  CHECK(w1.status.ok());
  REQUIRE(w1.target);
  CHECK(w1.target->token == f.launcher->at(0)->token);
  CHECK(w2.target->address.to_string() == w1.target->address.to_string());
  CHECK(f.published_count("e") == 1);
  auto a3 = f.acquire("user:alice", w3);
  REQUIRE(a3.target);
  CHECK(a3.target->address.port == w1.target->address.port);
  CHECK(f.launcher->count() == 1);
  CHECK(f.manager->find("e", w1.target->address.to_string()));
  CHECK(f.manager->list()[0].state == "ready");
}

TEST_CASE("engines: max_engines refuses with RESOURCE_EXHAUSTED naming the limit") {
  Fixture f;
  Waiter w1, w2, w3;
  CHECK(f.acquire("user:a", w1).pending);
  CHECK(f.acquire("user:b", w2).pending);
  auto a = f.acquire("user:c", w3);
  CHECK_FALSE(a.pending);
  CHECK(a.status.code == grpcwire::StatusCode::kResourceExhausted);
  CHECK(a.status.message.find("engines.max_engines (2) of cluster 'e' reached") != std::string::npos);
  CHECK(f.manager->list().size() == 2);
}

TEST_CASE("engines: an engine without sessions stops after idle_timeout; one with sessions does not") {
  Fixture f;
  Waiter w1, w2;
  f.acquire("user:a", w1);
  f.acquire("user:b", w2);
  REQUIRE(f.until([&] { return f.launcher->count() == 2; }));
  f.launcher->at(0)->ready = true;
  f.launcher->at(1)->ready = true;
  REQUIRE(f.until([&] { return w1.calls == 1 && w2.calls == 1; }));
  {
    std::lock_guard lock(f.mu);
    f.sessions[w2.target->address.to_string()] = 1;
  }
  REQUIRE(f.until([&] { return f.launcher->at(0)->terminated.load(); }));
  REQUIRE(f.until([&] { return f.manager->list().size() == 1; }));
  CHECK(f.manager->list()[0].key == "user:b");
  CHECK_FALSE(f.launcher->at(1)->terminated);
  CHECK_FALSE(f.manager->find("e", w1.target->address.to_string()));
  CHECK(f.published_count("e") == 1);
}

TEST_CASE("engines: an engine that ignores SIGTERM is killed after stop_grace") {
  Fixture f;
  Waiter w;
  f.acquire("user:a", w);
  REQUIRE(f.until([&] { return f.launcher->count() == 1; }));
  f.launcher->at(0)->exit_on_term = false;
  f.launcher->at(0)->ready = true;
  REQUIRE(f.until([&] { return w.calls == 1; }));
  REQUIRE(f.manager->stop("user:a"));
  CHECK(f.launcher->at(0)->terminated);
  CHECK(f.manager->list().at(0).state == "stopping");
  REQUIRE(f.until([&] { return f.launcher->at(0)->killed.load(); }));
  REQUIRE(f.until([&] { return f.manager->list().empty(); }));
  CHECK_FALSE(f.manager->stop("user:a"));
}

TEST_CASE("engines: a crashed engine is forgotten and the next session starts a new one") {
  Fixture f;
  Waiter w1, w2;
  f.acquire("user:a", w1);
  REQUIRE(f.until([&] { return f.launcher->count() == 1; }));
  f.launcher->at(0)->ready = true;
  REQUIRE(f.until([&] { return w1.calls == 1; }));
  {
    std::lock_guard lock(f.mu);
    f.sessions[w1.target->address.to_string()] = 3;
  }
  f.launcher->at(0)->exited = true;
  REQUIRE(f.until([&] { return f.published_count("e") == 0; }));
  CHECK_FALSE(f.manager->find("e", w1.target->address.to_string()));
  auto a = f.acquire("user:a", w2);
  CHECK(a.pending);
  REQUIRE(f.until([&] { return f.launcher->count() == 2; }));
  f.launcher->at(1)->ready = true;
  REQUIRE(f.until([&] { return w2.calls == 1; }));
  CHECK(w2.target->token != w1.target->token);
  CHECK(w2.target->address.port != w1.target->address.port);
}

TEST_CASE("engines: a failed start fails every waiter; a start past start_timeout too") {
  Fixture f;
  Waiter w1, w2, w3;
  f.acquire("user:a", w1);
  f.acquire("user:a", w2);
  REQUIRE(f.until([&] { return f.launcher->count() == 1; }));
  f.launcher->at(0)->fail = true;
  REQUIRE(f.until([&] { return w1.calls == 1 && w2.calls == 1; }));
  CHECK(w1.status.code == grpcwire::StatusCode::kUnavailable);
  CHECK(w1.status.message.find("failed to start: fake start failed") != std::string::npos);
  CHECK_FALSE(w1.target);
  f.cluster.engines->start_timeout = 100ms;
  f.acquire("user:a", w3);
  REQUIRE(f.until([&] { return w3.calls == 1; }));
  CHECK(w3.status.message.find("did not become ready within engines.start_timeout (100ms)") != std::string::npos);
  REQUIRE(f.until([&] { return f.manager->list().empty(); }));
}

TEST_CASE("engines: a cancelled wait is never called; shutdown stops everything") {
  Fixture f;
  Waiter w1, w2;
  auto a = f.acquire("user:a", w1);
  f.acquire("user:a", w2);
  REQUIRE(a.pending);
  a.pending->cancel();
  REQUIRE(f.until([&] { return f.launcher->count() == 1; }));
  f.launcher->at(0)->ready = true;
  REQUIRE(f.until([&] { return w2.calls == 1; }));
  f.io.restart();
  f.io.run_for(100ms);  // anything posted has run
  CHECK(w1.calls == 0);
  f.manager->shutdown();
  CHECK(f.launcher->at(0)->terminated);
  CHECK(f.manager->list().empty());
  Waiter w3;
  auto late = f.acquire("user:b", w3);
  CHECK(late.status.code == grpcwire::StatusCode::kUnavailable);
}

// ---- Across replicas: a fake Redis shared by two managers ------------------------------

namespace {

struct FakeRedis {
  std::mutex mu;
  std::map<std::string, std::string> keys;
  std::map<std::string, std::map<std::string, std::chrono::steady_clock::time_point>> uses;
  std::string down;  // non-empty: every call fails with it
  std::set<uint16_t> refusing;  // engine ports that refuse connections
  std::string get(const std::string& k) {
    std::lock_guard lock(mu);
    return keys.count(k) ? keys[k] : "";
  }
};

// EngineCoordinator over FakeRedis; callbacks run on its own thread, never in the call.
class FakeCoordinator final : public engines::EngineCoordinator {
 public:
  FakeCoordinator(std::shared_ptr<FakeRedis> r, std::string replica)
      : r_(std::move(r)), replica_(std::move(replica)), guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~FakeCoordinator() override {
    guard_.reset();
    thread_.join();
  }
  void claim(const std::string& ck, const std::string& value, std::chrono::milliseconds, Reply cb) override {
    post([=, this] {
      if (!r_->down.empty()) return cb(std::nullopt, r_->down);
      if (r_->keys.count(ck)) return cb(r_->keys[ck], "");
      r_->keys[ck] = value;
      cb(std::nullopt, "");
    });
  }
  void get(const std::string& ck, Reply cb) override {
    post([=, this] {
      if (!r_->down.empty()) return cb(std::nullopt, r_->down);
      cb(r_->keys.count(ck) ? std::optional<std::string>(r_->keys[ck]) : std::nullopt, "");
    });
  }
  void put(const std::string& ck, const std::string& value, std::chrono::milliseconds) override {
    post([=, this] { r_->keys[ck] = value; });
  }
  void refresh(const std::string&, const std::string&, std::chrono::milliseconds) override {}
  void release(const std::string& ck, const std::string& value) override {
    post([=, this] {
      if (r_->keys.count(ck) && r_->keys[ck] == value) r_->keys.erase(ck);
    });
  }
  void use(const std::string& ck, std::chrono::milliseconds lease) override {
    post([=, this] { r_->uses[ck][replica_] = std::chrono::steady_clock::now() + lease; });
  }
  void users(const std::string& ck, std::function<void(int64_t, const std::string&)> cb) override {
    post([=, this] {
      if (!r_->down.empty()) return cb(0, r_->down);
      int64_t n = 0;
      for (const auto& [who, until] : r_->uses[ck])
        if (who != replica_ && until > std::chrono::steady_clock::now()) ++n;
      cb(n, "");
    });
  }
  void probe(const config::Endpoint& address, std::function<void(bool)> cb) override {
    post([=, this] { cb(r_->refusing.count(address.port) > 0); });
  }
  const std::string& replica() const override { return replica_; }
  std::string where() const override { return "Redis at fake:6379"; }

 private:
  template <typename F>
  void post(F f) {
    boost::asio::post(io_, [this, f = std::move(f)]() mutable {
      std::lock_guard lock(r_->mu);
      f();
    });
  }
  std::shared_ptr<FakeRedis> r_;
  std::string replica_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

// Two replicas (managers) over one fake Redis, each with its own launcher and sessions.
struct Replicas {
  Replicas() {
    cluster.name = "e";
    cluster.engines = config::Engines{};
    cluster.engines->max_engines = 2;
    cluster.engines->idle_timeout = 300ms;
    cluster.engines->start_timeout = 5s;
    cluster.engines->stop_grace = 200ms;
    for (int i = 0; i < 2; ++i) {
      EngineManager::Hooks hooks;
      hooks.sessions = [this, i](const std::string&, const std::string&) -> int64_t { return sessions[i].load(); };
      auto l = std::make_unique<FakeLauncher>();
      launcher[i] = l.get();
      manager[i] = std::make_unique<EngineManager>(std::move(l), std::move(hooks), nullptr, nullptr, 10ms,
                                                   std::make_unique<FakeCoordinator>(redis, "r" + std::to_string(i)));
    }
  }
  ~Replicas() {
    for (auto& m : manager) m.reset();
  }
  template <typename F>
  bool until(F done, std::chrono::milliseconds limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      io.restart();
      io.run_for(5ms);
    }
    return true;
  }
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard = boost::asio::make_work_guard(io);
  config::Cluster cluster;
  std::shared_ptr<FakeRedis> redis = std::make_shared<FakeRedis>();
  FakeLauncher* launcher[2] = {nullptr, nullptr};
  std::atomic<int64_t> sessions[2] = {0, 0};
  std::unique_ptr<EngineManager> manager[2];
};

}  // namespace

TEST_CASE("engines across replicas: the start is claimed once; the other replica routes to the owner's engine") {
  Replicas r;
  Waiter wa, wb;
  REQUIRE(r.manager[0]->acquire(r.cluster, "user:alice", wa, r.io.get_executor()).pending);
  REQUIRE(r.until([&] { return r.launcher[0]->count() == 1; }));
  CHECK(r.redis->get("e:user:alice") == "starting r0");
  REQUIRE(r.manager[1]->acquire(r.cluster, "user:alice", wb, r.io.get_executor()).pending);
  r.until([] { return false; }, 100ms);  // B polls a "starting" value
  CHECK(r.launcher[1]->count() == 0);
  CHECK(wb.calls == 0);
  r.launcher[0]->at(0)->ready = true;
  REQUIRE(r.until([&] { return wa.calls == 1 && wb.calls == 1; }));
  REQUIRE(wa.target);
  REQUIRE(wb.target);
  CHECK(wb.status.ok());
  CHECK(wb.target->address.to_string() == wa.target->address.to_string());
  CHECK(wb.target->token == wa.target->token);
  CHECK(r.launcher[1]->count() == 0);
  auto lb = r.manager[1]->list();
  REQUIRE(lb.size() == 1);
  CHECK(lb[0].remote);
  CHECK(lb[0].pid == 0);
  CHECK_FALSE(r.manager[0]->list()[0].remote);
  CHECK(r.manager[1]->find("e", wa.target->address.to_string()));
  // A later acquire on B finds it at once.
  Waiter wb2;
  CHECK(r.manager[1]->acquire(r.cluster, "user:alice", wb2, r.io.get_executor()).target);

  // B's sessions keep it in use: A's idle stop waits for B's use lease.
  r.sessions[1] = 1;
  r.until([] { return false; }, 600ms);
  CHECK(r.manager[0]->list().size() == 1);
  CHECK_FALSE(r.launcher[0]->at(0)->terminated);

  // The owner's engine crashes: A releases the key, B forgets its remote view.
  r.launcher[0]->at(0)->exited = true;
  REQUIRE(r.until([&] { return r.manager[0]->list().empty(); }));
  REQUIRE(r.until([&] { return r.manager[1]->list().empty(); }));
  CHECK(r.redis->get("e:user:alice").empty());
}

TEST_CASE("engines across replicas: a remote engine whose key changed, or that refuses connections, is a crash; the owner stops and releases") {
  Replicas r;
  Waiter wa, wb;
  r.manager[0]->acquire(r.cluster, "user:bob", wa, r.io.get_executor());
  REQUIRE(r.until([&] { return r.launcher[0]->count() == 1; }));
  r.launcher[0]->at(0)->ready = true;
  REQUIRE(r.until([&] { return wa.calls == 1; }));
  r.manager[1]->acquire(r.cluster, "user:bob", wb, r.io.get_executor());
  REQUIRE(r.until([&] { return wb.calls == 1; }));
  REQUIRE(wb.target);
  r.sessions[1] = 1;  // in use on B: only the changed key can end B's view
  r.until([] { return false; }, 400ms);
  REQUIRE(r.manager[1]->list().size() == 1);
  {
    std::lock_guard lock(r.redis->mu);
    r.redis->keys["e:user:bob"] = "ready 127.0.0.1:1 other-token";
  }
  REQUIRE(r.until([&] { return r.manager[1]->list().empty(); }));
  {
    std::lock_guard lock(r.redis->mu);
    r.redis->keys["e:user:bob"] = "ready " + wa.target->address.to_string() + " " + wa.target->token;
  }
  // Back on B; then the engine refuses connections (the key unchanged): gone on B too.
  Waiter wb3;
  REQUIRE(r.manager[1]->acquire(r.cluster, "user:bob", wb3, r.io.get_executor()).pending);
  REQUIRE(r.until([&] { return wb3.calls == 1 && r.manager[1]->list().size() == 1; }));
  {
    std::lock_guard lock(r.redis->mu);
    r.redis->refusing.insert(wa.target->address.port);
  }
  REQUIRE(r.until([&] { return r.manager[1]->list().empty(); }));
  CHECK(r.manager[0]->list().size() == 1);
  CHECK(r.manager[0]->stop("user:bob"));
  REQUIRE(r.until([&] { return r.redis->get("e:user:bob").empty(); }));
}

TEST_CASE("engines across replicas: Redis down is UNAVAILABLE naming Redis; nothing is launched") {
  Replicas r;
  r.redis->down = "connection refused";
  Waiter w;
  REQUIRE(r.manager[0]->acquire(r.cluster, "user:carol", w, r.io.get_executor()).pending);
  REQUIRE(r.until([&] { return w.calls == 1; }));
  CHECK(w.status.code == grpcwire::StatusCode::kUnavailable);
  CHECK(w.status.message.find("Redis at fake:6379") != std::string::npos);
  CHECK(w.status.message.find("connection refused") != std::string::npos);
  CHECK(r.launcher[0]->count() == 0);
  CHECK(r.manager[0]->list().empty());
}
