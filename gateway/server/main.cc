// sparkgate: a gateway for Apache Spark Connect.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <csignal>
#include <iostream>
#include <thread>

#include "admin/admin_server.h"
#include "config/config_loader.h"
#include "policy/jwt_key_builder.h"
#include "server/control.h"
#include "server/gateway_state.h"
#include "server/observers.h"
#include "server/tls.h"
#include "server/worker.h"

#ifndef SPARKGATE_VERSION
#define SPARKGATE_VERSION "dev"
#endif

namespace {

using namespace sparkgate;

int check_config(const std::string& path) {
  auto result = config::load_config_file(path, policy::config_load_options());
  for (const auto& e : result.errors) std::cerr << e.to_string() << "\n";
  if (!result.config) return 1;
  // TLS material must also load, not just exist.
  int rc = 0;
  for (const auto& l : result.config->listeners) {
    if (!l.tls) continue;
    std::string error;
    if (!server::make_server_tls_context(*l.tls, error)) {
      std::cerr << path << ": listener " << l.address.to_string() << ": " << error << "\n";
      rc = 1;
    }
  }
  if (rc == 0) std::cout << path << ": OK\n";
  return rc;
}

// Every client and backend connection is a file descriptor: the soft limit (often 1024)
// is raised to the hard one. Returns how many client connections that leaves room for
// (the limit minus a reserve for backends, listeners, the admin API and the config
// watcher); a configured limits.max_connections above it is reported at startup rather
// than as accept() failures under load.
uint32_t raise_fd_limit(const config::Config& cfg) {
  constexpr rlim_t kReserve = 1024;
  constexpr rlim_t kFloor = 64;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 50000;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  if (rl.rlim_cur == RLIM_INFINITY) return 1000000;
  const rlim_t room = rl.rlim_cur > kReserve + kFloor ? rl.rlim_cur - kReserve : kFloor;
  if (cfg.limits.max_connections > room)
    spdlog::warn("limits.max_connections ({}) is above what the open file limit ({}) leaves for client "
                 "connections (about {}): past that, accept() fails; raise `ulimit -n` or lower it",
                 cfg.limits.max_connections, rl.rlim_cur, room);
  return static_cast<uint32_t>(std::min<rlim_t>(room, 10000000));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sparkgate: a gateway for Apache Spark Connect"};
  std::string config_path;
  bool check_only = false;
  unsigned workers = std::max(1u, std::thread::hardware_concurrency());
  std::string log_level;
  bool watch_config = true;
  std::string hosts_file;
  app.add_option("-c,--config", config_path, "YAML configuration file")->required();
  app.add_flag("--check-config", check_only, "validate the configuration and exit (0: valid, 1: errors)");
  app.add_option("-w,--workers", workers, "worker threads (default: number of cores)")->check(CLI::Range(1u, 256u));
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error (overrides log.level)");
  app.add_option("--watch-config", watch_config,
                 "reload when the config file changes, checked every second (default: true)");
  app.add_option("--hosts-file", hosts_file,
                 "resolve cluster dns names from this hosts-format file instead of DNS (for tests)");
  app.set_version_flag("--version", std::string("sparkgate ") + SPARKGATE_VERSION);
  CLI11_PARSE(app, argc, argv);

  if (check_only) return check_config(config_path);

  // Logs go to stderr; stdout is kept for the access log.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("sparkgate"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  auto loaded = config::load_config_file(config_path, policy::config_load_options());
  if (!loaded.config) {
    for (const auto& e : loaded.errors) spdlog::error("{}", e.to_string());
    return 1;
  }
  auto cfg = loaded.config;
  spdlog::set_level(spdlog::level::from_str(log_level.empty() ? cfg->log_level : log_level));
  const uint32_t fd_connection_limit = raise_fd_limit(*cfg);
  if (cfg->limits.max_connections == 0)
    spdlog::info("client connection limit: {} (limits.max_connections 0: from the open file limit)",
                 fd_connection_limit);

  // Block the signals before any thread starts so that only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  server::GatewayState state;
  state.fd_connection_limit = fd_connection_limit;
  state.metrics.set_build_info(SPARKGATE_VERSION);
  state.access_log.set_enabled(cfg->access_log);
  spdlog::register_logger(state.access_log.logger());
  spdlog::flush_every(std::chrono::seconds(1));
  server::install_session_observers(state);
  state.jwks.sync(cfg->auth.jwt);  // fetched once the control thread starts
  state.config.store(cfg);
  state.backends.apply_config(cfg);
  {
    engines::EngineManager::Hooks hooks;
    hooks.publish = [&state](const std::string& cluster, const std::vector<config::Endpoint>& ready) {
      state.backends.apply_discovery(cluster, ready);
    };
    hooks.sessions = [&state](const std::string& cluster, const std::string& address) -> int64_t {
      auto b = state.backends.snapshot()->find(cluster, address);
      return b ? b->sessions.load() : 0;
    };
    // With sessions in Redis, engines are claimed there too: one per key for all replicas.
    // Chosen at startup, like the session store.
    std::unique_ptr<engines::EngineCoordinator> coordinator;
    if (cfg->sessions.store == config::Sessions::Store::kRedis)
      coordinator = std::make_unique<engines::RedisEngineCoordinator>(cfg->sessions.redis);
    state.engines = std::make_unique<engines::EngineManager>(std::make_unique<engines::ProcessLauncher>(),
                                                             std::move(hooks), &state.metrics, &state.access_log,
                                                             std::chrono::milliseconds(100), std::move(coordinator));
  }
  for (const auto& l : cfg->listeners) {
    if (!l.tls) {
      state.tls.push_back(nullptr);
      continue;
    }
    std::string error;
    auto ctx = server::make_server_tls_context(*l.tls, error);
    if (!ctx) {
      spdlog::error("{}: listener {}: {}", config_path, l.address.to_string(), error);
      return 1;
    }
    state.tls.push_back(ctx);
  }

  std::vector<std::unique_ptr<server::Worker>> pool;
  for (unsigned i = 0; i < workers; ++i) {
    auto w = std::make_unique<server::Worker>(static_cast<int>(i), state);
    std::string error;
    if (!w->bind(*cfg, error)) {
      spdlog::error("{}", error);
      return 1;
    }
    pool.push_back(std::move(w));
  }
  server::ControlPlane control(state, {config_path, watch_config, std::chrono::milliseconds(1000), hosts_file,
                                      SPARKGATE_VERSION});
  admin::AdminHooks hooks;
  hooks.not_ready = [&state] { return server::not_ready_reason(state); };
  hooks.metrics = [&state, &pool] { return state.metrics.render(server::scrape_input(state, pool)); };
  hooks.config = [&state] { return state.config.load(); };
  hooks.list_engines = [&state] {
    boost::json::array a;
    for (const auto& e : state.engines->list()) {
      boost::json::object o;
      o["key"] = e.key;
      o["cluster"] = e.cluster;
      o["state"] = e.state;
      o["address"] = e.address;
      o["pid"] = e.pid;
      o["sessions"] = e.sessions;
      o["owner"] = e.remote ? "another replica" : "this replica";
      o["started"] = observe::format_utc(e.started);
      if (e.idle_since) o["idle_since"] = observe::format_utc(*e.idle_since);
      else o["idle_since"] = nullptr;
      a.push_back(std::move(o));
    }
    return a;
  };
  hooks.stop_engine = [&state](const std::string& key) { return state.engines->stop(key); };
  hooks.jwt_remote_status = [&state](const std::string& issuer) { return state.jwks.status_json(issuer); };
  hooks.release_on_backend = [&control](const routing::SessionPtr& s) {
    control.release_session(s, "operator-closed");
  };
  admin::AdminServer admin(cfg->admin.address, state.router, cfg->admin.token ? cfg->admin.token->token : std::string(),
                           std::move(hooks));
  {
    std::string error;
    if (!admin.start(error)) {
      spdlog::error("{}", error);
      return 1;
    }
  }
  control.start();
  for (auto& w : pool) w->start();
  for (const auto& l : cfg->listeners)
    spdlog::info("sparkgate {} listening on {} ({}), {} workers", SPARKGATE_VERSION, l.address.to_string(),
                 l.tls ? "TLS, ALPN h2" : "h2c", workers);
  spdlog::info("admin listening on {}", cfg->admin.address.to_string());

  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGHUP) {
      control.request_reload("SIGHUP");
      continue;
    }
    break;
  }

  spdlog::info("draining: no new connections; waiting up to {} ms for open streams",
               state.config.load()->drain.timeout.count());
  state.draining = true;
  for (auto& w : pool) w->drain();
  auto deadline = std::chrono::steady_clock::now() + state.config.load()->drain.timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    size_t open = 0;
    for (auto& w : pool) open += w->connections();
    if (open == 0) break;
    // A second signal during the drain stops at once.
    timespec wait{0, 100 * 1000 * 1000};
    if (sigtimedwait(&signals, nullptr, &wait) > 0) break;
  }
  for (auto& w : pool) w->stop();
  // Every engine the gateway started goes with it (SIGTERM, SIGKILL after its stop_grace).
  state.engines->shutdown();
  // The workers are gone: every span is queued. Bounded by one export's timeout, at most 5 s.
  if (const auto& t = state.config.load()->tracing; t.enabled())
    control.flush_traces(std::min<std::chrono::milliseconds>(t.timeout, std::chrono::seconds(5)));
  control.stop();
  admin.stop();
  spdlog::info("sparkgate stopped");
  return 0;
}
