#include "admin/api.h"

#include <boost/json.hpp>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "admin/config_json.h"
#include "grpcwire/status.h"
#include "observe/access_log.h"

namespace sparkgate::admin {

namespace json = boost::json;

namespace {

ApiResponse json_response(int status, const json::value& v) {
  ApiResponse r;
  r.status = status;
  r.body = json::serialize(v) + "\n";
  return r;
}

ApiResponse error(int status, const std::string& message) {
  return json_response(status, json::object{{"error", message}});
}

ApiResponse text(int status, std::string body) {
  ApiResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

ApiResponse method_not_allowed(const std::string& allow) {
  auto r = error(405, "method not allowed; use " + allow);
  r.allow = allow;
  return r;
}

std::chrono::system_clock::time_point wall_time(routing::Clock::time_point t) {
  return std::chrono::system_clock::now() -
         std::chrono::duration_cast<std::chrono::system_clock::duration>(routing::Clock::now() - t);
}

json::object session_json(const routing::Session& s) {
  json::object o;
  o["session_id"] = s.session_id;
  o["user"] = s.user_id;
  o["tenant"] = s.tenant();
  o["cluster"] = s.cluster;
  o["backend"] = s.backend->name();
  o["server_side_session_id"] = s.server_side_session_id();
  o["created"] = observe::format_utc(s.created_wall);
  o["last_active"] = observe::format_utc(wall_time(s.last_active()));
  o["rpcs_in_flight"] = s.in_flight.load();
  s.stats.to_json(o);
  return o;
}

json::object backend_json(const routing::BackendState& b) {
  json::object o;
  o["cluster"] = b.cluster();
  o["address"] = b.name();
  o["healthy"] = b.healthy.load();
  o["unhealthy_reason"] = b.healthy.load() ? std::string() : b.unhealthy_reason();
  o["accepts_sessions"] = b.accepts_sessions();
  o["draining"] = b.draining();
  o["drain"] = json::object{{"config", b.config_drain.load()}, {"admin", b.admin_drained()},
                            {"dns_gone", b.dns_gone.load()}};
  o["retired"] = b.retired.load();
  o["weight"] = b.weight.load();
  o["max_sessions"] = b.max_sessions.load();
  o["sessions"] = b.sessions.load();
  o["restarts_seen"] = b.epoch.load();
  return o;
}

// "a%20b" → "a b"; '+' stays '+' (paths and ids, not form data).
std::string decode(std::string_view s) { return grpcwire::percent_decode(s); }

}  // namespace

void parse_target(std::string_view target, ApiRequest& out) {
  auto q = target.find('?');
  out.path = decode(target.substr(0, q));
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    std::string key = decode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? std::string() : decode(pair.substr(eq + 1));
    if (!key.empty()) out.query[key] = value;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
}

bool Api::authorized(const ApiRequest& req) const {
  if (token_.empty()) return true;
  static constexpr std::string_view kBearer = "Bearer ";
  if (req.authorization.size() != kBearer.size() + token_.size() || !req.authorization.starts_with(kBearer))
    return false;
  return CRYPTO_memcmp(req.authorization.data() + kBearer.size(), token_.data(), token_.size()) == 0;
}

ApiResponse Api::handle(const ApiRequest& req) const {
  const bool read = req.method == "GET" || req.method == "HEAD";
  const std::string& path = req.path;
  if (path == "/healthz") {
    if (!read) return method_not_allowed("GET");
    return text(200, "ok\n");
  }
  if (path == "/readyz") {
    if (!read) return method_not_allowed("GET");
    std::string why = hooks_.not_ready ? hooks_.not_ready() : std::string();
    return why.empty() ? text(200, "ready\n") : text(503, "not ready (" + why + ")\n");
  }
  if (path == "/metrics") {
    if (!read) return method_not_allowed("GET");
    auto r = text(200, hooks_.metrics ? hooks_.metrics() : std::string());
    r.content_type = "text/plain; version=0.0.4";
    return r;
  }
  if (!path.starts_with("/v1/")) {
    return text(404, "unknown admin path " + path + " (try /healthz, /readyz, /metrics or /v1/sessions)\n");
  }
  if (!authorized(req)) {
    return error(401, "the admin API needs 'Authorization: Bearer <token>' (admin.token_env / admin.token_file)");
  }
  static constexpr std::string_view kSessions = "/v1/sessions";
  static constexpr std::string_view kBackends = "/v1/backends";
  if (path == kSessions) {
    if (!read) return method_not_allowed("GET");
    return list_sessions(req);
  }
  if (path.starts_with(std::string(kSessions) + "/")) {
    std::string id = path.substr(kSessions.size() + 1);
    if (id.empty() || id.find('/') != std::string::npos) return error(404, "no such admin path " + path);
    if (read) return get_session(req, id);
    if (req.method == "DELETE") return delete_session(req, id);
    return method_not_allowed("GET, DELETE");
  }
  if (path == kBackends) {
    if (!read) return method_not_allowed("GET");
    return list_backends();
  }
  if (path.starts_with(std::string(kBackends) + "/")) {
    std::string rest = path.substr(kBackends.size() + 1);
    auto slash = rest.rfind('/');
    std::string action = slash == std::string::npos ? std::string() : rest.substr(slash + 1);
    if (action != "drain" && action != "undrain")
      return error(404, "no such admin path " + path + " (POST /v1/backends/{address}/drain or /undrain)");
    if (req.method != "POST") return method_not_allowed("POST");
    return drain_backend(req, rest.substr(0, slash), action == "drain");
  }
  if (path == "/v1/config") {
    if (!read) return method_not_allowed("GET");
    return show_config();
  }
  static constexpr std::string_view kEngines = "/v1/engines";
  if (path == kEngines) {
    if (!read) return method_not_allowed("GET");
    boost::json::object o;
    o["engines"] = hooks_.list_engines ? hooks_.list_engines() : boost::json::array();
    return json_response(200, o);
  }
  if (path.starts_with(std::string(kEngines) + "/")) {
    std::string key = path.substr(kEngines.size() + 1);
    if (key.empty()) return error(404, "no such admin path " + path);
    if (req.method != "DELETE") return method_not_allowed("DELETE");
    if (!hooks_.stop_engine || !hooks_.stop_engine(key)) return error(404, "no engine with key '" + key + "'");
    boost::json::object o;
    o["stopped"] = key;
    return json_response(200, o);
  }
  return error(404, "no such admin path " + path);
}

ApiResponse Api::list_sessions(const ApiRequest& req) const {
  auto filter = [&](const char* key) -> const std::string* {
    auto it = req.query.find(key);
    return it == req.query.end() ? nullptr : &it->second;
  };
  const std::string* user = filter("user");
  const std::string* cluster = filter("cluster");
  const std::string* backend = filter("backend");
  std::vector<routing::SessionPtr> found;
  router_.sessions().for_each([&](const routing::SessionPtr& s) {
    if (user && s->user_id != *user) return;
    if (cluster && s->cluster != *cluster) return;
    if (backend && s->backend->name() != *backend) return;
    found.push_back(s);
  });
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a->created != b->created ? a->created < b->created : a->session_id < b->session_id;
  });
  json::array list;
  for (const auto& s : found) list.push_back(session_json(*s));
  json::object o;
  o["count"] = list.size();
  o["sessions"] = std::move(list);
  return json_response(200, o);
}

routing::SessionPtr Api::find_session(const ApiRequest& req, const std::string& id, ApiResponse& failure) const {
  auto matches = router_.sessions().find_by_id(id);
  if (auto it = req.query.find("user"); it != req.query.end()) {
    std::erase_if(matches, [&](const auto& s) { return s->user_id != it->second; });
  }
  if (matches.size() == 1) return matches.front();
  failure = matches.empty() ? error(404, "no live session " + id)
                            : error(409, "several users have a session " + id + "; add ?user=");
  return nullptr;
}

ApiResponse Api::get_session(const ApiRequest& req, const std::string& id) const {
  ApiResponse failure;
  auto session = find_session(req, id, failure);
  return session ? json_response(200, session_json(*session)) : failure;
}

ApiResponse Api::delete_session(const ApiRequest& req, const std::string& id) const {
  ApiResponse failure;
  auto target = find_session(req, id, failure);
  if (!target) return failure;
  routing::Tombstone t{routing::EndReason::kClosedByOperator, "was closed by an operator (sparkgate admin API)",
                       routing::Clock::now()};
  const std::string message = routing::ended_session_message(id, t);
  // Ended first, so that a call racing with this one already finds the tombstone.
  auto ended = router_.sessions().end(target->user_id, id, t.reason, t.detail, t.when);
  if (!ended) return error(404, "no live session " + id);
  size_t reset = 0;
  for (auto& st : ended->attached_streams()) {
    boost::asio::post(st.executor, [weak = st.stream, message] {
      if (auto stream = weak.lock()) stream->close_by_operator(message);
    });
    ++reset;
  }
  if (hooks_.release_on_backend) hooks_.release_on_backend(ended);
  spdlog::info("admin: closed session {} of user '{}' on backend {} ({} streams reset)", id, ended->user_id,
               ended->backend->name(), reset);
  json::object o = session_json(*ended);
  o["streams_reset"] = reset;
  return json_response(200, o);
}

ApiResponse Api::list_backends() const {
  json::array list;
  for (const auto& b : router_.backends().all()) list.push_back(backend_json(*b));
  return json_response(200, json::object{{"backends", std::move(list)}});
}

ApiResponse Api::drain_backend(const ApiRequest& req, const std::string& address, bool drain) const {
  auto cluster = req.query.find("cluster");
  json::array changed;
  for (const auto& b : router_.backends().drain_backend(address, cluster != req.query.end() ? &cluster->second : nullptr,
                                                        drain))
    changed.push_back(backend_json(*b));
  if (changed.empty()) return error(404, "no backend " + address + " (GET /v1/backends lists them)");
  spdlog::info("admin: backend {} {}", address, drain ? "drained" : "undrained");
  return json_response(200, json::object{{"backends", std::move(changed)}});
}

ApiResponse Api::show_config() const {
  auto cfg = hooks_.config ? hooks_.config() : nullptr;
  if (!cfg) return error(503, "no configuration loaded");
  return json_response(200, config_json(*cfg, hooks_.jwt_remote_status));
}

}  // namespace sparkgate::admin
