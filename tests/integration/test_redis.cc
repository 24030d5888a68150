// RedisClient and RedisAffinityStore against a real redis-server (started per test by
// start_redis()), and against raw TCP listeners that misbehave. These tests drive an
// io_context on the test thread; no gateway process is involved.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <boost/asio.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "redis/redis_client.h"
#include "routing/redis_store.h"

namespace asio = boost::asio;
using namespace sparkgate;
using namespace sparkgate::itest;
using routing::RedisAffinityStore;
using redis::RedisClient;
using redis::RedisReply;
using Type = RedisReply::Type;
using Clock = std::chrono::steady_clock;

namespace {

// Runs `io` until done() or `limit` passes; false on timeout.
bool run_until(asio::io_context& io, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 10s) {
  const auto until = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= until) return false;
    if (io.stopped()) io.restart();
    if (io.run_one_for(10ms) == 0) std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Runs `io` for `d` of wall time.
void run_for(asio::io_context& io, std::chrono::milliseconds d) {
  const auto until = Clock::now() + d;
  run_until(io, [&] { return Clock::now() >= until; }, d + 1s);
}

struct Outcome {
  bool done = false;
  RedisReply reply;
  std::string error;
};

RedisClient::Callback record(Outcome& out) {
  return [&out](const RedisReply& reply, const std::string& error) {
    out.done = true;
    out.reply = reply;
    out.error = error;
  };
}

Outcome run_command(asio::io_context& io, RedisClient& client, std::vector<std::string> args) {
  Outcome out;
  client.command(std::move(args), record(out));
  REQUIRE_MESSAGE(run_until(io, [&] { return out.done; }), "no callback within 10 s");
  return out;
}

config::Endpoint local(uint16_t port) { return config::Endpoint{"127.0.0.1", port}; }

config::Redis redis_config(uint16_t port, std::chrono::milliseconds timeout = 1000ms) {
  config::Redis cfg;
  cfg.address = local(port);
  cfg.key_prefix = "itest:";
  cfg.timeout = timeout;
  return cfg;
}

// A listening socket that completes TCP handshakes (the kernel does, from the backlog)
// but never reads or answers.
class SilentListener {
 public:
  explicit SilentListener(uint16_t port = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 64) == 0);
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// Accepts one connection on `io` and answers the first bytes it reads with `answer`.
class ScriptedServer {
 public:
  ScriptedServer(asio::io_context& io, std::string answer)
      : acceptor_(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        socket_(io),
        answer_(std::move(answer)) {
    acceptor_.async_accept(socket_, [this](const boost::system::error_code& ec) {
      if (ec) return;
      socket_.async_read_some(asio::buffer(buf_), [this](const boost::system::error_code& rec, size_t) {
        if (rec) return;
        asio::async_write(socket_, asio::buffer(answer_), [](const boost::system::error_code&, size_t) {});
      });
    });
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::socket socket_;
  std::string answer_;
  std::array<char, 4096> buf_{};
};

// The server's id for the client's connection: unchanged means no reconnect happened.
int64_t client_id(asio::io_context& io, RedisClient& client) {
  const Outcome id = run_command(io, client, {"CLIENT", "ID"});
  REQUIRE(id.error.empty());
  REQUIRE(id.reply.type == Type::kInteger);
  return id.reply.integer;
}

}  // namespace

TEST_CASE("redis client: commands and every reply type against redis-server") {
  auto redis = start_redis();
  asio::io_context io;
  RedisClient client(io.get_executor(), local(redis->port()), 2000ms);
  const int64_t id = client_id(io, client);

  Outcome pong = run_command(io, client, {"PING"});
  CHECK(pong.error.empty());
  CHECK(pong.reply.type == Type::kStatus);
  CHECK(pong.reply.str == "PONG");

  const std::string binary("va\r\nl\0ue", 8);
  CHECK(run_command(io, client, {"SET", "k", binary}).reply.str == "OK");
  Outcome got = run_command(io, client, {"GET", "k"});
  CHECK(got.reply.type == Type::kString);
  CHECK(got.reply.str == binary);

  CHECK(run_command(io, client, {"GET", "missing"}).reply.type == Type::kNil);

  Outcome incr = run_command(io, client, {"INCRBY", "n", "-5"});
  CHECK(incr.reply.type == Type::kInteger);
  CHECK(incr.reply.integer == -5);

  run_command(io, client, {"RPUSH", "list", "a", "", "c"});
  Outcome range = run_command(io, client, {"LRANGE", "list", "0", "-1"});
  REQUIRE(range.reply.type == Type::kArray);
  REQUIRE(range.reply.elements.size() == 3);
  CHECK(range.reply.elements[1].str.empty());
  CHECK(range.reply.elements[2].str == "c");
  CHECK(run_command(io, client, {"LRANGE", "nolist", "0", "-1"}).reply.elements.empty());

  // An error reply is a reply: the connection stays up.
  Outcome bad = run_command(io, client, {"NOSUCHCOMMAND", "x"});
  CHECK(bad.error.empty());
  CHECK(bad.reply.type == Type::kError);
  CHECK(bad.reply.str.rfind("ERR unknown command", 0) == 0);

  const std::string big = random_bytes(3 << 20, 7);
  CHECK(run_command(io, client, {"SET", "big", big}).reply.str == "OK");
  CHECK(run_command(io, client, {"GET", "big"}).reply.str == big);

  CHECK(client_id(io, client) == id);
}

TEST_CASE("redis client: 1000 pipelined commands are answered in order on one connection") {
  auto redis = start_redis();
  asio::io_context io;
  RedisClient client(io.get_executor(), local(redis->port()), 5000ms);
  const int64_t id = client_id(io, client);

  constexpr int kCommands = 1000;
  std::vector<std::string> answers;
  std::vector<std::string> errors;
  const auto start = Clock::now();
  for (int i = 0; i < kCommands; ++i) {
    std::vector<std::string> args = (i % 2 == 0) ? std::vector<std::string>{"ECHO", "m" + std::to_string(i)}
                                                  : std::vector<std::string>{"INCR", "counter"};
    client.command(std::move(args), [&answers, &errors](const RedisReply& r, const std::string& e) {
      if (!e.empty()) errors.push_back(e);
      answers.push_back(r.type == Type::kInteger ? "#" + std::to_string(r.integer) : r.str);
    });
  }
  REQUIRE(run_until(io, [&] { return answers.size() == kCommands; }));
  const auto elapsed = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  MESSAGE("1000 pipelined commands: " << elapsed << " ms");
  CHECK(errors.empty());
  for (int i = 0; i < kCommands; ++i) {
    const std::string want = (i % 2 == 0) ? "m" + std::to_string(i) : "#" + std::to_string(i / 2 + 1);
    REQUIRE_MESSAGE(answers[static_cast<size_t>(i)] == want, "reply " << i);
  }
  CHECK(client_id(io, client) == id);
}

TEST_CASE("redis client: callbacks are posted, and dropped once the client is destroyed") {
  auto redis = start_redis();
  asio::io_context io;

  SUBCASE("never run inside command()") {
    RedisClient client(io.get_executor(), local(redis->port()), 1000ms);
    client.close();
    Outcome out;
    client.command({"PING"}, record(out));
    CHECK_FALSE(out.done);
    REQUIRE(run_until(io, [&] { return out.done; }));
    CHECK(out.error == "closed");
  }
  SUBCASE("close() fails pending commands with \"closed\"") {
    RedisClient client(io.get_executor(), local(redis->port()), 5000ms);
    Outcome blocked;
    Outcome behind;
    client.command({"BLPOP", "nothing", "5"}, record(blocked));
    client.command({"PING"}, record(behind));
    run_for(io, 100ms);
    CHECK_FALSE(blocked.done);
    client.close();
    REQUIRE(run_until(io, [&] { return blocked.done && behind.done; }));
    CHECK(blocked.error == "closed");
    CHECK(behind.error == "closed");
    CHECK(blocked.reply.type == Type::kNil);
  }
  SUBCASE("destroying the client drops pending callbacks") {
    bool called = false;
    {
      RedisClient client(io.get_executor(), local(redis->port()), 5000ms);
      client.command({"BLPOP", "nothing", "5"}, [&](const RedisReply&, const std::string&) { called = true; });
      run_for(io, 100ms);
    }
    run_for(io, 200ms);
    CHECK_FALSE(called);
    // Nothing is left behind that keeps the loop busy.
    io.restart();
    const auto start = Clock::now();
    io.run_for(2s);
    CHECK(Clock::now() - start < 1500ms);
  }
  SUBCASE("a callback may destroy the client") {
    auto client = std::make_unique<RedisClient>(io.get_executor(), local(redis->port()), 1000ms);
    int calls = 0;
    client->command({"PING"}, [&](const RedisReply&, const std::string&) {
      ++calls;
      client.reset();
    });
    client->command({"PING"}, [&](const RedisReply&, const std::string&) { ++calls; });
    run_for(io, 300ms);
    CHECK(calls == 1);
    CHECK(client == nullptr);
  }
}

TEST_CASE("redis client: connection refused, and no new connect within 1 s of a failure") {
  const uint16_t port = free_port();
  asio::io_context io;
  RedisClient client(io.get_executor(), local(port), 300ms);

  Outcome first = run_command(io, client, {"PING"});
  CHECK(first.error == "connection refused");
  CHECK(first.reply.type == Type::kNil);

  // Something now listens there, but within the backoff the client does not try again.
  SilentListener listener(port);
  Outcome second = run_command(io, client, {"PING"});
  CHECK(second.error == "connection refused");

  // After the backoff the client connects again (and, the listener being silent, times
  // out: proof that it did connect).
  run_for(io, 1100ms);
  Outcome third = run_command(io, client, {"PING"});
  CHECK(third.error == "timed out after 300 ms");
}

TEST_CASE("redis client: a server that never answers times out every pending command") {
  SilentListener listener;
  asio::io_context io;
  RedisClient client(io.get_executor(), local(listener.port()), 200ms);

  std::vector<Outcome> outs(3);
  const auto start = Clock::now();
  for (auto& o : outs) client.command({"PING"}, record(o));
  REQUIRE(run_until(io, [&] { return outs[0].done && outs[1].done && outs[2].done; }));
  const auto elapsed = Clock::now() - start;
  MESSAGE("timed out after " << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                             << " ms (timeout 200 ms)");
  for (const auto& o : outs) CHECK(o.error == "timed out after 200 ms");
  CHECK(elapsed >= 190ms);

  // The next command reconnects (the timeout was not a connect failure) and times out too.
  Outcome again = run_command(io, client, {"PING"});
  CHECK(again.error == "timed out after 200 ms");
}

TEST_CASE("redis client: a malformed reply fails the command and drops the connection") {
  asio::io_context io;
  ScriptedServer server(io, "%1\r\n+a\r\n+b\r\n");  // a RESP3 map: not RESP2
  RedisClient client(io.get_executor(), local(server.port()), 1000ms);
  Outcome out = run_command(io, client, {"PING"});
  CHECK(out.error == "redis: malformed reply");
}

TEST_CASE("redis client: server killed mid-use fails pending commands; recovers after restart") {
  auto redis = start_redis();
  const uint16_t port = redis->port();
  asio::io_context io;
  RedisClient client(io.get_executor(), local(port), 5000ms);
  REQUIRE(run_command(io, client, {"SET", "before", "1"}).error.empty());

  Outcome blocked;
  Outcome behind;
  client.command({"BLPOP", "nothing", "4"}, record(blocked));
  client.command({"PING"}, record(behind));
  run_for(io, 100ms);
  REQUIRE_FALSE(blocked.done);
  redis->kill();
  REQUIRE(run_until(io, [&] { return blocked.done && behind.done; }, 3s));
  MESSAGE("pending command failed with: " << blocked.error);
  CHECK_FALSE(blocked.error.empty());
  CHECK(blocked.error == behind.error);

  Outcome down = run_command(io, client, {"PING"});
  CHECK(down.error == "connection refused");

  redis = start_redis(port);
  const auto restarted = Clock::now();
  Outcome up;
  REQUIRE(run_until(
      io,
      [&] {
        up = run_command(io, client, {"PING"});
        if (!up.error.empty()) run_for(io, 50ms);
        return up.error.empty();
      },
      5s));
  MESSAGE("usable again " << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted).count()
                          << " ms after the restart");
  CHECK(up.reply.str == "PONG");
  CHECK(run_command(io, client, {"GET", "before"}).reply.type == Type::kNil);  // a new, empty server
}

TEST_CASE("redis store: lookup, claim, ttl, refresh and erase") {
  auto redis = start_redis();
  asio::io_context io;
  RedisAffinityStore store(io.get_executor(), redis_config(redis->port()));
  RedisClient raw(io.get_executor(), local(redis->port()), 1000ms);

  auto lookup = [&](const std::string& key) {
    bool done = false;
    std::optional<std::string> backend;
    std::string error = "unset";
    store.lookup(key, [&](std::optional<std::string> b, const std::string& e) {
      done = true;
      backend = std::move(b);
      error = e;
    });
    REQUIRE(run_until(io, [&] { return done; }));
    CHECK(error.empty());
    return backend;
  };
  auto claim = [&](const std::string& key, const std::string& backend, std::chrono::milliseconds ttl) {
    bool done = false;
    std::string winner;
    std::string error = "unset";
    store.claim(key, backend, ttl, [&](const std::string& w, const std::string& e) {
      done = true;
      winner = w;
      error = e;
    });
    REQUIRE(run_until(io, [&] { return done; }));
    CHECK(error.empty());
    return winner;
  };
  auto ttl = [&](const std::string& key) {
    bool done = false;
    int64_t ms = 0;
    store.ttl(key, [&](int64_t t, const std::string& e) {
      done = true;
      ms = t;
      CHECK(e.empty());
    });
    REQUIRE(run_until(io, [&] { return done; }));
    return ms;
  };

  CHECK(lookup("s1") == std::nullopt);
  CHECK(ttl("s1") == -2);
  CHECK(claim("s1", "10.0.0.1:15002", 0ms) == "10.0.0.1:15002");
  CHECK(lookup("s1") == "10.0.0.1:15002");
  CHECK(run_command(io, raw, {"GET", "itest:session:s1"}).reply.str == "10.0.0.1:15002");
  CHECK(ttl("s1") == -1);
  // A second claim loses to the first and leaves it unchanged.
  CHECK(claim("s1", "10.0.0.2:15002", 5000ms) == "10.0.0.1:15002");
  CHECK(ttl("s1") == -1);

  SUBCASE("refresh sets and removes the TTL") {
    store.refresh("s1", 5000ms);
    const int64_t t = ttl("s1");
    CHECK(t > 4000);
    CHECK(t <= 5000);
    store.refresh("s1", 0ms);
    CHECK(ttl("s1") == -1);
  }
  SUBCASE("refresh keeps a short claim alive") {
    CHECK(claim("s2", "b", 200ms) == "b");
    store.refresh("s2", 3000ms);
    run_for(io, 400ms);
    CHECK(lookup("s2") == "b");
  }
  SUBCASE("erase forgets the session") {
    store.erase("s1");
    CHECK(lookup("s1") == std::nullopt);
    CHECK(ttl("s1") == -2);
    CHECK(claim("s1", "10.0.0.2:15002", 0ms) == "10.0.0.2:15002");
  }
  SUBCASE("a claim with a TTL expires") {
    CHECK(claim("short", "b1", 200ms) == "b1");
    const int64_t t = ttl("short");
    CHECK(t > 0);
    CHECK(t <= 200);
    run_for(io, 350ms);
    CHECK(lookup("short") == std::nullopt);
    CHECK(claim("short", "b2", 200ms) == "b2");
  }
}

TEST_CASE("redis store: two replicas racing to claim the same sessions see one winner") {
  auto redis = start_redis();
  constexpr int kSessions = 300;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  // Each replica is a thread with its own io_context and store, as two gateway processes
  // would be. Both claim every session, one round trip at a time, in opposite orders:
  // each wins its first sessions uncontested, and their claims meet head on midway.
  auto replica = [&](const std::string& backend, bool reverse, std::vector<std::string>& won,
                     int& errors) {
    asio::io_context io;
    RedisAffinityStore store(io.get_executor(), redis_config(redis->port(), 5000ms));
    bool warm = false;
    store.lookup("warm-up", [&](std::optional<std::string>, const std::string&) { warm = true; });
    run_until(io, [&] { return warm; });
    ++ready;
    while (!go) std::this_thread::yield();
    for (int n = 0; n < kSessions; ++n) {
      const int i = reverse ? kSessions - 1 - n : n;
      bool done = false;
      store.claim("race-" + std::to_string(i), backend, 10000ms,
                  [&](const std::string& winner, const std::string& error) {
                    done = true;
                    if (!error.empty()) ++errors;
                    won[static_cast<size_t>(i)] = winner;
                  });
      if (!run_until(io, [&] { return done; })) ++errors;
    }
  };
  std::vector<std::string> won_a(kSessions);
  std::vector<std::string> won_b(kSessions);
  int errors_a = 0;
  int errors_b = 0;
  std::thread ta([&] { replica("backend-a", false, won_a, errors_a); });
  std::thread tb([&] { replica("backend-b", true, won_b, errors_b); });
  while (ready < 2) std::this_thread::sleep_for(1ms);
  go = true;
  ta.join();
  tb.join();
  CHECK(errors_a == 0);
  CHECK(errors_b == 0);
  int wins_a = 0;
  for (size_t i = 0; i < kSessions; ++i) {
    REQUIRE_MESSAGE(won_a[i] == won_b[i], "session " << i);
    CHECK((won_a[i] == "backend-a" || won_a[i] == "backend-b"));
    if (won_a[i] == "backend-a") ++wins_a;
  }
  MESSAGE("replica a won " << wins_a << " of " << kSessions << " sessions");

  asio::io_context io;
  RedisAffinityStore store(io.get_executor(), redis_config(redis->port()));
  bool looked = false;
  std::optional<std::string> stored;
  store.lookup("race-0", [&](std::optional<std::string> v, const std::string&) {
    looked = true;
    stored = v;
  });
  REQUIRE(run_until(io, [&] { return looked; }));
  CHECK(stored == won_a[0]);
}

TEST_CASE("redis store: failures reach the callbacks") {
  const uint16_t port = free_port();
  asio::io_context io;
  RedisAffinityStore store(io.get_executor(), redis_config(port));
  bool looked = false;
  bool claimed = false;
  bool timed = false;
  store.lookup("s", [&](std::optional<std::string> v, const std::string& e) {
    looked = true;
    CHECK(v == std::nullopt);
    CHECK(e == "connection refused");
  });
  store.claim("s", "b", 0ms, [&](const std::string& w, const std::string& e) {
    claimed = true;
    CHECK(w.empty());
    CHECK(e == "connection refused");
  });
  store.refresh("s", 100ms);  // fire and forget: must not crash or call anything
  store.erase("s");
  store.ttl("s", [&](int64_t t, const std::string& e) {
    timed = true;
    CHECK(t == -2);
    CHECK(e == "connection refused");
  });
  REQUIRE(run_until(io, [&] { return looked && claimed && timed; }));
  store.close();
  bool after_close = false;
  store.lookup("s", [&](std::optional<std::string>, const std::string& e) {
    after_close = true;
    CHECK(e == "closed");
  });
  REQUIRE(run_until(io, [&] { return after_close; }));
}
