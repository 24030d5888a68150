// Internal to the config loader: the YAML walker that collects errors with file and
// line, and the loaders of the policy sections (auth, identity, quotas), which live in
// policy_loader.cc. Not part of the config module's public interface.
#pragma once

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/config_loader.h"

namespace sparkgate::config::detail {

// Collects errors with line numbers while walking the YAML tree. Walking continues after
// an error so that one run reports every problem in the file.
class Walker {
 public:
  Walker(std::string file, std::string base_dir)
      : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

  std::vector<ConfigError>& errors() { return errors_; }

  // The caller's options (the JWT key builder); null in a nested walker (tokens file).
  const LoadOptions* load_options = nullptr;

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

  bool get_bool(const YAML::Node& n, const std::string& what, bool& out) {
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, out)) {
      error(n, what + " must be true or false");
      return false;
    }
    return true;
  }

  bool get_duration_at_least(const YAML::Node& n, const std::string& what, std::chrono::milliseconds min,
                             std::chrono::milliseconds& out) {
    std::chrono::milliseconds v{};
    if (!get_duration(n, what, v)) return false;
    if (v < min) {
      error(n, what + " must be at least " + std::to_string(min.count()) + "ms (got " + n.Scalar() + ")");
      return false;
    }
    out = v;
    return true;
  }

  // An endpoint that will be dialled, so port 0 is meaningless.
  bool get_dial_endpoint(const YAML::Node& n, const std::string& what, Endpoint& out) {
    Endpoint e;
    if (!get_endpoint(n, what, e)) return false;
    if (e.port == 0) {
      error(n, what + " '" + n.Scalar() + "' needs a non-zero port");
      return false;
    }
    out = e;
    return true;
  }

  // Calls fn(node, value) for a single string or for each string of a list; empty strings
  // are errors. Returns false if anything was wrong.
  bool for_each_string(const YAML::Node& n, const std::string& what,
                       const std::function<void(const YAML::Node&, const std::string&)>& fn) {
    auto one = [&](const YAML::Node& item) {
      std::string s;
      if (!get_string(item, what + " entries", s)) return false;
      if (s.empty()) {
        error(item, what + " must not contain an empty string");
        return false;
      }
      fn(item, s);
      return true;
    };
    if (n.IsScalar()) return one(n);
    if (!n.IsSequence()) {
      error(n, what + " must be a string or a list of strings");
      return false;
    }
    bool ok = true;
    for (const auto& item : n) ok = one(item) && ok;
    return ok;
  }

  bool get_string_list(const YAML::Node& n, const std::string& what, std::vector<std::string>& out) {
    return for_each_string(n, what, [&](const YAML::Node&, const std::string& s) { out.push_back(s); });
  }

  // A full-match ECMAScript regex; `what` names the field for the message.
  bool get_regex(const YAML::Node& n, const std::string& what, StringMatcher& out) {
    std::string pattern;
    if (!get_string(n, what, pattern)) return false;
    try {
      out.regex = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      error(n, "bad regex '" + pattern + "' in " + what + ": " + e.what());
      return false;
    }
    out.text = pattern;
    return true;
  }

  // A non-empty path, resolved against the config directory, that can be read.
  bool get_readable_path(const YAML::Node& n, const std::string& what, std::string& out) {
    std::string p;
    if (!get_string(n, what, p)) return false;
    if (p.empty()) {
      error(n, what + " must not be empty");
      return false;
    }
    out = resolve_path(p);
    return check_readable(n, what, out);
  }

  std::string resolve_path(const std::string& p) const {
    std::filesystem::path path(p);
    if (path.is_absolute()) return p;
    return (std::filesystem::path(base_dir_) / path).lexically_normal().string();
  }

  bool check_readable(const YAML::Node& n, const std::string& what, const std::string& path) {
    std::ifstream f(path);
    if (!f) error(n, what + " '" + path + "' cannot be read");
    return static_cast<bool>(f);
  }

  // A secret named by `env` (an environment variable) or `file` (a path; one trailing
  // newline and blanks are dropped); exactly one of them must be given, as keys
  // `<what>_env` / `<what>_file` of `parent`. `source` says where it came from. No message
  // ever contains the secret.
  bool read_secret(const YAML::Node& parent, const std::string& where, const std::string& what,
                   std::string& secret, std::string& source) {
    const auto env = parent[what + "_env"];
    const auto file = parent[what + "_file"];
    if (env && file) {
      error(file, where + ": give one of " + what + "_env and " + what + "_file, not both");
      return false;
    }
    if (!env && !file) {
      error(parent, where + ": give " + what + "_env or " + what + "_file");
      return false;
    }
    if (env) {
      std::string name;
      if (!get_string(env, where + "." + what + "_env", name)) return false;
      if (name.empty()) {
        error(env, where + "." + what + "_env must name an environment variable");
        return false;
      }
      const char* value = std::getenv(name.c_str());
      if (value == nullptr || *value == '\0') {
        error(env, where + "." + what + "_env: environment variable '" + name + "' is not set or is empty");
        return false;
      }
      secret = value;
      source = "env " + name;
      return true;
    }
    std::string path;
    if (!get_readable_path(file, where + "." + what + "_file", path)) return false;
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    // Files written by editors and `echo` end in a newline that is not part of the secret.
    auto end = secret.find_last_not_of(" \t\r\n");
    secret.erase(end == std::string::npos ? 0 : end + 1);
    if (secret.empty()) {
      error(file, where + "." + what + "_file '" + path + "' is empty");
      return false;
    }
    source = "file " + path;
    return true;
  }

 private:
  std::string file_;
  std::string base_dir_;
  std::vector<ConfigError> errors_;
};

void load_redis(Walker& w, const YAML::Node& n, const std::string& where, Redis& out);
void load_auth(Walker& w, const YAML::Node& n, Config& cfg);
void load_identity(Walker& w, const YAML::Node& n, Config& cfg);
void load_quotas(Walker& w, const YAML::Node& n, Config& cfg);
// tracing_loader.cc; `n` may be undefined (tracing off).
void load_tracing(Walker& w, const YAML::Node& n, Config& cfg);

}  // namespace sparkgate::config::detail
