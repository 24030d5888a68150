// One engine per (cluster, share key) across gateway replicas (sessions.store: redis;
// docs/engines.md "Across replicas"). The EngineManager asks an EngineCoordinator to
// claim a start, to publish the ready engine (address and token, under a lease), to
// release it when it stops, and to count the replicas that use it.
//
// Redis keys (key_prefix from sessions.redis):
//   <prefix>engine:<cluster>:<key>      "starting <replica>" (PX start_timeout), then
//                                       "ready <host:port> <token>" (PX lease, refreshed)
//   <prefix>engine-use:<cluster>:<key>  sorted set: replica -> lease expiry (ms since epoch)
//
// Threading: methods may be called from any thread (the manager's, under its lock): they
// only post to the coordinator's own thread. Callbacks run on that thread, never inside
// the call, and never after the coordinator is destroyed.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "config/config.h"

namespace sparkgate::redis {
class RedisClient;
}

namespace sparkgate::engines {

class EngineCoordinator {
 public:
  virtual ~EngineCoordinator() = default;
  // value: the key's value (nullopt: none); error: Redis failed, nothing is known.
  using Reply = std::function<void(std::optional<std::string> value, const std::string& error)>;
  // SET NX GET PX: cb(nullopt, "") when our `value` is now stored, else cb(current, "").
  virtual void claim(const std::string& ck, const std::string& value, std::chrono::milliseconds px, Reply cb) = 0;
  virtual void get(const std::string& ck, Reply cb) = 0;
  // SET value PX (the owner, once its engine is ready). Fire and forget.
  virtual void put(const std::string& ck, const std::string& value, std::chrono::milliseconds px) = 0;
  // PEXPIRE if the value is still `value`. Fire and forget.
  virtual void refresh(const std::string& ck, const std::string& value, std::chrono::milliseconds px) = 0;
  // DEL if the value is still `value` (and the use set). Fire and forget.
  virtual void release(const std::string& ck, const std::string& value) = 0;
  // This replica uses the engine until now + lease (ZADD). Fire and forget.
  virtual void use(const std::string& ck, std::chrono::milliseconds lease) = 0;
  // Replicas other than this one whose use lease has not expired (expired ones dropped).
  virtual void users(const std::string& ck, std::function<void(int64_t n, const std::string& error)> cb) = 0;
  // A TCP connect to another replica's engine: cb(true) if it refused (the engine is
  // gone); any other outcome, a connect or a timeout, is cb(false).
  virtual void probe(const config::Endpoint& address, std::function<void(bool refused)> cb) = 0;
  // This replica's name in the values ("host:pid").
  virtual const std::string& replica() const = 0;
  // For error texts: "Redis at host:port".
  virtual std::string where() const = 0;
};

// The coordinator over one Redis connection, on a thread of its own.
class RedisEngineCoordinator final : public EngineCoordinator {
 public:
  explicit RedisEngineCoordinator(const config::Redis& cfg);
  // Sends what is queued (the releases of a shutdown) for up to the Redis timeout.
  ~RedisEngineCoordinator() override;

  void claim(const std::string& ck, const std::string& value, std::chrono::milliseconds px, Reply cb) override;
  void get(const std::string& ck, Reply cb) override;
  void put(const std::string& ck, const std::string& value, std::chrono::milliseconds px) override;
  void refresh(const std::string& ck, const std::string& value, std::chrono::milliseconds px) override;
  void release(const std::string& ck, const std::string& value) override;
  void use(const std::string& ck, std::chrono::milliseconds lease) override;
  void users(const std::string& ck, std::function<void(int64_t n, const std::string& error)> cb) override;
  void probe(const config::Endpoint& address, std::function<void(bool refused)> cb) override;
  const std::string& replica() const override { return replica_; }
  std::string where() const override { return "Redis at " + address_; }

 private:
  std::string engine_key(const std::string& ck) const { return prefix_ + "engine:" + ck; }
  std::string use_key(const std::string& ck) const { return prefix_ + "engine-use:" + ck; }
  void send(std::vector<std::string> args, std::function<void(const std::string& error, bool nil,
                                                               const std::string& str, int64_t integer)> cb);

  std::string prefix_, address_, replica_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::unique_ptr<redis::RedisClient> client_;  // used on thread_ only
  std::thread thread_;
};

}  // namespace sparkgate::engines
