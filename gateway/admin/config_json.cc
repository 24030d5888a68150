#include "admin/config_json.h"

#include <boost/json.hpp>


namespace sparkgate::admin {

namespace json = boost::json;

namespace {

constexpr const char* kRedacted = "<redacted>";

std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + "ms"; }

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.push_back(json::value(s));
  return a;
}

json::object redis_json(const config::Redis& r) {
  return {{"address", r.address.to_string()}, {"key_prefix", r.key_prefix}, {"timeout", ms(r.timeout)}};
}

json::object quota_json(const config::QuotaLimits& q) {
  json::object o;
  if (q.max_sessions) o["max_sessions"] = *q.max_sessions;
  if (q.max_concurrent_operations) o["max_concurrent_operations"] = *q.max_concurrent_operations;
  if (q.requests_per_second) o["requests_per_second"] = *q.requests_per_second;
  if (q.burst) o["burst"] = *q.burst;
  if (q.max_artifact_bytes) o["max_artifact_bytes"] = *q.max_artifact_bytes;
  if (q.max_message_bytes) o["max_message_bytes"] = *q.max_message_bytes;
  return o;
}

json::object quota_map(const std::vector<std::pair<std::string, config::QuotaLimits>>& v) {
  json::object o;
  for (const auto& [name, q] : v) o[name] = quota_json(q);
  return o;
}

json::value credentials_json(const std::optional<config::Credentials>& c) {
  if (!c) return nullptr;
  return json::object{{"source", c->source}, {"token", kRedacted}};
}

json::object cluster_json(const config::Cluster& c) {
  json::object o;
  o["name"] = c.name;
  o["placement"] = config::placement_name(c.placement);
  json::array backends;
  for (const auto& b : c.backends) {
    backends.push_back(json::object{{"address", b.address.to_string()},
                                    {"weight", b.weight},
                                    {"max_sessions", b.max_sessions},
                                    {"drain", b.drain}});
  }
  o["backends"] = std::move(backends);
  if (c.dns) {
    o["dns"] = c.dns->to_string();
    o["dns_refresh"] = ms(c.dns_refresh);
  }
  const auto& h = c.health_check;
  o["health_check"] = json::object{{"enabled", h.enabled},
                                   {"interval", ms(h.interval)},
                                   {"timeout", ms(h.timeout)},
                                   {"unhealthy_threshold", h.unhealthy_threshold},
                                   {"healthy_threshold", h.healthy_threshold},
                                   {"passive_failures", h.passive_failures},
                                   {"retry_interval", ms(h.retry_interval)},
                                   {"retry_max_interval", ms(h.retry_max_interval)}};
  o["panic_routing"] = c.panic_routing;
  if (c.tls) {
    o["tls"] = json::object{{"ca", c.tls->ca}, {"server_name", c.tls->server_name}, {"cert", c.tls->cert},
                            {"key", c.tls->key}};
  }
  o["credentials"] = credentials_json(c.credentials);
  return o;
}

json::object route_json(const config::Route& r) {
  json::object match;
  if (!r.match.users.empty()) match["users"] = strings(r.match.users);
  if (!r.match.groups.empty()) match["groups"] = strings(r.match.groups);
  if (!r.match.tenants.empty()) match["tenants"] = strings(r.match.tenants);
  if (r.match.client_type) match["client_type"] = r.match.client_type->text;
  if (!r.match.headers.empty()) {
    json::object h;
    for (const auto& [name, m] : r.match.headers) {
      if (m.regex) h[name] = json::object{{"regex", m.text}};
      else h[name] = m.text;
    }
    match["headers"] = std::move(h);
  }
  if (!r.match.rpcs.empty()) match["rpc"] = strings(r.match.rpcs);
  json::object o{{"line", r.line}, {"match", std::move(match)}};
  if (r.deny) o["deny"] = *r.deny;
  else o["cluster"] = r.cluster;
  return o;
}

// An issuer's remote key source, and what was fetched from it.
json::object remote_json(const config::JwtIssuer& j, const RemoteStatus& status) {
  const auto& r = *j.remote;
  json::object o{{"discovery", r.discovery},
                 {"ca_file", r.ca_file.empty() ? std::string("(system trust store)") : r.ca_file},
                 {"refresh_interval", ms(r.refresh_interval)},
                 {"min_refresh_interval", ms(r.min_refresh_interval)}};
  if (!r.discovery) o["jwks_uri"] = r.jwks_uri;
  if (status) {
    for (auto& kv : status(j.issuer)) o[kv.key()] = kv.value();
  }
  return o;
}

json::object auth_json(const config::Auth& a, const RemoteStatus& remote_status) {
  json::array tokens;
  for (const auto& t : a.tokens) {
    tokens.push_back(json::object{{"sha256", kRedacted},
                                  {"user", t.principal.user},
                                  {"groups", strings(t.principal.groups)},
                                  {"tenant", t.principal.tenant}});
  }
  json::array jwt;
  for (const auto& j : a.jwt) {
    jwt.push_back(json::object{{"issuer", j.issuer},
                               {"audience", strings(j.audiences)},
                               {"algorithms", strings(j.algorithms)},
                               {"leeway", std::to_string(j.leeway.count()) + "s"},
                               {"claims", json::object{{"user", j.user_claim},
                                                       {"groups", j.groups_claim},
                                                       {"tenant", j.tenant_claim}}},
                               {"keys", strings(j.key_sources)}});
    if (j.remote) jwt.back().as_object()["remote"] = remote_json(j, remote_status);
  }
  json::object o{{"tokens", std::move(tokens)},
                 {"jwt", std::move(jwt)},
                 {"anonymous", a.anonymous ? "allow" : "deny"},
                 {"forward_client_credentials", a.forward_client_credentials}};
  if (a.mtls) {
    o["mtls"] = json::object{{"user_from", config::cert_identity_name(a.mtls->user_from)},
                             {"groups_from", a.mtls->groups_from_ou ? "subject_ou" : ""},
                             {"tenant_from", a.mtls->tenant_from_o ? "subject_o" : ""}};
  }
  return o;
}

}  // namespace

json::value config_json(const config::Config& cfg, const RemoteStatus& remote_status) {
  json::object o;
  o["source"] = cfg.source_path;
  json::array listeners;
  for (const auto& l : cfg.listeners) {
    json::object lo{{"address", l.address.to_string()}};
    if (l.tls) {
      lo["tls"] = json::object{{"cert", l.tls->cert},
                               {"key", l.tls->key},
                               {"client_ca", l.tls->client_ca},
                               {"require_client_cert", l.tls->require_client_cert}};
    }
    listeners.push_back(std::move(lo));
  }
  o["listeners"] = std::move(listeners);
  json::array clusters;
  for (const auto& c : cfg.clusters) clusters.push_back(cluster_json(c));
  o["clusters"] = std::move(clusters);
  json::array routes;
  for (const auto& r : cfg.routes) routes.push_back(route_json(r));
  o["routes"] = std::move(routes);
  const auto& s = cfg.sessions;
  json::object sessions{{"idle_timeout", ms(s.idle_timeout)},
                        {"max_lifetime", ms(s.max_lifetime)},
                        {"store", s.store == config::Sessions::Store::kRedis ? "redis" : "memory"}};
  if (s.store == config::Sessions::Store::kRedis) sessions["redis"] = redis_json(s.redis);
  o["sessions"] = std::move(sessions);
  o["auth"] = auth_json(cfg.auth, remote_status);
  o["identity"] = json::object{{"mode", config::identity_mode_name(cfg.identity.mode)}};
  const auto& q = cfg.quotas;
  json::object quotas{{"default", quota_json(q.defaults)},
                      {"groups", quota_map(q.groups)},
                      {"tenants", quota_map(q.tenants)},
                      {"users", quota_map(q.users)},
                      {"store", q.store == config::Quotas::Store::kRedis ? "redis" : "memory"},
                      {"on_store_failure", q.on_store_failure == config::Quotas::OnStoreFailure::kDeny ? "deny" : "allow"}};
  if (q.store == config::Quotas::Store::kRedis) quotas["redis"] = redis_json(q.redis);
  o["quotas"] = std::move(quotas);
  o["admin"] = json::object{{"address", cfg.admin.address.to_string()}, {"token", credentials_json(cfg.admin.token)}};
  o["limits"] = json::object{{"max_message_bytes", cfg.limits.max_message_bytes},
                             {"max_header_list_bytes", cfg.limits.max_header_list_bytes},
                             {"max_envelope_scan_bytes", cfg.limits.max_envelope_scan_bytes},
                             {"header_timeout", ms(cfg.limits.header_timeout)},
                             {"idle_timeout", ms(cfg.limits.idle_timeout)},
                             {"max_connections", cfg.limits.max_connections}};
  o["http2"] = json::object{{"stream_window_bytes", cfg.http2.stream_window_bytes},
                            {"connection_window_bytes", cfg.http2.connection_window_bytes},
                            {"max_concurrent_streams", cfg.http2.max_concurrent_streams}};
  o["upstream"] = json::object{{"connect_timeout", ms(cfg.upstream.connect_timeout)},
                               {"max_connections_per_backend", cfg.upstream.max_connections_per_backend},
                               {"idle_timeout", ms(cfg.upstream.idle_timeout)}};
  o["drain"] = json::object{{"timeout", ms(cfg.drain.timeout)}};
  if (cfg.tracing.enabled()) {
    const auto& t = cfg.tracing;
    json::object headers;
    // Header values are secrets (API keys): only where each came from.
    for (const auto& h : t.headers) headers[h.name] = json::object{{"source", h.source}, {"value", kRedacted}};
    o["tracing"] = json::object{{"otlp", json::object{{"endpoint", t.endpoint},
                                                       {"url", t.url.text.empty() ? t.endpoint : t.url.text},
                                                       {"traces_path", t.url.target},
                                                       {"headers", std::move(headers)},
                                                       {"timeout", ms(t.timeout)},
                                                       {"ca_file", t.ca_file}}},
                                {"sample_ratio", t.sample_ratio},
                                {"service_name", t.service_name},
                                {"queue_size", t.queue_size},
                                {"batch_size", t.batch_size},
                                {"flush_interval", ms(t.flush_interval)}};
  } else {
    o["tracing"] = nullptr;
  }
  o["log"] = json::object{{"level", cfg.log_level}, {"access", cfg.access_log}};
  return o;
}

}  // namespace sparkgate::admin
