// Session → backend affinity kept in Redis (sessions.store: redis), so that every
// gateway replica sends a session to the same backend. Keys are
// `key_prefix + "session:" + key`; the value is the backend address.
//
// Threading: one store per worker thread, on that worker's executor; every call and
// callback on that thread. Owns one RedisClient (one pipelined connection). Callbacks
// follow RedisClient's rules: always posted, never run after the store is destroyed.
// Errors are RedisClient's texts, or "redis: " + the server's error reply, or
// "redis: unexpected reply to CMD".
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "config/config.h"
#include "redis/redis_client.h"

namespace sparkgate::routing {

class RedisAffinityStore {
 public:
  RedisAffinityStore(boost::asio::any_io_executor ex, const config::Redis& cfg);

  // The backend stored for `key`: cb(backend, "") or cb(nullopt, "") if there is none;
  // on failure cb(nullopt, error).
  void lookup(const std::string& key,
              std::function<void(std::optional<std::string> backend, const std::string& error)> cb);
  // Stores key → backend unless the key exists (SET NX GET, Redis >= 7.0), with a TTL
  // of `ttl` (0: no expiry). cb(winner, ""): the backend now stored, ours or the one
  // another replica claimed first. On failure cb("", error) and nothing is known.
  void claim(const std::string& key, const std::string& backend, std::chrono::milliseconds ttl,
             std::function<void(const std::string& winner, const std::string& error)> cb);
  // Resets the key's TTL to `ttl` (PEXPIRE; 0: PERSIST, no expiry). Fire and forget:
  // failures are only logged (debug).
  void refresh(const std::string& key, std::chrono::milliseconds ttl);
  // Deletes the key (DEL). Fire and forget.
  void erase(const std::string& key);
  // Remaining TTL in ms (PTTL): -2 no such key, -1 no expiry. On failure cb(-2, error).
  void ttl(const std::string& key, std::function<void(int64_t ttl_ms, const std::string& error)> cb);
  // Closes the connection: pending and later calls fail with "closed".
  void close();

  // The Redis key for a session key.
  std::string redis_key(const std::string& key) const { return prefix_ + key; }

 private:
  std::string prefix_;  // key_prefix + "session:"
  redis::RedisClient client_;
};

}  // namespace sparkgate::routing
