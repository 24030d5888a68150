#include "routing/redis_store.h"

#include <spdlog/spdlog.h>

#include <utility>
#include <vector>

namespace sparkgate::routing {

using redis::RedisReply;

namespace {

using Type = RedisReply::Type;

// The error text for a reply that is not what `command` returns.
std::string reply_error(const RedisReply& reply, const char* command) {
  if (reply.type == Type::kError) return "redis: " + reply.str;
  return std::string("redis: unexpected reply to ") + command;
}

void log_failure(const char* command, const std::string& key, const RedisReply& reply,
                 const std::string& error) {
  if (!error.empty()) {
    spdlog::debug("redis {} {} failed: {}", command, key, error);
  } else if (reply.type == Type::kError) {
    spdlog::debug("redis {} {} failed: {}", command, key, reply.str);
  }
}

}  // namespace

RedisAffinityStore::RedisAffinityStore(boost::asio::any_io_executor ex, const config::Redis& cfg)
    : prefix_(cfg.key_prefix + "session:"), client_(std::move(ex), cfg.address, cfg.timeout) {}

void RedisAffinityStore::lookup(
    const std::string& key,
    std::function<void(std::optional<std::string> backend, const std::string& error)> cb) {
  client_.command({"GET", redis_key(key)},
                  [cb = std::move(cb)](const RedisReply& reply, const std::string& error) {
                    if (!error.empty()) return cb(std::nullopt, error);
                    if (reply.type == Type::kNil) return cb(std::nullopt, "");
                    if (reply.type == Type::kString) return cb(reply.str, "");
                    cb(std::nullopt, reply_error(reply, "GET"));
                  });
}

void RedisAffinityStore::claim(
    const std::string& key, const std::string& backend, std::chrono::milliseconds ttl,
    std::function<void(const std::string& winner, const std::string& error)> cb) {
  std::vector<std::string> args = {"SET", redis_key(key), backend, "NX", "GET"};
  if (ttl.count() > 0) {
    args.push_back("PX");
    args.push_back(std::to_string(ttl.count()));
  }
  // With GET, SET answers the previous value (someone else's claim, left unchanged by
  // NX) or nil when the key was absent and ours is now stored.
  client_.command(std::move(args), [backend, cb = std::move(cb)](const RedisReply& reply,
                                                                 const std::string& error) {
    if (!error.empty()) return cb("", error);
    if (reply.type == Type::kNil) return cb(backend, "");
    if (reply.type == Type::kString) return cb(reply.str, "");
    cb("", reply_error(reply, "SET"));
  });
}

void RedisAffinityStore::refresh(const std::string& key, std::chrono::milliseconds ttl) {
  std::vector<std::string> args;
  if (ttl.count() > 0) {
    args = {"PEXPIRE", redis_key(key), std::to_string(ttl.count())};
  } else {
    args = {"PERSIST", redis_key(key)};
  }
  client_.command(std::move(args), [key](const RedisReply& reply, const std::string& error) {
    log_failure("refresh", key, reply, error);
  });
}

void RedisAffinityStore::erase(const std::string& key) {
  client_.command({"DEL", redis_key(key)},
                  [key](const RedisReply& reply, const std::string& error) {
                    log_failure("DEL", key, reply, error);
                  });
}

void RedisAffinityStore::ttl(const std::string& key,
                             std::function<void(int64_t ttl_ms, const std::string& error)> cb) {
  client_.command({"PTTL", redis_key(key)},
                  [cb = std::move(cb)](const RedisReply& reply, const std::string& error) {
                    if (!error.empty()) return cb(-2, error);
                    if (reply.type == Type::kInteger) return cb(reply.integer, "");
                    cb(-2, reply_error(reply, "PTTL"));
                  });
}

void RedisAffinityStore::close() { client_.close(); }

}  // namespace sparkgate::routing
