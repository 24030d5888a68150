#include "routing/session_registry.h"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

using namespace sparkgate;
using namespace sparkgate::routing;
using namespace std::chrono_literals;

namespace {
BackendPtr backend(const std::string& name) { return std::make_shared<BackendState>("c", config::Endpoint{name, 1}); }
}  // namespace

TEST_CASE("registry: a session is placed once and then found") {
  SessionRegistry reg;
  auto b = backend("a");
  auto now = Clock::now();
  int placed = 0;
  auto placer = [&](uint64_t& epoch) {
    ++placed;
    epoch = 7;
    return b;
  };
  auto f1 = reg.find_or_create("u", "s", "c", placer, now);
  REQUIRE(f1.session);
  CHECK(f1.session->backend_epoch == 7);
  auto f2 = reg.find_or_create("u", "s", "c", placer, now);
  CHECK(f2.session == f1.session);
  CHECK(placed == 1);
  CHECK(b->sessions.load() == 1);
  // Another user with the same session id is another session.
  auto f3 = reg.find_or_create("v", "s", "c", placer, now);
  CHECK(f3.session != f1.session);
  CHECK(placed == 2);
  CHECK(reg.size() == 2);
  // Without a placer an unknown session is not created.
  CHECK_FALSE(reg.find_or_create("w", "s", "c", nullptr, now).session);
}

TEST_CASE("registry: idle and lifetime expiry leave tombstones, in-flight sessions stay") {
  SessionRegistry reg;
  auto b = backend("a");
  auto t0 = Clock::now();
  auto placer = [&](uint64_t&) { return b; };
  auto idle = reg.find_or_create("u", "idle", "c", placer, t0).session;
  auto busy = reg.find_or_create("u", "busy", "c", placer, t0).session;
  auto fresh = reg.find_or_create("u", "fresh", "c", placer, t0).session;
  busy->in_flight = 1;
  fresh->touch(t0 + 50s);
  auto reaped = reg.reap(t0 + 61s, 60s, 0ms);
  REQUIRE(reaped.size() == 1);
  CHECK(reaped[0] == idle);
  CHECK(b->sessions.load() == 2);
  auto again = reg.find_or_create("u", "idle", "c", placer, t0 + 62s);
  CHECK_FALSE(again.session);
  REQUIRE(again.tombstone);
  CHECK(again.tombstone->reason == EndReason::kExpiredIdle);
  CHECK(again.tombstone->detail.find("idle for more than 60 s") != std::string::npos);
  CHECK(again.tombstone->detail.find("backend a:1") != std::string::npos);

  // Lifetime: even an active session goes once it is too old (unless an RPC is running).
  fresh->touch(t0 + 119s);
  busy->in_flight = 0;
  busy->touch(t0 + 119s);
  auto old = reg.reap(t0 + 121s, 60s, 120s);
  CHECK(old.size() == 2);
  auto t = reg.find_or_create("u", "fresh", "c", placer, t0 + 122s).tombstone;
  REQUIRE(t);
  CHECK(t->reason == EndReason::kExpiredLifetime);
  CHECK(reg.size() == 0);
  CHECK(b->sessions.load() == 0);
}

TEST_CASE("registry: release forgets without a tombstone; backend loss leaves one") {
  SessionRegistry reg;
  auto b = backend("a");
  auto now = Clock::now();
  auto placer = [&](uint64_t&) { return b; };
  reg.find_or_create("u", "s1", "c", placer, now);
  reg.find_or_create("u", "s2", "c", placer, now);
  CHECK(reg.end("u", "s1", EndReason::kReleased, {}, now));
  CHECK(reg.find_or_create("u", "s1", "c", placer, now).session);  // a new session may reuse the id
  reg.end("u", "s2", EndReason::kBackendLost, "was lost", now);
  auto f = reg.find_or_create("u", "s2", "c", placer, now);
  REQUIRE(f.tombstone);
  CHECK(f.tombstone->reason == EndReason::kBackendLost);
  // A tombstone older than its TTL is forgotten.
  CHECK(reg.find_or_create("u", "s2", "c", placer, now + SessionRegistry::kTombstoneTtl + 1s).session);
}

TEST_CASE("registry: the server-side session id is learned once; a change is reported") {
  Session s("u", "s", "c", backend("a"), 0, Clock::now());
  CHECK(s.learn_server_side_session_id("abc"));
  CHECK(s.learn_server_side_session_id("abc"));
  CHECK(s.learn_server_side_session_id(""));
  CHECK_FALSE(s.learn_server_side_session_id("def"));
  CHECK(s.server_side_session_id() == "abc");
}

TEST_CASE("registry: recent operations are remembered, bounded") {
  Session s("u", "s", "c", backend("a"), 0, Clock::now());
  for (size_t i = 0; i < Session::kMaxOperations + 10; ++i) s.add_operation("op" + std::to_string(i));
  CHECK_FALSE(s.has_operation("op0"));
  CHECK(s.has_operation("op" + std::to_string(Session::kMaxOperations + 9)));
}

TEST_CASE("registry: end listeners, created count, lookup by id, unplaced entries leave no tombstone") {
  SessionRegistry reg;
  auto b = backend("a");
  auto now = Clock::now();
  std::vector<std::pair<std::string, EndReason>> ended;
  reg.add_end_listener([&](const SessionPtr& s, EndReason r) { ended.emplace_back(s->session_id, r); });
  int second = 0;
  reg.add_end_listener([&](const SessionPtr&, EndReason) { ++second; });
  auto placer = [&](uint64_t&) { return b; };
  reg.find_or_create("u", "s1", "c", placer, now);
  reg.find_or_create("v", "s1", "c", placer, now);
  reg.find_or_create("u", "s2", "c", placer, now);
  CHECK(reg.created_total() == 3);
  CHECK(reg.find_by_id("s1").size() == 2);
  CHECK(reg.find_by_id("s3").empty());

  reg.end("u", "s2", EndReason::kUnplaced, {}, now);
  CHECK_FALSE(reg.find_or_create("u", "s2", "c", nullptr, now).tombstone);
  reg.end("u", "s1", EndReason::kClosedByOperator, "was closed by an operator", now);
  auto f = reg.find_or_create("u", "s1", "c", placer, now);
  REQUIRE(f.tombstone);
  CHECK(f.tombstone->reason == EndReason::kClosedByOperator);
  REQUIRE(ended.size() == 2);
  CHECK(ended[0] == std::make_pair(std::string("s2"), EndReason::kUnplaced));
  CHECK(ended[1] == std::make_pair(std::string("s1"), EndReason::kClosedByOperator));
  CHECK(second == 2);
  CHECK(std::string(end_reason_name(EndReason::kClosedByOperator)) == "closed_by_operator");
}

TEST_CASE("session: attached streams are listed until detached") {
  struct Dummy : SessionStream {
    void close_by_operator(const std::string&) override {}
  };
  Session s("u", "s", "c", backend("a"), 0, Clock::now());
  boost::asio::io_context io;
  auto d1 = std::make_shared<Dummy>();
  auto d2 = std::make_shared<Dummy>();
  auto id1 = s.attach_stream({io.get_executor(), d1});
  auto id2 = s.attach_stream({io.get_executor(), d2});
  CHECK(id1 != id2);
  CHECK(s.attached_streams().size() == 2);
  s.detach_stream(id1);
  auto left = s.attached_streams();
  REQUIRE(left.size() == 1);
  CHECK(left[0].stream.lock() == d2);
  s.set_tenant("acme");
  CHECK(s.tenant() == "acme");
}

TEST_CASE("registry: an ended entry is never found again; registries do not share entries") {
  auto b = backend("a");
  auto now = Clock::now();
  int placed = 0;
  auto placer = [&](uint64_t&) {
    ++placed;
    return b;
  };
  SessionRegistry reg;
  auto first = reg.find_or_create("u", "s", "c", placer, now).session;
  REQUIRE(first);
  CHECK(reg.find_or_create("u", "s", "c", placer, now).session == first);

  // Ended with a tombstone: the entry is not handed out any more; the tombstone is.
  CHECK(reg.end("u", "s", EndReason::kBackendLost, "lost", now) == first);
  auto after = reg.find_or_create("u", "s", "c", placer, now);
  CHECK_FALSE(after.session);
  REQUIRE(after.tombstone);
  CHECK(after.tombstone->reason == EndReason::kBackendLost);

  // Released (no tombstone) and created again: the new entry, not the old one.
  auto second = reg.find_or_create("u", "t", "c", placer, now).session;
  REQUIRE(second);
  reg.end("u", "t", EndReason::kReleased, "", now);
  auto third = reg.find_or_create("u", "t", "c", placer, now).session;
  REQUIRE(third);
  CHECK(third != second);
  CHECK(reg.find_or_create("u", "t", "c", placer, now).session == third);
  CHECK(reg.size() == 1);

  // Reaped: the same.
  auto reaped = reg.reap(now + 120s, 60s, 0ms);
  REQUIRE(reaped.size() == 1);
  CHECK(reaped[0] == third);
  CHECK_FALSE(reg.find_or_create("u", "t", "c", placer, now + 121s).session);

  // Another registry with the same key does not see this one's session.
  SessionRegistry other;
  auto in_other = other.find_or_create("u", "x", "c", nullptr, now);
  CHECK_FALSE(in_other.session);
  auto mine = reg.find_or_create("u", "x", "c", placer, now).session;
  REQUIRE(mine);
  CHECK_FALSE(other.find_or_create("u", "x", "c", nullptr, now).session);
  auto theirs = other.find_or_create("u", "x", "c", placer, now).session;
  REQUIRE(theirs);
  CHECK(theirs != mine);
  CHECK(reg.find_or_create("u", "x", "c", placer, now).session == mine);
  CHECK(other.find_or_create("u", "x", "c", placer, now).session == theirs);
  CHECK(placed == 5);  // s, t twice, x in each registry
}

TEST_CASE("registry: sessions found from many threads at once are one entry each") {
  SessionRegistry reg;
  auto b = backend("a");
  auto now = Clock::now();
  std::atomic<int> placed{0};
  auto placer = [&](uint64_t&) {
    placed.fetch_add(1);
    return b;
  };
  constexpr int kThreads = 4, kSessions = 200;
  std::vector<std::vector<SessionPtr>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < kSessions; ++i) {
          auto s = reg.find_or_create("u", "s" + std::to_string(i), "c", placer, now).session;
          if (round == 0) seen[t].push_back(s);
          else if (seen[t][i] != s) seen[t][i] = nullptr;  // a later round found another entry
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(placed.load() == kSessions);
  CHECK(reg.size() == kSessions);
  for (int i = 0; i < kSessions; ++i) {
    for (int t = 0; t < kThreads; ++t) {
      REQUIRE(seen[t][i]);
      CHECK(seen[t][i] == seen[0][i]);
    }
  }
}

TEST_CASE("registry: the server-side session id learned from several threads at once is one id") {
  Session s("u", "s", "c", backend("a"), 0, Clock::now());
  constexpr int kThreads = 4;
  std::vector<int> accepted(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) accepted[t] += s.learn_server_side_session_id("id-" + std::to_string(t)) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  int winners = 0;
  for (int t = 0; t < kThreads; ++t) {
    CHECK((accepted[t] == 0 || accepted[t] == 1000));
    if (accepted[t] == 1000) {
      ++winners;
      CHECK(s.server_side_session_id() == "id-" + std::to_string(t));
    }
  }
  CHECK(winners == 1);
}
