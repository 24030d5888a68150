// tracing: → config::Tracing (OTLP/HTTP trace export). Header values are secrets: no
// message below contains one.
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "config/walker.h"

namespace sparkgate::config::detail {

namespace {

bool header_token(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos)) return false;
  }
  return true;
}

bool header_value_ok(const std::string& v) {
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

// `value` is a string, {env: NAME} or {file: PATH}.
bool load_header_value(Walker& w, const YAML::Node& n, const std::string& where, OtlpHeader& h) {
  if (n.IsScalar()) {
    h.value = n.Scalar();
    h.source = "literal";
  } else if (n.IsMap()) {
    if (!w.check_keys(n, {"env", "file"}, where)) return false;
    if (n["env"].IsDefined() == n["file"].IsDefined()) {
      w.error(n, where + ": give one of env and file");
      return false;
    }
    std::string ref;
    if (n["env"]) {
      if (!w.get_string(n["env"], where + ".env", ref)) return false;
      const char* value = ref.empty() ? nullptr : std::getenv(ref.c_str());
      if (value == nullptr || *value == '\0') {
        w.error(n["env"], where + ".env: environment variable '" + ref + "' is not set or is empty");
        return false;
      }
      h.value = value;
      h.source = "env " + ref;
    } else {
      if (!w.get_readable_path(n["file"], where + ".file", ref)) return false;
      std::ifstream in(ref, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      h.value = ss.str();
      auto end = h.value.find_last_not_of(" \t\r\n");
      h.value.erase(end == std::string::npos ? 0 : end + 1);
      h.source = "file " + ref;
    }
  } else {
    w.error(n, where + " must be a string, {env: NAME} or {file: PATH}");
    return false;
  }
  if (h.value.empty()) {
    w.error(n, where + " is empty");
    return false;
  }
  if (!header_value_ok(h.value)) {
    w.error(n, where + " (" + h.source + ") contains control characters");
    return false;
  }
  return true;
}

void load_otlp(Walker& w, const YAML::Node& n, Tracing& t) {
  if (!w.check_keys(n, {"endpoint", "headers", "timeout", "ca_file"}, "tracing.otlp")) return;
  if (!n["endpoint"]) {
    w.error(n, "tracing.otlp needs an endpoint (the collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318)");
    return;
  }
  if (w.get_string(n["endpoint"], "tracing.otlp.endpoint", t.endpoint)) {
    std::string reason;
    auto url = base::parse_http_url(t.endpoint, reason);
    if (!url) {
      w.error(n["endpoint"], "tracing.otlp.endpoint: " + reason);
      t.endpoint.clear();
    } else {
      // OTLP/HTTP: the signal path is appended to the base URL.
      std::string target = url->target;
      if (target.find('?') != std::string::npos) {
        w.error(n["endpoint"], "tracing.otlp.endpoint must not have a query (/v1/traces is appended to its path)");
        t.endpoint.clear();
      } else {
        while (!target.empty() && target.back() == '/') target.pop_back();
        target.append("/v1/traces");
        url->target = std::move(target);
        // The full export URL, as logs and /v1/config name it.
        std::string text = url->tls ? "https://" : "http://";
        text.append(url->authority()).append(url->target);
        url->text = std::move(text);
        t.url = std::move(*url);
      }
    }
  }
  if (n["timeout"] &&
      w.get_duration_at_least(n["timeout"], "tracing.otlp.timeout", std::chrono::milliseconds(10), t.timeout) &&
      t.timeout > std::chrono::minutes(5)) {
    w.error(n["timeout"], "tracing.otlp.timeout must be at most 5m");
  }
  if (n["ca_file"]) {
    w.get_readable_path(n["ca_file"], "tracing.otlp.ca_file", t.ca_file);
    if (!t.endpoint.empty() && !t.url.tls) w.error(n["ca_file"], "tracing.otlp.ca_file needs an https:// endpoint");
  }
  if (const auto headers = n["headers"]) {
    if (!headers.IsMap()) {
      w.error(headers, "tracing.otlp.headers must be a mapping of header names to values");
      return;
    }
    for (const auto& kv : headers) {
      OtlpHeader h;
      if (!w.get_string(kv.first, "tracing.otlp.headers key", h.name)) continue;
      for (auto& c : h.name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const std::string where = "tracing.otlp.headers." + h.name;
      if (!header_token(h.name)) {
        w.error(kv.first, "tracing.otlp.headers: '" + h.name + "' is not a valid header name");
        continue;
      }
      if (h.name == "host" || h.name == "content-type" || h.name == "content-length" || h.name == "connection" ||
          h.name == "transfer-encoding") {
        w.error(kv.first, where + ": the exporter sets this header itself");
        continue;
      }
      bool dup = false;
      for (const auto& e : t.headers) dup |= e.name == h.name;
      if (dup) {
        w.error(kv.first, where + " is given twice");
        continue;
      }
      if (load_header_value(w, kv.second, where, h)) t.headers.push_back(std::move(h));
    }
  }
}

}  // namespace

void load_tracing(Walker& w, const YAML::Node& n, Config& cfg) {
  if (!n) return;
  auto& t = cfg.tracing;
  if (!w.check_keys(n, {"otlp", "sample_ratio", "service_name", "queue_size", "batch_size", "flush_interval"},
                    "tracing"))
    return;
  if (!n["otlp"]) {
    w.error(n, "tracing needs otlp.endpoint (where spans are exported)");
    return;
  }
  load_otlp(w, n["otlp"], t);
  if (const auto r = n["sample_ratio"]) {
    double v = -1;
    if (!r.IsScalar() || !YAML::convert<double>::decode(r, v) || !(v >= 0.0 && v <= 1.0))
      w.error(r, "tracing.sample_ratio must be a number from 0 to 1");
    else t.sample_ratio = v;
  }
  if (n["service_name"] && w.get_string(n["service_name"], "tracing.service_name", t.service_name) &&
      (t.service_name.empty() || t.service_name.size() > 256)) {
    w.error(n["service_name"], "tracing.service_name must be 1 to 256 characters");
  }
  if (n["queue_size"]) w.get_bounded(n["queue_size"], "tracing.queue_size", 1, 1000000, t.queue_size, false);
  if (n["batch_size"]) w.get_bounded(n["batch_size"], "tracing.batch_size", 1, 100000, t.batch_size, false);
  if (n["flush_interval"])
    w.get_duration_at_least(n["flush_interval"], "tracing.flush_interval", std::chrono::milliseconds(10),
                            t.flush_interval);
  if (t.batch_size > t.queue_size) {
    w.error(n["batch_size"] ? n["batch_size"] : n,
            "tracing.batch_size (" + std::to_string(t.batch_size) + ") must not exceed tracing.queue_size (" +
                std::to_string(t.queue_size) + ")");
  }
}

}  // namespace sparkgate::config::detail
