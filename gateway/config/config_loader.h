// YAML → validated Config. Unknown keys, wrong types, bad addresses and dangling
// references are errors; every error carries the file and line it refers to.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"

namespace sparkgate::config {

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 when the error is about the file as a whole
  std::string reason;

  // "file:line: reason"
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null iff errors is non-empty
  std::vector<ConfigError> errors;
};

// Reads and validates `path`. Relative paths inside the file (TLS material) are resolved
// against the file's directory. Never throws; thread-safe (no shared state).
LoadResult load_config_file(const std::string& path);

// Same, from YAML text; `name` is used in error messages and `base_dir` resolves
// relative paths.
LoadResult load_config_string(const std::string& yaml, const std::string& name,
                              const std::string& base_dir = ".");

// Parses "host:port" / "[v6]:port". Returns false with a reason on error.
bool parse_endpoint(const std::string& text, Endpoint& out, std::string& reason);

}  // namespace sparkgate::config
