// RedisQuotas against a real redis-server child (the Debian package redis-server).
// Without redis-server these tests fail: they do not skip.
#include "policy/redis_quotas.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "redis/redis_client.h"

extern char** environ;

using namespace sparkgate;
using namespace sparkgate::policy;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using redis::RedisClient;
using redis::RedisReply;

namespace {

// ---- a redis-server child (the idea of tests/integration/harness.cc, minimal) ----

std::string find_redis_server() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::istringstream in(path);
    std::string dir;
    while (std::getline(in, dir, ':')) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  dirs.push_back("/usr/bin");
  for (const auto& dir : dirs) {
    const fs::path candidate = fs::path(dir) / "redis-server";
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

uint16_t free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

bool answers_ping(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  static constexpr char kPing[] = "*1\r\n$4\r\nPING\r\n";
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, kPing, sizeof kPing - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof kPing - 1)) {
    char buf[64];
    while (got.size() < 7) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return got.rfind("+PONG\r\n", 0) == 0;
}

// redis-server on 127.0.0.1 and a kernel-chosen port, persistence off, its files in a
// fresh directory. Destroying it kills the server.
class RedisServer {
 public:
  RedisServer() {
    const std::string bin = find_redis_server();
    if (bin.empty()) throw std::runtime_error("redis-server not found on PATH or in /usr/bin (apt-get install redis-server)");
    std::string tmpl = (fs::temp_directory_path() / "sparkgate-quota-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    // A kernel-chosen port can be taken by someone else before redis binds it: retry.
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = free_port();
      spawn(bin);
      const auto until = std::chrono::steady_clock::now() + 10s;
      while (std::chrono::steady_clock::now() < until) {
        if (answers_ping(port_)) return;
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
      kill();
    }
    fs::remove_all(dir_);
    throw std::runtime_error("redis-server did not start");
  }
  ~RedisServer() {
    kill();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  void spawn(const std::string& bin) {
    const std::string log = (fs::path(dir_) / "redis.log").string();
    std::vector<std::string> args = {bin,    "--port",       std::to_string(port_), "--bind", "127.0.0.1",
                                     "--save", "",           "--appendonly",        "no",     "--dir",
                                     dir_,   "--logfile", log};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn redis-server failed");
  }

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

config::Redis redis_config(uint16_t port, const std::string& prefix = "test:") {
  config::Redis r;
  r.address = config::Endpoint{"127.0.0.1", port};
  r.key_prefix = prefix;
  r.timeout = 2000ms;
  return r;
}

// Runs the io_context until pred() or the timeout; returns pred()'s last answer. pred
// may have side effects: it is not called again after it returns true.
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    io.restart();
    io.run_for(5ms);
  }
}

void run_for(boost::asio::io_context& io, std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    io.restart();
    io.run_for(5ms);
  }
}

QuotaDecision request(boost::asio::io_context& io, RedisQuotas& q, const std::string& user, double rate,
                      uint32_t burst) {
  std::optional<QuotaDecision> d;
  q.try_request(user, rate, burst, [&](const QuotaDecision& x) { d = x; });
  REQUIRE(run_until(io, [&] { return d.has_value(); }));
  return *d;
}

struct Lease {
  QuotaDecision decision;
  std::string id;
};

Lease begin_op(boost::asio::io_context& io, RedisQuotas& q, const std::string& user, uint32_t max) {
  std::optional<Lease> l;
  q.try_begin_operation(user, max, [&](const QuotaDecision& d, const std::string& id) { l = Lease{d, id}; });
  REQUIRE(run_until(io, [&] { return l.has_value(); }));
  return *l;
}

QuotaDecision add_session(boost::asio::io_context& io, RedisQuotas& q, const std::string& user,
                          const std::string& session, uint32_t max, std::chrono::milliseconds ttl = 60s) {
  std::optional<QuotaDecision> d;
  q.try_add_session(user, session, max, ttl, [&](const QuotaDecision& x) { d = x; });
  REQUIRE(run_until(io, [&] { return d.has_value(); }));
  return *d;
}

RedisReply raw(boost::asio::io_context& io, RedisClient& c, std::vector<std::string> args) {
  std::optional<RedisReply> reply;
  std::string error;
  c.command(std::move(args), [&](const RedisReply& r, const std::string& e) {
    reply = r;
    error = e;
  });
  REQUIRE(run_until(io, [&] { return reply.has_value(); }));
  REQUIRE_MESSAGE(error.empty(), error);
  return *reply;
}

bool allowed_ok(const QuotaDecision& d) { return d.allowed && !d.store_failed; }
bool refused_ok(const QuotaDecision& d) { return !d.allowed && !d.store_failed; }

}  // namespace

TEST_CASE("RedisQuotas test needs redis-server") {
  // Fails, not skips, on a machine without it.
  REQUIRE_MESSAGE(!find_redis_server().empty(), "redis-server not found: apt-get install redis-server");
}

TEST_CASE("RedisQuotas rate limit: two replicas share one bucket") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas a(io.get_executor(), redis_config(server.port()));
  RedisQuotas b(io.get_executor(), redis_config(server.port()));

  // Refills one token per 100 s: nothing refills during the test.
  int admitted = 0;
  for (int i = 0; i < 6; ++i) {
    const QuotaDecision da = request(io, a, "alice", 0.01, 5);
    const QuotaDecision db = request(io, b, "alice", 0.01, 5);
    CHECK_FALSE(da.store_failed);
    CHECK_FALSE(db.store_failed);
    admitted += da.allowed + db.allowed;
  }
  CHECK(admitted == 5);
  CHECK(refused_ok(request(io, a, "alice", 0.01, 5)));
  CHECK(refused_ok(request(io, b, "alice", 0.01, 5)));
  // Another user has their own bucket.
  CHECK(allowed_ok(request(io, b, "bob", 0.01, 5)));

  // The bucket key expires once it would be full again: 5 tokens at 0.01/s = 500 s.
  RedisClient raw_client(io.get_executor(), config::Endpoint{"127.0.0.1", server.port()}, 2000ms);
  const RedisReply ttl = raw(io, raw_client, {"PTTL", a.rate_key("alice")});
  REQUIRE(ttl.type == RedisReply::Type::kInteger);
  CHECK(ttl.integer > 400000);
  CHECK(ttl.integer <= 500000);
}

TEST_CASE("RedisQuotas rate limit refills by the server's clock, burst 0 means ceil(rate)") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas a(io.get_executor(), redis_config(server.port()));
  RedisQuotas b(io.get_executor(), redis_config(server.port()));

  REQUIRE(allowed_ok(request(io, a, "carol", 5.0, 1)));
  // A token takes 200 ms to come back; check well inside that window.
  CHECK(refused_ok(request(io, b, "carol", 5.0, 1)));
  run_for(io, 450ms);
  CHECK(allowed_ok(request(io, b, "carol", 5.0, 1)));

  int n = 0;
  while (n < 10 && request(io, a, "dave", 0.001, 0).allowed) ++n;  // burst 0 → 1
  CHECK(n == 1);
  n = 0;
  while (n < 10 && request(io, a, "erin", 2.5, 0).allowed) ++n;  // burst 0 → 3
  CHECK(n == 3);
  // Unlimited asks nothing of Redis and is always allowed.
  for (int i = 0; i < 20; ++i) REQUIRE(allowed_ok(request(io, a, "dave", 0.0, 1)));
}

TEST_CASE("RedisQuotas callbacks are posted, never run inside the call") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas q(io.get_executor(), redis_config(server.port()));
  int called = 0;
  q.try_request("u", 0.0, 1, [&](const QuotaDecision&) { ++called; });  // needs no Redis
  q.try_begin_operation("u", 0, [&](const QuotaDecision&, const std::string&) { ++called; });
  q.try_add_session("u", "s", 0, 1s, [&](const QuotaDecision&) { ++called; });
  q.try_request("u", 1.0, 1, [&](const QuotaDecision&) { ++called; });
  CHECK(called == 0);
  REQUIRE(run_until(io, [&] { return called == 4; }));

  // A callback may call back into RedisQuotas.
  bool nested = false;
  q.try_request("v", 1.0, 2, [&](const QuotaDecision& d) {
    REQUIRE(d.allowed);
    q.try_request("v", 1.0, 2, [&](const QuotaDecision& d2) { nested = d2.allowed; });
  });
  CHECK(run_until(io, [&] { return nested; }));
}

TEST_CASE("RedisQuotas keys are safe for any user string") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas q(io.get_executor(), redis_config(server.port(), "gw:"));
  CHECK(q.rate_key("a:b") == "gw:quota:rate:613a62");
  CHECK(q.operations_key("a") == "gw:quota:ops:61");
  CHECK(q.sessions_key("") == "gw:quota:sessions:");
  CHECK(q.rate_key("a:b") != q.rate_key("a"));

  // Users that would collide if the key were prefix + user + ":" + ... do not.
  const std::string weird = std::string("x:rate:\0y\r\n", 11);
  REQUIRE(allowed_ok(request(io, q, "x", 0.001, 1)));
  CHECK(refused_ok(request(io, q, "x", 0.001, 1)));
  CHECK(allowed_ok(request(io, q, "x:rate", 0.001, 1)));
  CHECK(allowed_ok(request(io, q, weird, 0.001, 1)));
  CHECK(refused_ok(request(io, q, weird, 0.001, 1)));
}

TEST_CASE("RedisQuotas concurrency: two replicas share max, end frees a slot") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas a(io.get_executor(), redis_config(server.port()));
  RedisQuotas b(io.get_executor(), redis_config(server.port()));

  const Lease a1 = begin_op(io, a, "alice", 3);
  const Lease a2 = begin_op(io, a, "alice", 3);
  const Lease b1 = begin_op(io, b, "alice", 3);
  CHECK(allowed_ok(a1.decision));
  CHECK(allowed_ok(a2.decision));
  CHECK(allowed_ok(b1.decision));
  CHECK(std::set<std::string>{a1.id, a2.id, b1.id}.size() == 3);
  CHECK_FALSE(a1.id.empty());
  CHECK(a.held_leases() == 2);
  CHECK(b.held_leases() == 1);

  const Lease b2 = begin_op(io, b, "alice", 3);
  CHECK(refused_ok(b2.decision));
  CHECK(b2.id.empty());
  CHECK(refused_ok(begin_op(io, a, "alice", 3).decision));
  CHECK(allowed_ok(begin_op(io, a, "bob", 3).decision));

  a.end_operation("alice", a1.id);
  CHECK(a.held_leases() == 2);  // a2 and bob's
  const Lease b3 = begin_op(io, b, "alice", 3);
  CHECK(allowed_ok(b3.decision));
  CHECK(refused_ok(begin_op(io, a, "alice", 3).decision));

  // Ending twice, or with an empty id, frees nothing more.
  a.end_operation("alice", a1.id);
  a.end_operation("alice", "");
  CHECK(refused_ok(begin_op(io, b, "alice", 3).decision));

  // max 0: unlimited, not counted.
  const Lease unlimited = begin_op(io, a, "alice", 0);
  CHECK(allowed_ok(unlimited.decision));
  CHECK(unlimited.id.empty());
}

TEST_CASE("RedisQuotas concurrency: a crashed replica's leases expire") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas survivor(io.get_executor(), redis_config(server.port()));
  {
    RedisQuotas crashed(io.get_executor(), redis_config(server.port()), 1000ms);
    REQUIRE(allowed_ok(begin_op(io, crashed, "alice", 1).decision));
  }  // gone without end_operation: nobody renews its lease
  const auto crash = std::chrono::steady_clock::now();
  CHECK(refused_ok(begin_op(io, survivor, "alice", 1).decision));
  bool admitted = false;
  run_until(io, [&] {
    admitted = begin_op(io, survivor, "alice", 1).decision.allowed;
    if (!admitted) run_for(io, 50ms);
    return admitted;
  }, 5000ms);
  CHECK(admitted);
  // Not before the lease ran out (less a margin for the two clocks).
  CHECK(std::chrono::steady_clock::now() - crash >= 700ms);
}

TEST_CASE("RedisQuotas concurrency: renewal keeps a lease alive past its length") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas holder(io.get_executor(), redis_config(server.port()), 600ms);  // renews every 200 ms
  RedisQuotas other(io.get_executor(), redis_config(server.port()));
  const Lease l = begin_op(io, holder, "alice", 1);
  REQUIRE(allowed_ok(l.decision));

  for (int i = 0; i < 4; ++i) {
    run_for(io, 500ms);  // 2 s in all, more than three leases
    CHECK(refused_ok(begin_op(io, other, "alice", 1).decision));
  }

  // A lease that vanished (e.g. Redis lost it) is added back by the next renewal: the
  // operation is still running.
  RedisClient raw_client(io.get_executor(), config::Endpoint{"127.0.0.1", server.port()}, 2000ms);
  REQUIRE(raw(io, raw_client, {"DEL", holder.operations_key("alice")}).integer == 1);
  run_for(io, 400ms);
  CHECK(raw(io, raw_client, {"ZCARD", holder.operations_key("alice")}).integer == 1);
  CHECK(raw(io, raw_client, {"PTTL", holder.operations_key("alice")}).integer > 0);

  holder.end_operation("alice", l.id);
  CHECK(holder.held_leases() == 0);
  CHECK(allowed_ok(begin_op(io, other, "alice", 1).decision));

  // stop() stops renewing: the lease taken before it expires.
  REQUIRE(allowed_ok(begin_op(io, holder, "bob", 1).decision));
  holder.stop();
  CHECK(holder.held_leases() == 0);
  CHECK(run_until(io, [&] { return begin_op(io, other, "bob", 1).decision.allowed; }, 3000ms));
}

TEST_CASE("RedisQuotas survives a script cache flush (EVALSHA falls back to EVAL)") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas q(io.get_executor(), redis_config(server.port()));
  RedisClient raw_client(io.get_executor(), config::Endpoint{"127.0.0.1", server.port()}, 2000ms);
  REQUIRE(allowed_ok(request(io, q, "u", 0.001, 2)));
  REQUIRE(raw(io, raw_client, {"SCRIPT", "FLUSH"}).type == RedisReply::Type::kStatus);
  CHECK(allowed_ok(request(io, q, "u", 0.001, 2)));
  CHECK(refused_ok(request(io, q, "u", 0.001, 2)));
  REQUIRE(raw(io, raw_client, {"SCRIPT", "FLUSH"}).type == RedisReply::Type::kStatus);
  CHECK(allowed_ok(begin_op(io, q, "u", 1).decision));
  CHECK(allowed_ok(add_session(io, q, "u", "s1", 1)));
}

TEST_CASE("RedisQuotas sessions: at max, same session re-admitted, remove frees, ttl expires") {
  RedisServer server;
  boost::asio::io_context io;
  RedisQuotas a(io.get_executor(), redis_config(server.port()));
  RedisQuotas b(io.get_executor(), redis_config(server.port()));

  CHECK(allowed_ok(add_session(io, a, "alice", "s1", 2)));
  CHECK(allowed_ok(add_session(io, b, "alice", "s2", 2)));
  CHECK(refused_ok(add_session(io, a, "alice", "s3", 2)));
  CHECK(refused_ok(add_session(io, b, "alice", "s3", 2)));
  // A session already counted is admitted again, from any replica.
  CHECK(allowed_ok(add_session(io, a, "alice", "s1", 2)));
  CHECK(allowed_ok(add_session(io, b, "alice", "s1", 2)));
  CHECK(allowed_ok(add_session(io, b, "bob", "s3", 2)));

  a.remove_session("alice", "s1");
  // Same connection, so the ZREM is done before this script runs.
  CHECK(allowed_ok(add_session(io, a, "alice", "s3", 2)));
  CHECK(refused_ok(add_session(io, b, "alice", "s1", 2)));

  // Expiry: a session not refreshed within its ttl stops counting.
  REQUIRE(allowed_ok(add_session(io, a, "carol", "old", 1, 300ms)));
  CHECK(refused_ok(add_session(io, a, "carol", "new", 1, 300ms)));
  run_for(io, 500ms);
  CHECK(allowed_ok(add_session(io, a, "carol", "new", 1, 300ms)));

  // refresh_session pushes the expiry out.
  REQUIRE(allowed_ok(add_session(io, a, "dave", "kept", 1, 300ms)));
  a.refresh_session("dave", "kept", 60s);
  run_for(io, 600ms);
  CHECK(refused_ok(add_session(io, a, "dave", "other", 1, 300ms)));

  // ttl 0: never expires, and the key has no expiry.
  REQUIRE(allowed_ok(add_session(io, a, "erin", "forever", 1, 0ms)));
  RedisClient raw_client(io.get_executor(), config::Endpoint{"127.0.0.1", server.port()}, 2000ms);
  CHECK(raw(io, raw_client, {"PTTL", a.sessions_key("erin")}).integer == -1);
  CHECK(raw(io, raw_client, {"PTTL", a.sessions_key("alice")}).integer > 0);

  // max 0: unlimited, nothing recorded.
  CHECK(allowed_ok(add_session(io, a, "frank", "s", 0)));
  CHECK(raw(io, raw_client, {"EXISTS", a.sessions_key("frank")}).integer == 0);
}

TEST_CASE("RedisQuotas: Redis down means store_failed, allowed") {
  boost::asio::io_context io;
  SUBCASE("nothing listening") {
    RedisQuotas q(io.get_executor(), redis_config(free_port()));
    const QuotaDecision r = request(io, q, "alice", 1.0, 1);
    CHECK(r.store_failed);
    CHECK(r.allowed);
    CHECK_FALSE(r.error.empty());
    const Lease l = begin_op(io, q, "alice", 1);
    CHECK(l.decision.store_failed);
    CHECK(l.decision.allowed);
    CHECK(l.id.empty());
    CHECK(q.held_leases() == 0);
    const QuotaDecision s = add_session(io, q, "alice", "s", 1);
    CHECK(s.store_failed);
    CHECK(s.allowed);
  }
  SUBCASE("server killed while in use") {
    RedisServer server;
    RedisQuotas q(io.get_executor(), redis_config(server.port()));
    REQUIRE(allowed_ok(request(io, q, "alice", 0.001, 1)));
    REQUIRE(refused_ok(request(io, q, "alice", 0.001, 1)));
    server.kill();
    const QuotaDecision r = request(io, q, "alice", 0.001, 1);
    CHECK(r.store_failed);
    CHECK(r.allowed);
    CHECK_FALSE(r.error.empty());
  }
  SUBCASE("stop(): pending and later calls fail with \"closed\"") {
    RedisServer server;
    RedisQuotas q(io.get_executor(), redis_config(server.port()));
    std::optional<QuotaDecision> pending;
    q.try_request("alice", 1.0, 1, [&](const QuotaDecision& d) { pending = d; });
    q.stop();
    REQUIRE(run_until(io, [&] { return pending.has_value(); }));
    CHECK(pending->store_failed);
    CHECK(pending->allowed);
    CHECK(pending->error == "closed");
    const QuotaDecision later = add_session(io, q, "alice", "s", 1);
    CHECK(later.store_failed);
    CHECK(later.error == "closed");
  }
}

TEST_CASE("RedisQuotas: destruction drops pending callbacks unrun") {
  RedisServer server;
  boost::asio::io_context io;
  bool called = false;
  {
    RedisQuotas q(io.get_executor(), redis_config(server.port()));
    q.try_request("alice", 1.0, 1, [&](const QuotaDecision&) { called = true; });
    q.try_request("alice", 0.0, 1, [&](const QuotaDecision&) { called = true; });
  }
  run_for(io, 200ms);
  CHECK_FALSE(called);
}
