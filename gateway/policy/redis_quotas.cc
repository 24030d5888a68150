#include "policy/redis_quotas.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <random>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "redis/redis_client.h"

namespace sparkgate::policy {

namespace asio = boost::asio;
using redis::RedisClient;
using redis::RedisReply;

namespace {

constexpr std::chrono::milliseconds kMinLease{3};

// Every script reads the server's clock, so that replicas with skewed clocks still
// agree on when a token refills or a lease expires. Redis 7 replicates a script's
// effects, not the script, so reading TIME before writing is allowed.
constexpr const char* kNowMs =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

// Sorted sets expire with their latest member, so a user who goes away leaves nothing.
constexpr const char* kExpireWithLast =
    "local function expire_with_last(key)\n"
    "  local top = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')\n"
    "  if top[2] == nil then return end\n"
    "  if top[2] == 'inf' then redis.call('PERSIST', key)\n"
    "  else redis.call('PEXPIREAT', key, math.ceil(tonumber(top[2])) + 1) end\n"
    "end\n";

// KEYS[1] bucket hash; ARGV rate (tokens/s), burst. Returns 1 if a token was taken.
// The time is kept in fractional ms so that high rates refill between requests.
const std::string kRateScript =
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(v[1])\n"
    "local ts = tonumber(v[2])\n"
    "if tokens == nil or ts == nil then\n"
    "  tokens = burst\n"
    "  ts = now\n"
    "elseif now > ts then\n"
    "  tokens = tokens + (now - ts) * rate / 1000\n"
    "  ts = now\n"
    "end\n"
    "if tokens > burst then tokens = burst end\n"
    "local allowed = 0\n"
    "if tokens + 1e-9 >= 1 then\n"
    "  tokens = math.max(0, tokens - 1)\n"
    "  allowed = 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)\n"
    "redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) * 1000 / rate)))\n"
    "return allowed\n";

// KEYS[1] sorted set; ARGV max (0: unlimited), member, ttl ms (0: never expires).
// Drops expired members, then admits a member already present (pushing its expiry) or
// a new one while fewer than max are present. Returns 1 if admitted.
const std::string kAdmitScript = std::string(kExpireWithLast) + kNowMs +
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local max = tonumber(ARGV[1])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "if max > 0 and not redis.call('ZSCORE', KEYS[1], ARGV[2]) and\n"
    "   redis.call('ZCARD', KEYS[1]) >= max then\n"
    "  return 0\n"
    "end\n"
    "local score = '+inf'\n"
    "if ttl > 0 then score = now + ttl end\n"
    "redis.call('ZADD', KEYS[1], score, ARGV[2])\n"
    "expire_with_last(KEYS[1])\n"
    "return 1\n";

// KEYS[1] sorted set; ARGV ttl ms (0: never expires), members... Sets each member's
// expiry to now + ttl, adding back any that expired. Returns the number of members.
const std::string kTouchScript = std::string(kExpireWithLast) + kNowMs +
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local ttl = tonumber(ARGV[1])\n"
    "local score = '+inf'\n"
    "if ttl > 0 then score = now + ttl end\n"
    "for i = 2, #ARGV do redis.call('ZADD', KEYS[1], score, ARGV[i]) end\n"
    "expire_with_last(KEYS[1])\n"
    "return #ARGV - 1\n";

std::string to_hex(const unsigned char* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 0xf];
  }
  return out;
}

std::string hex(const std::string& s) {
  return to_hex(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

// EVALSHA needs the script's SHA-1 in hex.
std::string sha1_hex(const std::string& text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha1(), nullptr) != 1) return "";
  return to_hex(md, len);
}

// Unique per instance, so lease ids never collide across workers and replicas.
std::string random_instance_id() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    std::random_device rd;
    for (auto& b : bytes) b = static_cast<unsigned char>(rd());
  }
  return to_hex(bytes, sizeof bytes);
}

std::string format_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

struct Script {
  explicit Script(std::string t) : text(std::move(t)), sha(sha1_hex(text)) {}
  std::string text;
  std::string sha;
};

const Script& rate_script() {
  static const Script s(kRateScript);
  return s;
}
const Script& admit_script() {
  static const Script s(kAdmitScript);
  return s;
}
const Script& touch_script() {
  static const Script s(kTouchScript);
  return s;
}

QuotaDecision decide(const RedisReply& reply, const std::string& error) {
  QuotaDecision d;
  if (!error.empty()) {
    d.store_failed = true;
    d.error = error;
  } else if (reply.type == RedisReply::Type::kInteger) {
    d.allowed = reply.integer != 0;
  } else {
    d.store_failed = true;
    d.error = reply.type == RedisReply::Type::kError ? "redis: " + reply.str
                                                     : "redis: unexpected reply to SCRIPT";
  }
  return d;
}

void log_failure(const char* what, const std::string& key, const RedisReply& reply, const std::string& error) {
  if (!error.empty()) {
    spdlog::debug("redis quota {} {} failed: {}", what, key, error);
  } else if (reply.type == RedisReply::Type::kError) {
    spdlog::debug("redis quota {} {} failed: {}", what, key, reply.str);
  }
}

}  // namespace

class RedisQuotas::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::any_io_executor ex, const config::Redis& redis, std::chrono::milliseconds lease)
      : executor_(ex),
        prefix_(redis.key_prefix + "quota:"),
        instance_id_(random_instance_id()),
        lease_(std::max(lease, kMinLease)),
        client_(ex, redis.address, redis.timeout),
        renewal_(ex) {}

  void set_lease(std::chrono::milliseconds lease) { lease_ = std::max(lease, kMinLease); }
  std::chrono::milliseconds lease() const { return lease_; }

  void try_request(const std::string& user, double rate, uint32_t burst, QuotaCallback cb);
  void try_begin_operation(const std::string& user, uint32_t max, LeaseCallback cb);
  void end_operation(const std::string& user, const std::string& lease_id);
  void try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                       std::chrono::milliseconds ttl, QuotaCallback cb);
  void refresh_session(const std::string& user, const std::string& session_id, std::chrono::milliseconds ttl);
  void remove_session(const std::string& user, const std::string& session_id);
  void stop();
  void destroy();

  size_t held_leases() const {
    size_t n = 0;
    for (const auto& [user, ids] : held_) n += ids.size();
    return n;
  }
  std::string rate_key(const std::string& user) const { return prefix_ + "rate:" + hex(user); }
  std::string operations_key(const std::string& user) const { return prefix_ + "ops:" + hex(user); }
  std::string sessions_key(const std::string& user) const { return prefix_ + "sessions:" + hex(user); }

 private:
  // Runs `script` by EVALSHA, and by EVAL when the server does not have it cached
  // (NOSCRIPT: a restarted server or a SCRIPT FLUSH); EVAL caches it again.
  void eval(const Script& script, const std::string& key, std::vector<std::string> args,
            RedisClient::Callback cb);
  void post(std::function<void()> fn);
  void arm_renewal();
  void renew();

  asio::any_io_executor executor_;
  std::string prefix_;
  std::string instance_id_;
  uint64_t next_lease_ = 0;
  std::chrono::milliseconds lease_;
  RedisClient client_;
  asio::steady_timer renewal_;
  bool renewal_armed_ = false;
  bool stopped_ = false;
  bool destroyed_ = false;
  std::unordered_map<std::string, std::unordered_set<std::string>> held_;  // user → lease ids
};

// Callbacks given to client_ capture `this`: RedisClient never runs a callback once it
// is destroyed, and it is destroyed with this Impl.
void RedisQuotas::Impl::eval(const Script& script, const std::string& key, std::vector<std::string> args,
                             RedisClient::Callback cb) {
  std::vector<std::string> cmd = {"EVALSHA", script.sha, "1", key};
  cmd.insert(cmd.end(), args.begin(), args.end());
  client_.command(std::move(cmd), [this, &script, key, args = std::move(args), cb = std::move(cb)](
                                      const RedisReply& reply, const std::string& error) mutable {
    if (error.empty() && reply.type == RedisReply::Type::kError && reply.str.rfind("NOSCRIPT", 0) == 0) {
      std::vector<std::string> full = {"EVAL", script.text, "1", key};
      full.insert(full.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
      client_.command(std::move(full), std::move(cb));
      return;
    }
    cb(reply, error);
  });
}

// For answers that need no Redis: still posted, so that no callback runs inside the
// call that asked for it.
void RedisQuotas::Impl::post(std::function<void()> fn) {
  asio::post(executor_, [weak = weak_from_this(), fn = std::move(fn)] {
    auto self = weak.lock();
    if (self && !self->destroyed_) fn();
  });
}

void RedisQuotas::Impl::try_request(const std::string& user, double rate, uint32_t burst, QuotaCallback cb) {
  if (!(rate > 0)) {
    post([cb = std::move(cb)] { cb(QuotaDecision{}); });
    return;
  }
  const double capacity = burst > 0 ? static_cast<double>(burst) : std::max(1.0, std::ceil(rate));
  eval(rate_script(), rate_key(user), {format_double(rate), format_double(capacity)},
       [cb = std::move(cb)](const RedisReply& reply, const std::string& error) { cb(decide(reply, error)); });
}

void RedisQuotas::Impl::try_begin_operation(const std::string& user, uint32_t max, LeaseCallback cb) {
  if (max == 0) {
    post([cb = std::move(cb)] { cb(QuotaDecision{}, ""); });
    return;
  }
  std::string id = instance_id_ + ":" + std::to_string(++next_lease_);
  eval(admit_script(), operations_key(user), {std::to_string(max), id, std::to_string(lease_.count())},
       [this, user, id, cb = std::move(cb)](const RedisReply& reply, const std::string& error) {
         const QuotaDecision d = decide(reply, error);
         if (d.store_failed) {
           // The script may have run before the connection failed; do not leave a
           // lease counted that nobody will end.
           if (!stopped_) {
             client_.command({"ZREM", operations_key(user), id}, [key = operations_key(user)](
                                                                    const RedisReply& r, const std::string& e) {
               log_failure("ZREM", key, r, e);
             });
           }
           return cb(d, "");
         }
         if (!d.allowed) return cb(d, "");
         if (!stopped_) {
           held_[user].insert(id);
           arm_renewal();
         }
         cb(d, id);
       });
}

void RedisQuotas::Impl::end_operation(const std::string& user, const std::string& lease_id) {
  if (lease_id.empty() || stopped_) return;
  if (auto it = held_.find(user); it != held_.end()) {
    it->second.erase(lease_id);
    if (it->second.empty()) held_.erase(it);
  }
  const std::string key = operations_key(user);
  client_.command({"ZREM", key, lease_id},
                  [key](const RedisReply& r, const std::string& e) { log_failure("ZREM", key, r, e); });
}

void RedisQuotas::Impl::arm_renewal() {
  if (renewal_armed_ || stopped_ || held_.empty()) return;
  renewal_armed_ = true;
  renewal_.expires_after(std::max(lease_ / 3, std::chrono::milliseconds(1)));
  renewal_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!self || self->destroyed_) return;
    self->renewal_armed_ = false;
    if (ec || self->stopped_) return;
    self->renew();
    self->arm_renewal();
  });
}

void RedisQuotas::Impl::renew() {
  for (const auto& [user, ids] : held_) {
    std::vector<std::string> args;
    args.reserve(ids.size() + 1);
    args.push_back(std::to_string(lease_.count()));
    args.insert(args.end(), ids.begin(), ids.end());
    const std::string key = operations_key(user);
    eval(touch_script(), key, std::move(args),
         [key](const RedisReply& r, const std::string& e) { log_failure("lease renewal", key, r, e); });
  }
}

void RedisQuotas::Impl::try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                                        std::chrono::milliseconds ttl, QuotaCallback cb) {
  if (max == 0) {
    post([cb = std::move(cb)] { cb(QuotaDecision{}); });
    return;
  }
  const auto ttl_ms = std::max<int64_t>(ttl.count(), 0);
  eval(admit_script(), sessions_key(user), {std::to_string(max), session_id, std::to_string(ttl_ms)},
       [cb = std::move(cb)](const RedisReply& reply, const std::string& error) { cb(decide(reply, error)); });
}

void RedisQuotas::Impl::refresh_session(const std::string& user, const std::string& session_id,
                                        std::chrono::milliseconds ttl) {
  if (stopped_) return;
  const std::string key = sessions_key(user);
  eval(touch_script(), key, {std::to_string(std::max<int64_t>(ttl.count(), 0)), session_id},
       [key](const RedisReply& r, const std::string& e) { log_failure("session refresh", key, r, e); });
}

void RedisQuotas::Impl::remove_session(const std::string& user, const std::string& session_id) {
  if (stopped_) return;
  const std::string key = sessions_key(user);
  client_.command({"ZREM", key, session_id},
                  [key](const RedisReply& r, const std::string& e) { log_failure("ZREM", key, r, e); });
}

void RedisQuotas::Impl::stop() {
  if (stopped_) return;
  stopped_ = true;
  renewal_.cancel();
  held_.clear();
  client_.close();
}

void RedisQuotas::Impl::destroy() {
  destroyed_ = true;
  stopped_ = true;
  renewal_.cancel();
  held_.clear();
}

// ---- RedisQuotas ----

RedisQuotas::RedisQuotas(asio::any_io_executor ex, const config::Redis& redis, std::chrono::milliseconds lease)
    : impl_(std::make_shared<Impl>(std::move(ex), redis, lease)) {}

RedisQuotas::~RedisQuotas() { impl_->destroy(); }

void RedisQuotas::set_lease(std::chrono::milliseconds lease) { impl_->set_lease(lease); }
std::chrono::milliseconds RedisQuotas::lease() const { return impl_->lease(); }

void RedisQuotas::try_request(const std::string& user, double rate, uint32_t burst, QuotaCallback cb) {
  impl_->try_request(user, rate, burst, std::move(cb));
}

void RedisQuotas::try_begin_operation(const std::string& user, uint32_t max, LeaseCallback cb) {
  impl_->try_begin_operation(user, max, std::move(cb));
}

void RedisQuotas::end_operation(const std::string& user, const std::string& lease_id) {
  impl_->end_operation(user, lease_id);
}

void RedisQuotas::try_add_session(const std::string& user, const std::string& session_id, uint32_t max,
                                  std::chrono::milliseconds ttl, QuotaCallback cb) {
  impl_->try_add_session(user, session_id, max, ttl, std::move(cb));
}

void RedisQuotas::refresh_session(const std::string& user, const std::string& session_id,
                                  std::chrono::milliseconds ttl) {
  impl_->refresh_session(user, session_id, ttl);
}

void RedisQuotas::remove_session(const std::string& user, const std::string& session_id) {
  impl_->remove_session(user, session_id);
}

void RedisQuotas::stop() { impl_->stop(); }

size_t RedisQuotas::held_leases() const { return impl_->held_leases(); }
std::string RedisQuotas::rate_key(const std::string& user) const { return impl_->rate_key(user); }
std::string RedisQuotas::operations_key(const std::string& user) const { return impl_->operations_key(user); }
std::string RedisQuotas::sessions_key(const std::string& user) const { return impl_->sessions_key(user); }

}  // namespace sparkgate::policy
