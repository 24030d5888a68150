// YAML → validated Config. Unknown keys, wrong types, bad addresses and dangling
// references are errors; every error carries the file and line it refers to.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/jwt_keys.h"
#include "config/config.h"

namespace sparkgate::config {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is about the file as a whole
  std::string reason;

  // "file:line: reason"
  std::string to_string() const;
};

// One source of a JWT issuer's verification keys, as the config names it. The loader has
// checked what the file alone tells (the file is readable, the secret long enough); the
// key material itself is parsed by the JwtKeyBuilder.
struct JwtKeySpec {
  enum class Kind { kPemFile, kJwksFile, kHmacSecret } kind = Kind::kPemFile;
  std::string path;    // kPemFile, kJwksFile: the absolute path
  std::string kid;     // kPemFile, kHmacSecret: the kid the key answers to ("" matches any)
  std::string secret;  // kHmacSecret: the secret itself (never logged)
};

// Turns the key specs of one issuer into its key set. Implemented above config, by the
// layer that verifies tokens (policy::config_load_options, jwt_key_builder.h), so that
// config does not depend on it. Used by one load on one thread.
class JwtKeyBuilder {
 public:
  virtual ~JwtKeyBuilder() = default;
  // Adds the keys of `spec`. False, with `error` naming the file (never containing key
  // material), when the material is unusable; the set is then unchanged.
  virtual bool add(JwtKeySpec spec, std::string& error) = 0;
  // The keys added so far. Called once, last.
  virtual std::shared_ptr<const base::JwtKeys> build() = 0;
};

struct LoadOptions {
  // Makes the key builder of one auth.jwt issuer. Unset, a config whose auth.jwt names
  // keys does not load (an error at each key source).
  std::function<std::unique_ptr<JwtKeyBuilder>()> jwt_key_builder;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null iff errors is non-empty
  std::vector<ConfigError> errors;
};

// Reads and validates `path`. Relative paths inside the file (TLS material) are resolved
// against the file's directory. Never throws; thread-safe (no shared state). Programs
// pass policy::config_load_options(), which parses JWT keys.
LoadResult load_config_file(const std::string& path, const LoadOptions& options = {});

// Same, from YAML text; `name` is used in error messages and `base_dir` resolves
// relative paths.
LoadResult load_config_string(const std::string& yaml, const std::string& name,
                              const std::string& base_dir = ".", const LoadOptions& options = {});

// Parses "host:port" / "[v6]:port". Returns false with a reason on error.
bool parse_endpoint(const std::string& text, Endpoint& out, std::string& reason);

}  // namespace sparkgate::config
