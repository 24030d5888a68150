#include "engines/engine_manager.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "observe/access_log.h"
#include "observe/metrics.h"

namespace sparkgate::engines {

using Clock = std::chrono::steady_clock;
using grpcwire::Status;
using grpcwire::StatusCode;

namespace {

// Marks when an engine without sessions became idle (or that it is in use again) and
// returns when its idle period began: the later of that and its last acquire.
template <typename EngineT>
std::chrono::steady_clock::time_point note_idle(EngineT& e, std::chrono::steady_clock::time_point now) {
  if (e.sessions > 0) {
    e.idle_since.reset();
  } else if (!e.idle_since) {
    e.idle_since = std::chrono::system_clock::now();
    e.idle_since_steady = now;
  }
  return std::max(e.idle_since_steady, e.last_acquire);
}
// Across replicas (a coordinator): the owner's "ready" value lives kLease and is refreshed
// every kRefresh; a replica with sessions on another's engine renews its use lease
// (kLease) as often; a replica waiting for another's start polls every kPoll.
constexpr std::chrono::milliseconds kLease{10000};
constexpr std::chrono::milliseconds kRefresh{2000};
constexpr std::chrono::milliseconds kPoll{250};

std::string coord_key(const std::string& cluster, const std::string& key) { return cluster + ":" + key; }

// "ready <host:port> <token>" -> target.
std::optional<EngineTarget> parse_ready(const std::string& v) {
  if (v.rfind("ready ", 0) != 0) return std::nullopt;
  auto sp = v.find(' ', 6);
  if (sp == std::string::npos) return std::nullopt;
  std::string addr = v.substr(6, sp - 6), token = v.substr(sp + 1);
  auto colon = addr.rfind(':');
  if (colon == std::string::npos || token.empty()) return std::nullopt;
  EngineTarget t;
  t.address.host = addr.substr(0, colon);
  if (t.address.host.size() > 2 && t.address.host.front() == '[' && t.address.host.back() == ']')
    t.address.host = t.address.host.substr(1, t.address.host.size() - 2);
  int port = 0;
  for (char c : addr.substr(colon + 1)) {
    if (c < '0' || c > '9' || port > 65535) return std::nullopt;
    port = port * 10 + (c - '0');
  }
  if (port <= 0 || port > 65535) return std::nullopt;
  t.address.port = static_cast<uint16_t>(port);
  t.token = std::move(token);
  return t;
}
}  // namespace

std::optional<std::chrono::nanoseconds> parse_grpc_timeout(std::string_view v) {
  // TimeoutValue: at most 8 ASCII digits, then one unit.
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (v.back()) {
    case 'H': return std::chrono::hours(n);
    case 'M': return std::chrono::minutes(n);
    case 'S': return std::chrono::seconds(n);
    case 'm': return std::chrono::milliseconds(n);
    case 'u': return std::chrono::microseconds(n);
    case 'n': return std::chrono::nanoseconds(n);
  }
  return std::nullopt;
}

std::string share_key(config::Engines::Share share, const base::Principal& p) {
  switch (share) {
    case config::Engines::Share::kUser: return p.user.empty() ? "" : "user:" + p.user;
    case config::Engines::Share::kGroup: return p.groups.empty() ? "" : "group:" + p.groups.front();
    case config::Engines::Share::kTenant: return p.tenant.empty() ? "" : "tenant:" + p.tenant;
    case config::Engines::Share::kCluster: return "cluster";
  }
  return "";
}

// One waiting acquire. Listed in its engine until the start ends; the posted completion
// holds it until it ran. cancel() and the completion both run on the waiter's executor.
struct EngineManager::Wait final : base::Cancellable, std::enable_shared_from_this<Wait> {
  EngineManager* manager = nullptr;
  std::weak_ptr<Engine> engine;
  EngineWaiter* waiter = nullptr;
  boost::asio::any_io_executor ex;
  std::optional<Clock::time_point> deadline;  // the client's grpc-timeout
  bool cancelled = false;  // on ex's thread only

  void cancel() override {
    cancelled = true;
    std::lock_guard lock(manager->mu_);
    if (auto e = engine.lock()) {
      auto& ws = e->waiters;
      auto self = shared_from_this();
      ws.erase(std::remove(ws.begin(), ws.end(), self), ws.end());
    }
  }
  // Called with the manager's lock held.
  void complete(Status status, std::optional<EngineTarget> target) {
    boost::asio::post(ex, [self = shared_from_this(), status = std::move(status), target = std::move(target)] {
      if (self->cancelled) return;
      self->waiter->on_engine(status, target ? &*target : nullptr);
    });
  }
};

EngineManager::EngineManager(std::unique_ptr<Launcher> launcher, Hooks hooks, observe::Metrics* metrics,
                             observe::AccessLog* access_log, std::chrono::milliseconds tick,
                             std::unique_ptr<EngineCoordinator> coordinator)
    : launcher_(std::move(launcher)),
      hooks_(std::move(hooks)),
      metrics_(metrics),
      access_log_(access_log),
      tick_(tick),
      coord_(std::move(coordinator)) {
  thread_ = std::thread([this] { run(); });
}

EngineManager::~EngineManager() {
  shutdown();
  coord_.reset();  // sends the releases of the stops, then no callback runs any more
}

EngineAnswer EngineManager::acquire(const config::Cluster& cluster, const std::string& key, EngineWaiter& w,
                                    boost::asio::any_io_executor ex, std::optional<Clock::time_point> client_deadline) {
  EngineAnswer a;
  const auto& spec = *cluster.engines;
  std::lock_guard lock(mu_);
  if (stopping_all_) {
    a.status = {StatusCode::kUnavailable, "the gateway is shutting down; engines are not started any more"};
    return a;
  }
  auto& slot = engines_[{cluster.name, key}];
  if (slot && slot->state == State::kReady) {
    slot->last_acquire = Clock::now();
    a.target = slot->target;
    return a;
  }
  if (!slot) {
    size_t live = 0;
    for (const auto& [k, e] : engines_)
      if (e && k.first == cluster.name) ++live;
    for (const auto& e : stopping_)
      if (e->cluster == cluster.name) ++live;
    // `slot` itself is counted (null) only once it exists.
    if (live >= spec.max_engines) {
      engines_.erase({cluster.name, key});
      a.status = {StatusCode::kResourceExhausted,
                  "engines.max_engines (" + std::to_string(spec.max_engines) + ") of cluster '" + cluster.name +
                      "' reached: " + std::to_string(live) +
                      " engines are running or stopping; no engine can be started for " + key +
                      " until one stops (idle_timeout) or an operator stops one (DELETE /v1/engines/{key})"};
      return a;
    }
    slot = std::make_shared<Engine>();
    slot->cluster = cluster.name;
    slot->key = key;
    slot->spec = spec;
    slot->state = State::kStarting;
    slot->started = std::chrono::system_clock::now();
    slot->launched = Clock::now();
    slot->deadline = slot->launched + spec.start_timeout;
    slot->last_acquire = slot->launched;
    update_gauges_locked();
    cv_.notify_all();
  }
  auto wait = std::make_shared<Wait>();
  wait->manager = this;
  wait->engine = slot;
  wait->waiter = &w;
  wait->ex = std::move(ex);
  wait->deadline = client_deadline;
  slot->waiters.push_back(wait);
  a.pending = wait.get();
  return a;
}

std::optional<EngineTarget> EngineManager::find(const std::string& cluster, const std::string& address) const {
  std::lock_guard lock(mu_);
  for (const auto& [k, e] : engines_) {
    if (e && e->state == State::kReady && k.first == cluster && e->target->address.to_string() == address) {
      e->last_acquire = Clock::now();
      return e->target;
    }
  }
  return std::nullopt;
}

std::vector<EngineInfo> EngineManager::list() const {
  std::lock_guard lock(mu_);
  std::vector<EngineInfo> out;
  auto add = [&](const Engine& e) {
    EngineInfo i;
    i.cluster = e.cluster;
    i.key = e.key;
    i.state = e.state == State::kStarting ? "starting" : e.state == State::kReady ? "ready" : "stopping";
    i.address = e.target ? e.target->address.to_string() : "";
    i.pid = e.proc ? e.proc->pid() : 0;
    i.sessions = e.sessions;
    i.remote = e.remote;
    i.started = e.started;
    i.idle_since = e.idle_since;
    out.push_back(std::move(i));
  };
  for (const auto& [k, e] : engines_)
    if (e) add(*e);
  for (const auto& e : stopping_) add(*e);
  return out;
}

bool EngineManager::stop(const std::string& key, const std::string& cluster) {
  std::lock_guard lock(mu_);
  bool any = false;
  for (auto it = engines_.begin(); it != engines_.end();) {
    auto e = it->second;
    if (e && e->key == key && (cluster.empty() || e->cluster == cluster)) {
      it = engines_.erase(it);
      fail_waiters_locked(*e, {StatusCode::kUnavailable, "engine " + key + " was stopped by an operator while it started"});
      begin_stop_locked(e, "admin");
      publish_locked(e->cluster);
      any = true;
    } else {
      ++it;
    }
  }
  update_gauges_locked();
  cv_.notify_all();
  return any;
}

void EngineManager::shutdown() {
  {
    std::unique_lock lock(mu_);
    if (!stopping_all_) {
      stopping_all_ = true;
      std::vector<std::string> clusters;
      for (auto& [k, e] : engines_) {
        if (!e) continue;
        fail_waiters_locked(*e, {StatusCode::kUnavailable, "the gateway is shutting down"});
        begin_stop_locked(e, "shutdown");
        clusters.push_back(k.first);
      }
      engines_.clear();
      for (const auto& c : clusters) publish_locked(c);
      update_gauges_locked();
      cv_.notify_all();
    }
  }
  if (thread_.joinable()) thread_.join();
}

void EngineManager::fail_waiters_locked(Engine& e, const Status& status) {
  for (auto& w : e.waiters) w->complete(status, std::nullopt);
  e.waiters.clear();
}

void EngineManager::begin_stop_locked(const EnginePtr& e, const std::string& reason) {
  if (coord_ && e->claimed && !e->remote) coord_->release(coord_key(e->cluster, e->key), e->redis_value);
  e->claimed = false;
  e->state = State::kStopping;
  e->stop_reason = reason;
  e->deadline = Clock::now() + e->spec.stop_grace;
  if (e->proc) e->proc->terminate();
  stopping_.push_back(e);
}

void EngineManager::publish_locked(const std::string& cluster) {
  if (!hooks_.publish) return;
  std::vector<config::Endpoint> ready;
  for (const auto& [k, e] : engines_)
    if (e && k.first == cluster && e->state == State::kReady) ready.push_back(e->target->address);
  hooks_.publish(cluster, ready);
}

void EngineManager::update_gauges_locked() {
  if (!metrics_) return;
  int64_t n[3] = {0, 0, 0};
  for (const auto& [k, e] : engines_)
    if (e) ++n[static_cast<int>(e->state)];
  n[2] += static_cast<int64_t>(stopping_.size());
  metrics_->engines("starting").Set(static_cast<double>(n[0]));
  metrics_->engines("ready").Set(static_cast<double>(n[1]));
  metrics_->engines("stopping").Set(static_cast<double>(n[2]));
}

void EngineManager::log(const char* event, const Engine& e, const std::string& reason, double start_s) {
  std::string address = e.target ? e.target->address.to_string() : "";
  int64_t pid = e.proc ? e.proc->pid() : 0;
  if (access_log_) {
    observe::EngineRecord r;
    r.event = event;
    r.cluster = e.cluster;
    r.key = e.key;
    r.address = address;
    r.pid = pid;
    r.reason = reason;
    r.start_s = start_s;
    access_log_->engine(r);
  }
  spdlog::info("{} cluster={} key={} address={} pid={}{}{}", event, e.cluster, e.key, address, pid,
               reason.empty() ? "" : " reason=", reason);
}

void EngineManager::expire_waiters_locked(Engine& e, Clock::time_point now) {
  // Waiters whose own deadline (grpc-timeout) passed give up; the start goes on.
  auto& ws = e.waiters;
  for (auto w = ws.begin(); w != ws.end();) {
    if ((*w)->deadline && now >= *(*w)->deadline) {
      (*w)->complete({StatusCode::kDeadlineExceeded,
                      "the client's deadline (grpc-timeout) passed while the Spark engine for " + e.key +
                          " of cluster '" + e.cluster + "' was starting; it goes on starting, try again"},
                     std::nullopt);
      w = ws.erase(w);
    } else {
      ++w;
    }
  }
}

void EngineManager::ready_locked(const EnginePtr& e, Clock::time_point now) {
  e->state = State::kReady;
  e->idle_since_steady = now;
  e->idle_since = std::chrono::system_clock::now();
  e->next_redis = now + kRefresh;
  // Published before any waiter runs: they adopt their session on this address.
  publish_locked(e->cluster);
  for (auto& w : e->waiters) w->complete({}, e->target);
  e->waiters.clear();
}

bool EngineManager::live_locked(const EnginePtr& e) const {
  auto it = engines_.find({e->cluster, e->key});
  return it != engines_.end() && it->second == e;
}

void EngineManager::redis_failed_locked(const EnginePtr& e, const std::string& error) {
  spdlog::warn("engine {} of cluster {}: {} failed: {}", e->key, e->cluster, coord_->where(), error);
  fail_waiters_locked(*e, {StatusCode::kUnavailable,
                           "the Spark engine for " + e->key + " of cluster '" + e->cluster +
                               "' cannot be claimed: " + coord_->where() + " (sessions.redis) is unavailable: " + error});
  engines_.erase({e->cluster, e->key});
  e->state = State::kStopping;
  update_gauges_locked();
}

void EngineManager::on_redis_value_locked(const EnginePtr& e, const std::optional<std::string>& value, bool claiming) {
  auto now = Clock::now();
  if (!value) {
    if (claiming) {
      e->claimed = true;  // ours: the next tick launches
      e->remote = false;
    } else {
      e->remote = false;  // the other start ended without an engine: claim it ourselves
      e->next_redis = now;
    }
    cv_.notify_all();
    return;
  }
  if (auto t = parse_ready(*value)) {
    e->remote = true;
    e->redis_value = *value;
    e->target = std::move(t);
    log("engine_remote", *e, "started by another replica");
    ready_locked(e, now);
    coord_->use(coord_key(e->cluster, e->key), kLease);
    update_gauges_locked();
    return;
  }
  // "starting <replica>": another replica starts it; poll until it is ready.
  e->remote = true;
  e->next_redis = now + kPoll;
}

void EngineManager::remote_start_locked(const EnginePtr& e, Clock::time_point now) {
  if (e->asking || now < e->next_redis) return;
  e->asking = true;
  std::weak_ptr<Engine> weak = e;
  const bool claiming = !e->remote;
  auto cb = [this, weak, claiming](std::optional<std::string> value, const std::string& error) {
    std::lock_guard lock(mu_);
    auto e = weak.lock();
    if (!e || !live_locked(e) || e->state != State::kStarting) {
      // Gone meanwhile (stopped, timed out): a claim we won is given back.
      if (e && claiming && !value && error.empty()) coord_->release(coord_key(e->cluster, e->key), e->redis_value);
      return;
    }
    e->asking = false;
    if (!error.empty()) return redis_failed_locked(e, error);
    on_redis_value_locked(e, value, claiming);
  };
  auto ck = coord_key(e->cluster, e->key);
  if (claiming) {
    e->redis_value = "starting " + coord_->replica();
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(e->deadline - now);
    coord_->claim(ck, e->redis_value, std::max(left, std::chrono::milliseconds(1)), std::move(cb));
  } else {
    coord_->get(ck, std::move(cb));
  }
}

void EngineManager::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    tick_locked();
    if (stopping_all_ && stopping_.empty()) break;
    cv_.wait_for(lock, tick_);
  }
  thread_done_ = true;
}

void EngineManager::tick_locked() {
  auto now = Clock::now();
  std::set<std::string> changed;
  for (auto it = engines_.begin(); it != engines_.end();) {
    auto e = it->second;
    if (!e) {
      it = engines_.erase(it);
      continue;
    }
    bool drop = false;
    if (e->state == State::kStarting && coord_ && !e->claimed) {
      remote_start_locked(e, now);
      if (e->state == State::kStarting) {
        expire_waiters_locked(*e, now);
        if (now >= e->deadline) {
          std::string why = "another replica's start did not become ready within engines.start_timeout (" +
                            std::to_string(e->spec.start_timeout.count()) + "ms)";
          if (metrics_) metrics_->engine_start("timeout").Increment();
          spdlog::warn("engine {} of cluster {} failed to start: {}", e->key, e->cluster, why);
          fail_waiters_locked(*e, {StatusCode::kUnavailable, "the Spark engine for " + e->key + " of cluster '" +
                                                                 e->cluster + "' failed to start: " + why});
          e->state = State::kStopping;
          drop = true;
        }
      }
      // A Redis failure or a ready value was handled in the callback (erased or ready).
    } else if (e->state == State::kStarting) {
      std::string error;
      if (!e->proc) {
        e->port = 0;
        for (int i = 0; i < 20 && !e->port; ++i) {
          auto p = pick_free_port();
          if (p && used_ports_.insert(p).second) e->port = p;
        }
        e->token = random_token();
        LaunchRequest r{e->cluster, e->key, e->port, e->token, &e->spec};
        if (!e->port) error = "no free port on 127.0.0.1";
        else e->proc = launcher_->launch(r, error);
        if (e->proc) log("engine_start", *e, "");
      }
      config::Endpoint address;
      auto poll = e->proc ? e->proc->poll_ready(address, error) : EngineProcess::Poll::kFailed;
      if (poll == EngineProcess::Poll::kReady) {
        e->target = EngineTarget{address, e->token};
        if (coord_) {
          e->redis_value = "ready " + address.to_string() + " " + e->token;
          coord_->put(coord_key(e->cluster, e->key), e->redis_value, kLease);
        }
        double secs = std::chrono::duration<double>(now - e->launched).count();
        if (metrics_) {
          metrics_->engine_start("ok").Increment();
          metrics_->engine_start_seconds().Observe(secs);
        }
        log("engine_ready", *e, "", secs);
        ready_locked(e, now);
        changed.insert(e->cluster);
      } else if (poll == EngineProcess::Poll::kPending && now < e->deadline) {
        expire_waiters_locked(*e, now);
      }
      if (e->state == State::kStarting &&
          (poll == EngineProcess::Poll::kFailed || (poll == EngineProcess::Poll::kPending && now >= e->deadline))) {
        bool timeout = poll != EngineProcess::Poll::kFailed;
        std::string why = timeout ? "did not become ready within engines.start_timeout (" +
                                        std::to_string(e->spec.start_timeout.count()) + "ms)"
                                  : error;
        if (metrics_) metrics_->engine_start(timeout ? "timeout" : "failed").Increment();
        spdlog::warn("engine {} of cluster {} failed to start: {}", e->key, e->cluster, why);
        fail_waiters_locked(*e, {StatusCode::kUnavailable, "the Spark engine for " + e->key + " of cluster '" +
                                                               e->cluster + "' failed to start: " + why});
        begin_stop_locked(e, "start failed: " + why);
        drop = true;
      }
    } else if (e->state == State::kReady && e->remote) {
      // Another replica's engine: its Redis value says whether it still runs.
      e->sessions = hooks_.sessions ? hooks_.sessions(e->cluster, e->target->address.to_string()) : 0;
      auto ck = coord_key(e->cluster, e->key);
      if (now >= e->next_redis && !e->asking) {
        e->next_redis = now + kRefresh;
        if (e->sessions > 0 || now - e->last_acquire < kLease) coord_->use(ck, kLease);
        // An engine that refuses connections is gone, whatever Redis still says.
        std::weak_ptr<Engine> probed = e;
        coord_->probe(e->target->address, [this, probed](bool refused) {
          if (!refused) return;
          std::lock_guard lock(mu_);
          auto e = probed.lock();
          if (!e || !live_locked(e) || e->state != State::kReady) return;
          spdlog::warn("engine {} of cluster {} at {} (started by another replica) refuses connections: gone",
                       e->key, e->cluster, e->target->address.to_string());
          log("engine_stop", *e, "crashed: remote engine refuses connections");
          engines_.erase({e->cluster, e->key});
          e->state = State::kStopping;
          publish_locked(e->cluster);
          update_gauges_locked();
        });
        e->asking = true;
        std::weak_ptr<Engine> weak = e;
        coord_->get(ck, [this, weak](std::optional<std::string> value, const std::string& error) {
          std::lock_guard lock(mu_);
          auto e = weak.lock();
          if (!e || !live_locked(e) || e->state != State::kReady) return;
          e->asking = false;
          if (!error.empty()) {
            // Redis down: the engine itself may be fine; keep it until Redis answers.
            spdlog::warn("engine {} of cluster {}: {} failed: {}", e->key, e->cluster, coord_->where(), error);
            return;
          }
          if (value && *value == e->redis_value) return;
          spdlog::warn("engine {} of cluster {} at {} (started by another replica) is gone: its Redis key {}",
                       e->key, e->cluster, e->target->address.to_string(), value ? "changed" : "vanished");
          log("engine_stop", *e, "crashed: remote engine's key vanished or changed");
          engines_.erase({e->cluster, e->key});
          e->state = State::kStopping;
          publish_locked(e->cluster);
          update_gauges_locked();
        });
      }
      // No process to stop here: an unused remote entry is only forgotten.
      auto idle_from = note_idle(*e, now);
      if (e->sessions == 0 && now - idle_from >= e->spec.idle_timeout) {
        log("engine_forget", *e, "idle here");
        e->state = State::kStopping;
        drop = true;
        changed.insert(e->cluster);
      }
    } else if (e->state == State::kReady) {
      std::string why;
      if (!e->proc->alive(why)) {
        if (coord_ && e->claimed) coord_->release(coord_key(e->cluster, e->key), e->redis_value);
        spdlog::warn("engine {} of cluster {} at {} {}: its sessions are gone", e->key, e->cluster,
                     e->target->address.to_string(), why);
        log("engine_stop", *e, "crashed: " + why);
        e->state = State::kStopping;
        drop = true;
        changed.insert(e->cluster);
      } else {
        e->sessions = hooks_.sessions ? hooks_.sessions(e->cluster, e->target->address.to_string()) : 0;
        auto idle_from = note_idle(*e, now);
        bool idle = e->sessions == 0 && now - idle_from >= e->spec.idle_timeout;
        if (coord_ && e->claimed) {
          // Idle only if no other replica holds a use lease, by a count taken after the
          // idle period ended (asked for at once then, not at the next refresh).
          auto counted_from = idle_from + e->spec.idle_timeout;
          bool need_count = idle && e->users_at < counted_from;
          auto ck = coord_key(e->cluster, e->key);
          if ((now >= e->next_redis || need_count) && !e->asking) {
            if (now >= e->next_redis) {
              e->next_redis = now + kRefresh;
              coord_->refresh(ck, e->redis_value, kLease);
            }
            e->asking = true;
            std::weak_ptr<Engine> weak = e;
            coord_->users(ck, [this, weak](int64_t n, const std::string& error) {
              std::lock_guard lock(mu_);
              auto e = weak.lock();
              if (!e) return;
              e->asking = false;
              // Unknown while Redis is down: no idle stop on a guess.
              if (!error.empty()) return;
              e->remote_users = n;
              e->users_at = Clock::now();
              if (n > 0) {
                e->idle_since.reset();
                e->idle_since_steady = e->users_at;  // in use until now
              }
            });
          }
          e->sessions += e->remote_users;
          if (e->remote_users > 0) e->idle_since.reset();
          if (need_count || e->remote_users > 0) idle = false;
        }
        if (idle) {
          begin_stop_locked(e, "idle");
          drop = true;
          changed.insert(e->cluster);
        }
      }
    }
    it = drop ? engines_.erase(it) : std::next(it);
  }
  for (auto it = stopping_.begin(); it != stopping_.end();) {
    auto& e = *it;
    std::string why;
    bool gone = !e->proc || !e->proc->alive(why);
    if (!gone && now >= e->deadline) {
      e->proc->kill();
      why = "killed after stop_grace";
      gone = true;
    }
    if (gone) {
      log("engine_stop", *e, e->stop_reason + (why.empty() ? "" : " (" + why + ")"));
      e->proc.reset();  // reaps the leader, SIGKILLs what is left of the group
      it = stopping_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& c : changed) publish_locked(c);
  update_gauges_locked();
}

}  // namespace sparkgate::engines
