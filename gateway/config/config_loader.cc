#include "config/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>

#include "config/walker.h"
#include "spark/rpc.h"

namespace sparkgate::config {
namespace {
using detail::Walker;

void load_listeners(Walker& w, const YAML::Node& node, Config& cfg) {
  if (!node.IsSequence() || node.size() == 0) {
    w.error(node, "listeners must be a non-empty list");
    return;
  }
  for (const auto& item : node) {
    if (!w.check_keys(item, {"address", "tls"}, "listener")) continue;
    Listener l;
    if (!item["address"]) {
      w.error(item, "listener needs an address");
      continue;
    }
    w.get_endpoint(item["address"], "listener address", l.address);
    if (const auto tls = item["tls"]) {
      if (w.check_keys(tls, {"cert", "key", "client_ca", "require_client_cert"}, "listener tls")) {
        TlsFiles files;
        if (!tls["cert"] || !tls["key"]) {
          w.error(tls, "listener tls needs both cert and key");
        } else if (w.get_string(tls["cert"], "tls cert", files.cert) &&
                   w.get_string(tls["key"], "tls key", files.key)) {
          files.cert = w.resolve_path(files.cert);
          files.key = w.resolve_path(files.key);
          w.check_readable(tls["cert"], "tls cert", files.cert);
          w.check_readable(tls["key"], "tls key", files.key);
          if (tls["client_ca"]) w.get_readable_path(tls["client_ca"], "listener tls client_ca", files.client_ca);
          if (tls["require_client_cert"]) {
            w.get_bool(tls["require_client_cert"], "listener tls require_client_cert", files.require_client_cert);
            if (!tls["client_ca"])
              w.error(tls["require_client_cert"], "listener tls require_client_cert needs client_ca");
          }
          l.tls = files;
        }
      }
    }
    cfg.listeners.push_back(std::move(l));
  }
}

bool parse_placement(const std::string& s, Placement& out) {
  for (auto p : {Placement::kLeastSessions, Placement::kRoundRobin, Placement::kRendezvous}) {
    if (placement_name(p) == s) {
      out = p;
      return true;
    }
  }
  return false;
}

void load_backends(Walker& w, const YAML::Node& node, Cluster& c) {
  if (!node.IsSequence()) {
    w.error(node, "backends of cluster '" + c.name + "' must be a list");
    return;
  }
  std::set<std::string> seen;
  for (const auto& b : node) {
    if (!w.check_keys(b, {"address", "weight", "max_sessions", "drain"}, "backend")) continue;
    Backend be;
    if (!b["address"]) {
      w.error(b, "backend needs an address");
      continue;
    }
    if (!w.get_endpoint(b["address"], "backend address", be.address)) continue;
    if (!seen.insert(be.address.to_string()).second)
      w.error(b["address"], "duplicate backend '" + be.address.to_string() + "' in cluster '" + c.name + "'");
    if (b["weight"]) w.get_bounded(b["weight"], "backend weight", 1, 1000, be.weight, false);
    if (b["max_sessions"]) w.get_bounded(b["max_sessions"], "backend max_sessions", 0, 1000000, be.max_sessions, false);
    if (b["drain"]) w.get_bool(b["drain"], "backend drain", be.drain);
    c.backends.push_back(be);
  }
}

void load_health_check(Walker& w, const YAML::Node& n, HealthCheck& hc) {
  if (!w.check_keys(n,
                    {"enabled", "interval", "timeout", "unhealthy_threshold", "healthy_threshold", "passive_failures",
                     "retry_interval", "retry_max_interval"},
                    "health_check"))
    return;
  using std::chrono::milliseconds;
  if (n["enabled"]) w.get_bool(n["enabled"], "health_check.enabled", hc.enabled);
  bool times_ok = true;
  if (n["interval"])
    times_ok = w.get_duration_at_least(n["interval"], "health_check.interval", milliseconds(100), hc.interval);
  if (n["timeout"])
    times_ok = w.get_duration_at_least(n["timeout"], "health_check.timeout", milliseconds(10), hc.timeout) && times_ok;
  if (n["unhealthy_threshold"])
    w.get_bounded(n["unhealthy_threshold"], "health_check.unhealthy_threshold", 1, 100, hc.unhealthy_threshold, false);
  if (n["healthy_threshold"])
    w.get_bounded(n["healthy_threshold"], "health_check.healthy_threshold", 1, 100, hc.healthy_threshold, false);
  if (n["passive_failures"])
    w.get_bounded(n["passive_failures"], "health_check.passive_failures", 0, 1000, hc.passive_failures, false);
  if (n["retry_interval"] && w.get_duration(n["retry_interval"], "health_check.retry_interval", hc.retry_interval) &&
      hc.retry_interval.count() != 0 && hc.retry_interval < milliseconds(10)) {
    w.error(n["retry_interval"], "health_check.retry_interval must be 0 (off) or at least 10ms");
  }
  if (n["retry_max_interval"] &&
      w.get_duration(n["retry_max_interval"], "health_check.retry_max_interval", hc.retry_max_interval) &&
      hc.retry_max_interval < hc.retry_interval) {
    w.error(n["retry_max_interval"], "health_check.retry_max_interval (" + std::to_string(hc.retry_max_interval.count()) +
                                         "ms) must not be shorter than health_check.retry_interval (" +
                                         std::to_string(hc.retry_interval.count()) + "ms)");
  }
  if (times_ok && hc.timeout >= hc.interval) {
    w.error(n["timeout"] ? n["timeout"] : n["interval"],
            "health_check.timeout (" + std::to_string(hc.timeout.count()) +
                "ms) must be shorter than health_check.interval (" + std::to_string(hc.interval.count()) + "ms)");
  }
}

void load_upstream_tls(Walker& w, const YAML::Node& n, Cluster& c) {
  if (!w.check_keys(n, {"ca", "server_name", "cert", "key"}, "cluster tls")) return;
  UpstreamTls tls;
  bool ok = true;
  if (n["ca"]) ok = w.get_readable_path(n["ca"], "cluster tls ca", tls.ca) && ok;
  if (n["server_name"]) ok = w.get_string(n["server_name"], "cluster tls server_name", tls.server_name) && ok;
  if (n["cert"].IsDefined() != n["key"].IsDefined()) {
    w.error(n, "cluster tls needs both cert and key, or neither");
    ok = false;
  }
  if (n["cert"]) ok = w.get_readable_path(n["cert"], "cluster tls cert", tls.cert) && ok;
  if (n["key"]) ok = w.get_readable_path(n["key"], "cluster tls key", tls.key) && ok;
  if (ok) c.tls = std::move(tls);
}

// Secrets: no message below may contain the token itself.
void load_credentials(Walker& w, const YAML::Node& n, Cluster& c) {
  if (!w.check_keys(n, {"token_env", "token_file"}, "cluster credentials")) return;
  Credentials cr;
  if (w.read_secret(n, "cluster credentials", "token", cr.token, cr.source)) c.credentials = std::move(cr);
}

void load_engines(Walker& w, const YAML::Node& n, Cluster& c) {
  const std::string what = "engines of cluster '" + c.name + "'";
  if (!w.check_keys(n, {"share", "launcher", "local", "command", "max_engines", "idle_timeout", "start_timeout",
                        "stop_grace"},
                    "cluster engines"))
    return;
  Engines e;
  bool ok = true;
  if (const auto s = n["share"]) {
    std::string text;
    if (!w.get_string(s, "engines share", text)) ok = false;
    else if (text == "user") e.share = Engines::Share::kUser;
    else if (text == "group") e.share = Engines::Share::kGroup;
    else if (text == "tenant") e.share = Engines::Share::kTenant;
    else if (text == "cluster") e.share = Engines::Share::kCluster;
    else {
      w.error(s, "engines share '" + text + "' of cluster '" + c.name + "' is not one of user, group, tenant, cluster");
      ok = false;
    }
  }
  std::string launcher = "local";
  if (const auto l = n["launcher"]) {
    if (!w.get_string(l, "engines launcher", launcher)) ok = false;
    else if (launcher == "local") e.launcher = Engines::Launcher::kLocal;
    else if (launcher == "command") e.launcher = Engines::Launcher::kCommand;
    else {
      w.error(l, "engines launcher '" + launcher + "' of cluster '" + c.name + "' is not one of local, command");
      ok = false;
    }
  }
  const auto local = n["local"];
  const auto command = n["command"];
  if (e.launcher == Engines::Launcher::kLocal && command) {
    w.error(command, what + ": command is only allowed with launcher: command");
    ok = false;
  }
  if (e.launcher == Engines::Launcher::kCommand && local) {
    w.error(local, what + ": local is only allowed with launcher: local");
    ok = false;
  }
  if (local && w.check_keys(local, {"spark_home", "master", "conf"}, "engines local")) {
    if (const auto h = local["spark_home"]) {
      if (!w.get_string(h, "engines local spark_home", e.spark_home)) ok = false;
      else if (e.spark_home.empty()) {
        w.error(h, "engines local spark_home must not be empty (leave it out to use SPARK_HOME)");
        ok = false;
      }
    }
    if (const auto m = local["master"]) {
      if (!w.get_string(m, "engines local master", e.master)) ok = false;
      else if (e.master.empty()) {
        w.error(m, "engines local master must not be empty");
        ok = false;
      }
    }
    if (const auto conf = local["conf"]) {
      if (!conf.IsMap()) {
        w.error(conf, "engines local conf must be a mapping of Spark settings (spark.driver.memory: 1g)");
        ok = false;
      } else {
        for (const auto& kv : conf) {
          std::string k, v;
          if (!w.get_string(kv.first, "engines local conf key", k) ||
              !w.get_string(kv.second, "engines local conf value of " + k, v)) {
            ok = false;
            continue;
          }
          if (k.rfind("spark.connect.grpc.binding.", 0) == 0 || k == "spark.connect.authenticate.token") {
            w.error(kv.first, "engines local conf must not set " + k + ": the gateway sets it for each engine");
            ok = false;
            continue;
          }
          e.conf.emplace_back(k, v);
        }
      }
    }
  } else if (local) {
    ok = false;
  }
  if (e.launcher == Engines::Launcher::kCommand) {
    if (!command) {
      w.error(n, what + " with launcher: command needs command: {argv: [program, ...]}");
      ok = false;
    } else if (w.check_keys(command, {"argv"}, "engines command")) {
      const auto argv = command["argv"];
      if (!argv) {
        w.error(command, "engines command needs argv: [program, ...]");
        ok = false;
      } else if (!w.get_string_list(argv, "engines command argv", e.argv)) {
        ok = false;
      } else if (e.argv.empty() || e.argv[0].empty()) {
        w.error(argv, "engines command argv must name a program");
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const auto m = n["max_engines"]) ok = w.get_bounded(m, "engines max_engines", 1, 100000, e.max_engines, false) && ok;
  if (const auto t = n["idle_timeout"])
    ok = w.get_duration_at_least(t, "engines idle_timeout", std::chrono::milliseconds(100), e.idle_timeout) && ok;
  if (const auto t = n["start_timeout"])
    ok = w.get_duration_at_least(t, "engines start_timeout", std::chrono::milliseconds(100), e.start_timeout) && ok;
  if (const auto t = n["stop_grace"])
    ok = w.get_duration_at_least(t, "engines stop_grace", std::chrono::milliseconds(0), e.stop_grace) && ok;
  if (ok) c.engines = std::move(e);
}

void load_clusters(Walker& w, const YAML::Node& node, Config& cfg) {
  if (!node.IsSequence() || node.size() == 0) {
    w.error(node, "clusters must be a non-empty list");
    return;
  }
  std::set<std::string> names;
  for (const auto& item : node) {
    if (!w.check_keys(item,
                      {"name", "placement", "backends", "dns", "dns_refresh", "health_check", "panic_routing", "tls",
                       "credentials", "engines"},
                      "cluster"))
      continue;
    Cluster c;
    if (!item["name"] || !w.get_string(item["name"], "cluster name", c.name)) {
      if (!item["name"]) w.error(item, "cluster needs a name");
      continue;
    }
    if (c.name.empty()) w.error(item["name"], "cluster name must not be empty");
    if (!names.insert(c.name).second) w.error(item["name"], "duplicate cluster name '" + c.name + "'");
    if (const auto p = item["placement"]) {
      std::string text;
      if (w.get_string(p, "cluster placement", text) && !parse_placement(text, c.placement))
        w.error(p, "placement '" + text + "' of cluster '" + c.name +
                       "' is not one of least_sessions, round_robin, rendezvous");
    }
    const auto backends = item["backends"];
    if (backends) load_backends(w, backends, c);
    const auto dns = item["dns"];
    if (dns) {
      Endpoint e;
      if (w.get_dial_endpoint(dns, "cluster dns", e)) c.dns = e;
    }
    if (const auto refresh = item["dns_refresh"]) {
      if (!dns)
        w.error(refresh, "dns_refresh of cluster '" + c.name + "' is only allowed together with dns");
      else
        w.get_duration_at_least(refresh, "cluster dns_refresh", std::chrono::milliseconds(100), c.dns_refresh);
    }
    const bool has_backends = backends && backends.IsSequence() && backends.size() > 0;
    const auto engines = item["engines"];
    if (engines) {
      if (backends || dns)
        w.error(engines, "cluster '" + c.name + "' has engines and " + (backends ? "backends" : "dns") +
                             "; give either backends/dns or engines");
      load_engines(w, engines, c);
      // The gateway starts its engines itself and learns at once when one exits; probes
      // without the engine's token would only be refused.
      c.health_check.enabled = false;
      if (item["health_check"]) w.error(item["health_check"], "cluster '" + c.name + "' has engines: health_check is not used");
    } else if (!has_backends && !dns) {
      w.error(backends ? backends : item,
              "cluster '" + c.name + "' needs a non-empty list of backends, or dns, or engines");
    }
    if (const auto hc = item["health_check"]; hc && !engines) load_health_check(w, hc, c.health_check);
    if (const auto panic = item["panic_routing"]) w.get_bool(panic, "cluster panic_routing", c.panic_routing);
    if (const auto tls = item["tls"]) load_upstream_tls(w, tls, c);
    if (const auto cr = item["credentials"]) {
      if (engines) w.error(cr, "cluster '" + c.name + "' has engines: each engine gets its own token, credentials are not used");
      else load_credentials(w, cr, c);
    }
    cfg.clusters.push_back(std::move(c));
  }
}

void load_header_matchers(Walker& w, const YAML::Node& n, RouteMatch& m) {
  if (!n.IsMap()) {
    w.error(n, "route match headers must be a mapping of header name to a string or {regex: ...}");
    return;
  }
  std::set<std::string> seen;
  for (const auto& kv : n) {
    std::string name;
    if (!w.get_string(kv.first, "route match header name", name)) continue;
    // HTTP/2 header names are lower case on the wire.
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (name.empty()) {
      w.error(kv.first, "route match header name must not be empty");
      continue;
    }
    if (name.front() == ':') {
      w.error(kv.first, "route match header '" + name + "': pseudo-headers (starting with ':') cannot be matched");
      continue;
    }
    if (!seen.insert(name).second) {
      w.error(kv.first, "duplicate header '" + name + "' in route match");
      continue;
    }
    const std::string what = "route match header '" + name + "'";
    StringMatcher sm;
    const YAML::Node value = kv.second;
    if (value.IsMap()) {
      if (!w.check_keys(value, {"regex"}, what)) continue;
      if (!value["regex"]) {
        w.error(value, what + " needs regex");
        continue;
      }
      if (!w.get_regex(value["regex"], what, sm)) continue;
    } else if (!w.get_string(value, what, sm.text)) {
      continue;
    }
    m.headers.emplace_back(name, std::move(sm));
  }
}

void load_route_match(Walker& w, const YAML::Node& n, RouteMatch& m) {
  if (!w.check_keys(n, {"users", "groups", "tenants", "client_type", "headers", "rpc"}, "route match")) return;
  if (n["users"]) w.get_string_list(n["users"], "route match users", m.users);
  if (n["groups"]) w.get_string_list(n["groups"], "route match groups", m.groups);
  if (n["tenants"]) w.get_string_list(n["tenants"], "route match tenants", m.tenants);
  if (n["client_type"]) {
    StringMatcher sm;
    if (w.get_regex(n["client_type"], "route match client_type", sm)) m.client_type = std::move(sm);
  }
  if (n["headers"]) load_header_matchers(w, n["headers"], m);
  if (n["rpc"]) {
    w.for_each_string(n["rpc"], "route match rpc", [&](const YAML::Node& at, const std::string& name) {
      std::string valid;
      for (const auto& info : spark::all_rpcs()) {
        if (info.name == name) {
          m.rpcs.push_back(name);
          return;
        }
        valid += (valid.empty() ? "" : ", ") + std::string(info.name);
      }
      w.error(at, "unknown rpc '" + name + "' in route match (valid: " + valid + ")");
    });
  }
}

void load_routes(Walker& w, const YAML::Node& node, Config& cfg) {
  if (!node.IsSequence() || node.size() == 0) {
    w.error(node, "routes must be a non-empty list");
    return;
  }
  for (const auto& item : node) {
    if (!w.check_keys(item, {"match", "cluster", "deny"}, "route")) continue;
    Route r;
    r.line = item.Mark().line + 1;
    if (item["match"]) load_route_match(w, item["match"], r.match);
    const auto cluster = item["cluster"];
    const auto deny = item["deny"];
    if (cluster && deny) {
      w.error(item, "route has both cluster and deny; give exactly one");
      continue;
    }
    if (!cluster && !deny) {
      w.error(item, "route needs a cluster or a deny message");
      continue;
    }
    if (deny) {
      std::string message;
      if (!w.get_string(deny, "route deny", message)) continue;
      if (message.empty()) w.error(deny, "route deny message must not be empty");
      r.deny = std::move(message);
    } else {
      if (!w.get_string(cluster, "route cluster", r.cluster)) continue;
      if (!cfg.find_cluster(r.cluster)) {
        std::string known;
        for (const auto& c : cfg.clusters) known += (known.empty() ? "" : ", ") + c.name;
        w.error(cluster, "route names unknown cluster '" + r.cluster + "' (clusters: " + known + ")");
      }
    }
    cfg.routes.push_back(std::move(r));
  }
}

}  // namespace

void detail::load_redis(Walker& w, const YAML::Node& redis, const std::string& where, Redis& out) {
  if (!w.check_keys(redis, {"address", "key_prefix", "timeout"}, where)) return;
  if (redis["address"]) w.get_dial_endpoint(redis["address"], where + ".address", out.address);
  if (const auto prefix = redis["key_prefix"]) {
    if (w.get_string(prefix, where + ".key_prefix", out.key_prefix) && out.key_prefix.empty())
      w.error(prefix, where + ".key_prefix must not be empty");
  }
  if (redis["timeout"])
    w.get_duration_at_least(redis["timeout"], where + ".timeout", std::chrono::milliseconds(10), out.timeout);
}

namespace {

void load_sessions(Walker& w, const YAML::Node& n, Sessions& s) {
  if (!w.check_keys(n, {"idle_timeout", "max_lifetime", "store", "redis"}, "sessions")) return;
  if (n["idle_timeout"]) w.get_duration(n["idle_timeout"], "sessions.idle_timeout", s.idle_timeout);
  if (n["max_lifetime"]) w.get_duration(n["max_lifetime"], "sessions.max_lifetime", s.max_lifetime);
  if (const auto store = n["store"]) {
    std::string text;
    if (w.get_string(store, "sessions.store", text)) {
      if (text == "memory") s.store = Sessions::Store::kMemory;
      else if (text == "redis") s.store = Sessions::Store::kRedis;
      else w.error(store, "sessions.store '" + text + "' is not one of memory, redis");
    }
  }
  if (const auto redis = n["redis"]) detail::load_redis(w, redis, "sessions.redis", s.redis);
}

void load_document(Walker& w, const YAML::Node& root, Config& cfg) {
  if (!root.IsMap()) {
    w.error(root, "the configuration must be a YAML mapping with listeners, clusters and routes");
    return;
  }
  w.check_keys(root, {"listeners", "clusters", "routes", "sessions", "auth", "identity", "quotas", "admin", "limits",
                     "http2", "upstream", "drain", "log", "tracing"},
               "the top level");
  for (const char* required : {"listeners", "clusters", "routes"}) {
    if (!root[required]) w.error(root, std::string("missing required key '") + required + "'");
  }
  if (root["listeners"]) load_listeners(w, root["listeners"], cfg);
  if (root["clusters"]) load_clusters(w, root["clusters"], cfg);
  if (root["routes"]) load_routes(w, root["routes"], cfg);
  if (root["sessions"]) load_sessions(w, root["sessions"], cfg.sessions);
  // auth before identity: identity's default depends on whether auth is on.
  detail::load_auth(w, root["auth"], cfg);
  detail::load_identity(w, root["identity"], cfg);
  detail::load_quotas(w, root["quotas"], cfg);
  detail::load_tracing(w, root["tracing"], cfg);

  if (const auto admin = root["admin"]) {
    if (w.check_keys(admin, {"address", "token_env", "token_file"}, "admin")) {
      if (admin["address"]) w.get_endpoint(admin["address"], "admin address", cfg.admin.address);
      if (admin["token_env"] || admin["token_file"]) {
        Credentials cr;
        if (w.read_secret(admin, "admin", "token", cr.token, cr.source)) cfg.admin.token = std::move(cr);
      }
    }
  }
  if (const auto limits = root["limits"]) {
    if (w.check_keys(limits,
                     {"max_message_bytes", "max_header_list_bytes", "max_envelope_scan_bytes", "header_timeout",
                      "idle_timeout", "max_connections"},
                     "limits")) {
      if (limits["max_message_bytes"])
        w.get_bounded(limits["max_message_bytes"], "limits.max_message_bytes", 1024, 2ull << 30,
                      cfg.limits.max_message_bytes, true);
      if (limits["max_header_list_bytes"])
        w.get_bounded(limits["max_header_list_bytes"], "limits.max_header_list_bytes", 1024, 1u << 20,
                      cfg.limits.max_header_list_bytes, true);
      if (limits["max_envelope_scan_bytes"])
        w.get_bounded(limits["max_envelope_scan_bytes"], "limits.max_envelope_scan_bytes", 1024, 16u << 20,
                      cfg.limits.max_envelope_scan_bytes, true);
      if (limits["header_timeout"])
        w.get_duration_at_least(limits["header_timeout"], "limits.header_timeout", std::chrono::milliseconds(100),
                                cfg.limits.header_timeout);
      if (limits["idle_timeout"]) w.get_duration(limits["idle_timeout"], "limits.idle_timeout", cfg.limits.idle_timeout);
      if (limits["max_connections"])
        w.get_bounded(limits["max_connections"], "limits.max_connections", 0, 10000000, cfg.limits.max_connections,
                      false);
    }
  }
  if (const auto h2 = root["http2"]) {
    if (w.check_keys(h2, {"stream_window_bytes", "connection_window_bytes", "max_concurrent_streams"}, "http2")) {
      // 2^31-1 is HTTP/2's largest window.
      if (h2["stream_window_bytes"])
        w.get_bounded(h2["stream_window_bytes"], "http2.stream_window_bytes", 65535, (1ull << 31) - 1,
                      cfg.http2.stream_window_bytes, true);
      if (h2["connection_window_bytes"])
        w.get_bounded(h2["connection_window_bytes"], "http2.connection_window_bytes", 65535, (1ull << 31) - 1,
                      cfg.http2.connection_window_bytes, true);
      if (h2["max_concurrent_streams"])
        w.get_bounded(h2["max_concurrent_streams"], "http2.max_concurrent_streams", 1, 100000,
                      cfg.http2.max_concurrent_streams, false);
    }
  }
  if (const auto up = root["upstream"]) {
    if (w.check_keys(up, {"connect_timeout", "max_connections_per_backend", "idle_timeout"}, "upstream")) {
      if (up["connect_timeout"]) w.get_duration(up["connect_timeout"], "upstream.connect_timeout", cfg.upstream.connect_timeout);
      if (up["max_connections_per_backend"])
        w.get_bounded(up["max_connections_per_backend"], "upstream.max_connections_per_backend", 1, 10000,
                      cfg.upstream.max_connections_per_backend, false);
      if (up["idle_timeout"]) w.get_duration(up["idle_timeout"], "upstream.idle_timeout", cfg.upstream.idle_timeout);
    }
  }
  if (const auto drain = root["drain"]) {
    if (w.check_keys(drain, {"timeout"}, "drain") && drain["timeout"])
      w.get_duration(drain["timeout"], "drain.timeout", cfg.drain.timeout);
  }
  if (const auto log = root["log"]) {
    if (w.check_keys(log, {"level", "access"}, "log") && log["level"]) {
      if (w.get_string(log["level"], "log.level", cfg.log_level)) {
        static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
        if (!levels.count(cfg.log_level))
          w.error(log["level"], "log.level '" + cfg.log_level + "' is not one of trace, debug, info, warn, error, critical, off");
      }
    }
    if (log.IsMap() && log["access"]) w.get_bool(log["access"], "log.access", cfg.access_log);
  }
  if (cfg.limits.max_envelope_scan_bytes > cfg.http2.stream_window_bytes)
    w.error(root["limits"] ? root["limits"] : root,
            "limits.max_envelope_scan_bytes (" + std::to_string(cfg.limits.max_envelope_scan_bytes) +
                ") must not exceed http2.stream_window_bytes (" + std::to_string(cfg.http2.stream_window_bytes) +
                "): the envelope is read before the stream window reopens");
}

LoadResult finish(Walker& w, std::shared_ptr<Config> cfg) {
  LoadResult r;
  r.errors = std::move(w.errors());
  if (r.errors.empty()) r.config = std::move(cfg);
  return r;
}

}  // namespace

std::string ConfigError::to_string() const {
  if (line > 0) return file + ":" + std::to_string(line) + ": " + reason;
  return file + ": " + reason;
}

bool parse_endpoint(const std::string& text, Endpoint& out, std::string& reason) {
  std::string host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      reason = "expected [ipv6]:port";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) {
      reason = "expected host:port";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      reason = "IPv6 addresses must be written as [addr]:port";
      return false;
    }
  }
  if (host.empty()) {
    reason = "missing host";
    return false;
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value > 65535) {
    reason = "port must be a number from 0 to 65535";
    return false;
  }
  out.host = host;
  out.port = static_cast<uint16_t>(value);
  return true;
}

LoadResult load_config_string(const std::string& yaml, const std::string& name, const std::string& base_dir,
                              const LoadOptions& options) {
  Walker w(name, base_dir);
  w.load_options = &options;
  auto cfg = std::make_shared<Config>();
  cfg->source_path = name;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    w.errors().push_back({name, e.mark.line >= 0 ? e.mark.line + 1 : 0, "YAML syntax error: " + e.msg});
    return finish(w, nullptr);
  }
  try {
    load_document(w, root, *cfg);
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws on conversions we did not anticipate; report it as a config error.
    w.errors().push_back({name, e.mark.line >= 0 ? e.mark.line + 1 : 0, e.msg});
  }
  return finish(w, std::move(cfg));
}

LoadResult load_config_file(const std::string& path, const LoadOptions& options) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    LoadResult r;
    r.errors.push_back({path, 0, "is a directory, not a configuration file"});
    return r;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.errors.push_back({path, 0, std::string("cannot open the file: ") + std::strerror(errno)});
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto dir = std::filesystem::absolute(std::filesystem::path(path)).parent_path().string();
  return load_config_string(ss.str(), path, dir, options);
}

}  // namespace sparkgate::config
