#include "engines/engine_coordinator.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <future>
#include <utility>
#include <vector>

#include "redis/redis_client.h"

namespace sparkgate::engines {

namespace asio = boost::asio;
using redis::RedisReply;

namespace {

// Compare-and-act scripts: only the value's writer may extend or delete it.
constexpr const char* kRefreshScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
constexpr const char* kReleaseScript =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[2]) return redis.call('DEL', KEYS[1]) end "
    "return 0";
// Drops expired members, then counts the others (this replica excluded).
constexpr const char* kUsersScript =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) "
    "local n = redis.call('ZCARD', KEYS[1]) "
    "if redis.call('ZSCORE', KEYS[1], ARGV[2]) then n = n - 1 end return n";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string replica_name() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = 0;
  return std::string(host[0] ? host : "replica") + ":" + std::to_string(getpid());
}

}  // namespace

RedisEngineCoordinator::RedisEngineCoordinator(const config::Redis& cfg)
    : prefix_(cfg.key_prefix),
      address_(cfg.address.to_string()),
      replica_(replica_name()),
      timeout_(cfg.timeout),
      guard_(io_.get_executor()),
      client_(std::make_unique<redis::RedisClient>(io_.get_executor(), cfg.address, cfg.timeout)) {
  thread_ = std::thread([this] { io_.run(); });
}

RedisEngineCoordinator::~RedisEngineCoordinator() {
  // Replies come in order: once a PING is answered, everything sent before it was too.
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  send({"PING"}, [done](const std::string&, bool, const std::string&, int64_t) { done->set_value(); });
  f.wait_for(timeout_ + std::chrono::milliseconds(100));
  asio::post(io_, [this] { client_.reset(); });
  guard_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
  client_.reset();
}

void RedisEngineCoordinator::send(
    std::vector<std::string> args,
    std::function<void(const std::string& error, bool nil, const std::string& str, int64_t integer)> cb) {
  asio::post(io_, [this, args = std::move(args), cb = std::move(cb)]() mutable {
    if (!client_) return cb("closed", true, "", 0);
    std::string command = args.empty() ? "" : args[0];
    client_->command(std::move(args), [cb = std::move(cb), command](const RedisReply& r, const std::string& error) {
      if (!error.empty()) return cb(error, true, "", 0);
      if (r.type == RedisReply::Type::kError) return cb("redis: " + r.str, true, "", 0);
      cb("", r.type == RedisReply::Type::kNil, r.str, r.integer);
    });
  });
}

void RedisEngineCoordinator::claim(const std::string& ck, const std::string& value, std::chrono::milliseconds px,
                                   Reply cb) {
  send({"SET", engine_key(ck), value, "NX", "GET", "PX", std::to_string(std::max<int64_t>(1, px.count()))},
       [cb = std::move(cb)](const std::string& error, bool nil, const std::string& str, int64_t) {
         if (!error.empty()) return cb(std::nullopt, error);
         cb(nil ? std::nullopt : std::optional<std::string>(str), "");
       });
}

void RedisEngineCoordinator::get(const std::string& ck, Reply cb) {
  send({"GET", engine_key(ck)}, [cb = std::move(cb)](const std::string& error, bool nil, const std::string& str,
                                                      int64_t) {
    if (!error.empty()) return cb(std::nullopt, error);
    cb(nil ? std::nullopt : std::optional<std::string>(str), "");
  });
}

namespace {
std::function<void(const std::string&, bool, const std::string&, int64_t)> log_only(const char* what, std::string ck) {
  return [what, ck = std::move(ck)](const std::string& error, bool, const std::string&, int64_t) {
    if (!error.empty()) spdlog::warn("engines: redis {} of engine {} failed: {}", what, ck, error);
  };
}
}  // namespace

void RedisEngineCoordinator::put(const std::string& ck, const std::string& value, std::chrono::milliseconds px) {
  send({"SET", engine_key(ck), value, "PX", std::to_string(px.count())}, log_only("SET", ck));
}

void RedisEngineCoordinator::refresh(const std::string& ck, const std::string& value, std::chrono::milliseconds px) {
  send({"EVAL", kRefreshScript, "1", engine_key(ck), value, std::to_string(px.count())}, log_only("PEXPIRE", ck));
}

void RedisEngineCoordinator::release(const std::string& ck, const std::string& value) {
  send({"EVAL", kReleaseScript, "2", engine_key(ck), use_key(ck), value}, log_only("DEL", ck));
}

void RedisEngineCoordinator::use(const std::string& ck, std::chrono::milliseconds lease) {
  send({"ZADD", use_key(ck), std::to_string(now_ms() + lease.count()), replica_}, log_only("ZADD", ck));
  send({"PEXPIRE", use_key(ck), std::to_string(lease.count() * 2)}, log_only("PEXPIRE", ck));
}

void RedisEngineCoordinator::users(const std::string& ck, std::function<void(int64_t n, const std::string& error)> cb) {
  send({"EVAL", kUsersScript, "1", use_key(ck), std::to_string(now_ms()), replica_},
       [cb = std::move(cb)](const std::string& error, bool, const std::string&, int64_t n) {
         cb(error.empty() ? n : 0, error);
       });
}

void RedisEngineCoordinator::probe(const config::Endpoint& address, std::function<void(bool refused)> cb) {
  asio::post(io_, [this, address, cb = std::move(cb)]() mutable {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(address.host, ec);
    if (ec) return cb(false);  // a host name: not probed
    auto sock = std::make_shared<asio::ip::tcp::socket>(io_);
    auto timer = std::make_shared<asio::steady_timer>(io_, timeout_);
    timer->async_wait([sock](const boost::system::error_code& e) {
      if (!e) sock->close();
    });
    sock->async_connect({ip, address.port}, [sock, timer, cb = std::move(cb)](const boost::system::error_code& e) {
      timer->cancel();
      cb(e == asio::error::connection_refused);
    });
  });
}

}  // namespace sparkgate::engines
