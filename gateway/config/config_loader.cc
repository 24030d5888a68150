#include "config/config_loader.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace sparkgate::config {
namespace {

// Collects errors with line numbers while walking the YAML tree. Walking continues after
// an error so that one run reports every problem in the file.
class Walker {
 public:
  Walker(std::string file, std::string base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  std::vector<ConfigError>& errors() { return errors_; }

  void error(const YAML::Node& at, const std::string& reason) {
    int line = at.IsDefined() ? at.Mark().line + 1 : 0;
    if (line < 0) line = 0;
    errors_.push_back({file_, line, reason});
  }

  // Rejects keys of `map` not in `allowed`; `where` names the section for the message.
  bool check_keys(const YAML::Node& map, const std::set<std::string>& allowed,
                  const std::string& where) {
    if (!map.IsMap()) {
      error(map, where + " must be a mapping");
      return false;
    }
    for (const auto& kv : map) {
      auto key = kv.first.as<std::string>("");
      if (!allowed.count(key)) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        error(kv.first, "unknown key '" + key + "' in " + where + " (allowed: " + list + ")");
      }
    }
    return true;
  }

  bool get_string(const YAML::Node& n, const std::string& what, std::string& out) {
    if (!n.IsScalar()) {
      error(n, what + " must be a string");
      return false;
    }
    out = n.Scalar();
    return true;
  }

  bool get_endpoint(const YAML::Node& n, const std::string& what, Endpoint& out) {
    std::string text;
    if (!get_string(n, what, text)) return false;
    std::string reason;
    if (!parse_endpoint(text, out, reason)) {
      error(n, what + " '" + text + "': " + reason);
      return false;
    }
    return true;
  }

  // Integers with an optional binary unit: 1048576, "1MiB", "64KiB", "128 MiB".
  bool get_bytes(const YAML::Node& n, const std::string& what, uint64_t& out) {
    if (!n.IsScalar()) {
      error(n, what + " must be a size (bytes, or a number with KiB/MiB/GiB)");
      return false;
    }
    std::string s = n.Scalar();
    s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr == s.data()) {
      error(n, what + " '" + n.Scalar() + "' is not a size");
      return false;
    }
    std::string unit(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
    uint64_t mul = 1;
    if (unit.empty() || unit == "B") mul = 1;
    else if (unit == "KiB") mul = 1ull << 10;
    else if (unit == "MiB") mul = 1ull << 20;
    else if (unit == "GiB") mul = 1ull << 30;
    else {
      error(n, what + " '" + n.Scalar() + "': unknown unit '" + unit + "' (use B, KiB, MiB or GiB)");
      return false;
    }
    if (value > (UINT64_MAX / mul)) {
      error(n, what + " '" + n.Scalar() + "' is too large");
      return false;
    }
    out = value * mul;
    return true;
  }

  // "500ms", "5s", "2m", or a bare number of milliseconds.
  bool get_duration(const YAML::Node& n, const std::string& what, std::chrono::milliseconds& out) {
    if (!n.IsScalar()) {
      error(n, what + " must be a duration such as 500ms, 5s or 2m");
      return false;
    }
    const std::string& s = n.Scalar();
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || ptr == s.data()) {
      error(n, what + " '" + s + "' is not a duration (examples: 500ms, 5s, 2m)");
      return false;
    }
    std::string unit(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
    if (unit.empty() || unit == "ms") out = std::chrono::milliseconds(value);
    else if (unit == "s") out = std::chrono::seconds(value);
    else if (unit == "m") out = std::chrono::minutes(value);
    else if (unit == "h") out = std::chrono::hours(value);
    else {
      error(n, what + " '" + s + "': unknown unit '" + unit + "' (use ms, s, m or h)");
      return false;
    }
    return true;
  }

  template <typename T>
  bool get_bounded(const YAML::Node& n, const std::string& what, uint64_t lo, uint64_t hi, T& out,
                   bool is_size) {
    uint64_t v = 0;
    if (is_size) {
      if (!get_bytes(n, what, v)) return false;
    } else {
      if (!n.IsScalar()) {
        error(n, what + " must be an integer");
        return false;
      }
      const std::string& s = n.Scalar();
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || ptr != s.data() + s.size()) {
        error(n, what + " '" + s + "' is not an integer");
        return false;
      }
    }
    if (v < lo || v > hi) {
      error(n, what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                   " (got " + std::to_string(v) + ")");
      return false;
    }
    out = static_cast<T>(v);
    return true;
  }

  std::string resolve_path(const std::string& p) const {
    std::filesystem::path path(p);
    if (path.is_absolute()) return p;
    return (std::filesystem::path(base_dir_) / path).lexically_normal().string();
  }

  void check_readable(const YAML::Node& n, const std::string& what, const std::string& path) {
    std::ifstream f(path);
    if (!f) error(n, what + " '" + path + "' cannot be read");
  }

 private:
  std::string file_;
  std::string base_dir_;
  std::vector<ConfigError> errors_;
};

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
      if (w.check_keys(tls, {"cert", "key"}, "listener tls")) {
        TlsFiles files;
        if (!tls["cert"] || !tls["key"]) {
          w.error(tls, "listener tls needs both cert and key");
        } else if (w.get_string(tls["cert"], "tls cert", files.cert) &&
                   w.get_string(tls["key"], "tls key", files.key)) {
          files.cert = w.resolve_path(files.cert);
          files.key = w.resolve_path(files.key);
          w.check_readable(tls["cert"], "tls cert", files.cert);
          w.check_readable(tls["key"], "tls key", files.key);
          l.tls = files;
        }
      }
    }
    cfg.listeners.push_back(std::move(l));
  }
}

void load_clusters(Walker& w, const YAML::Node& node, Config& cfg) {
  if (!node.IsSequence() || node.size() == 0) {
    w.error(node, "clusters must be a non-empty list");
    return;
  }
  std::set<std::string> names;
  for (const auto& item : node) {
    if (!w.check_keys(item, {"name", "backends"}, "cluster")) continue;
    Cluster c;
    if (!item["name"] || !w.get_string(item["name"], "cluster name", c.name)) {
      if (!item["name"]) w.error(item, "cluster needs a name");
      continue;
    }
    if (c.name.empty()) w.error(item["name"], "cluster name must not be empty");
    if (!names.insert(c.name).second) w.error(item["name"], "duplicate cluster name '" + c.name + "'");
    const auto backends = item["backends"];
    if (!backends || !backends.IsSequence() || backends.size() == 0) {
      w.error(backends ? backends : item, "cluster '" + c.name + "' needs a non-empty list of backends");
    } else {
      std::set<std::string> seen;
      for (const auto& b : backends) {
        if (!w.check_keys(b, {"address"}, "backend")) continue;
        Backend be;
        if (!b["address"]) {
          w.error(b, "backend needs an address");
          continue;
        }
        if (w.get_endpoint(b["address"], "backend address", be.address)) {
          if (!seen.insert(be.address.to_string()).second)
            w.error(b["address"], "duplicate backend '" + be.address.to_string() + "' in cluster '" + c.name + "'");
          c.backends.push_back(be);
        }
      }
    }
    cfg.clusters.push_back(std::move(c));
  }
}

void load_routes(Walker& w, const YAML::Node& node, Config& cfg) {
  if (!node.IsSequence() || node.size() == 0) {
    w.error(node, "routes must be a non-empty list");
    return;
  }
  for (const auto& item : node) {
    if (!w.check_keys(item, {"cluster"}, "route")) continue;
    Route r;
    if (!item["cluster"]) {
      w.error(item, "route needs a cluster");
      continue;
    }
    if (!w.get_string(item["cluster"], "route cluster", r.cluster)) continue;
    if (!cfg.find_cluster(r.cluster)) {
      std::string known;
      for (const auto& c : cfg.clusters) known += (known.empty() ? "" : ", ") + c.name;
      w.error(item["cluster"], "route names unknown cluster '" + r.cluster + "' (clusters: " + known + ")");
    }
    cfg.routes.push_back(std::move(r));
  }
}

void load_document(Walker& w, const YAML::Node& root, Config& cfg) {
  if (!root.IsMap()) {
    w.error(root, "the configuration must be a YAML mapping with listeners, clusters and routes");
    return;
  }
  w.check_keys(root, {"listeners", "clusters", "routes", "admin", "limits", "http2", "upstream", "drain", "log"},
               "the top level");
  for (const char* required : {"listeners", "clusters", "routes"}) {
    if (!root[required]) w.error(root, std::string("missing required key '") + required + "'");
  }
  if (root["listeners"]) load_listeners(w, root["listeners"], cfg);
  if (root["clusters"]) load_clusters(w, root["clusters"], cfg);
  if (root["routes"]) load_routes(w, root["routes"], cfg);

  if (const auto admin = root["admin"]) {
    if (w.check_keys(admin, {"address"}, "admin") && admin["address"])
      w.get_endpoint(admin["address"], "admin address", cfg.admin.address);
  }
  if (const auto limits = root["limits"]) {
    if (w.check_keys(limits, {"max_message_bytes", "max_header_list_bytes", "max_envelope_scan_bytes"}, "limits")) {
      if (limits["max_message_bytes"])
        w.get_bounded(limits["max_message_bytes"], "limits.max_message_bytes", 1024, 2ull << 30,
                      cfg.limits.max_message_bytes, true);
      if (limits["max_header_list_bytes"])
        w.get_bounded(limits["max_header_list_bytes"], "limits.max_header_list_bytes", 1024, 1u << 20,
                      cfg.limits.max_header_list_bytes, true);
      if (limits["max_envelope_scan_bytes"])
        w.get_bounded(limits["max_envelope_scan_bytes"], "limits.max_envelope_scan_bytes", 1024, 16u << 20,
                      cfg.limits.max_envelope_scan_bytes, true);
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
    if (w.check_keys(up, {"connect_timeout", "max_connections_per_backend"}, "upstream")) {
      if (up["connect_timeout"]) w.get_duration(up["connect_timeout"], "upstream.connect_timeout", cfg.upstream.connect_timeout);
      if (up["max_connections_per_backend"])
        w.get_bounded(up["max_connections_per_backend"], "upstream.max_connections_per_backend", 1, 10000,
                      cfg.upstream.max_connections_per_backend, false);
    }
  }
  if (const auto drain = root["drain"]) {
    if (w.check_keys(drain, {"timeout"}, "drain") && drain["timeout"])
      w.get_duration(drain["timeout"], "drain.timeout", cfg.drain.timeout);
  }
  if (const auto log = root["log"]) {
    if (w.check_keys(log, {"level"}, "log") && log["level"]) {
      if (w.get_string(log["level"], "log.level", cfg.log_level)) {
        static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
        if (!levels.count(cfg.log_level))
          w.error(log["level"], "log.level '" + cfg.log_level + "' is not one of trace, debug, info, warn, error, critical, off");
      }
    }
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

LoadResult load_config_string(const std::string& yaml, const std::string& name, const std::string& base_dir) {
  Walker w(name, base_dir);
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

LoadResult load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.errors.push_back({path, 0, "cannot open the file"});
    return r;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto dir = std::filesystem::absolute(std::filesystem::path(path)).parent_path().string();
  return load_config_string(ss.str(), path, dir);
}

}  // namespace sparkgate::config
