// The config loader's JWT key builder: parses the key material that auth.jwt names (PEM
// public keys and certificates, JWK Sets, HMAC secrets) into a JwtKeySet, while the
// config loads, so that a broken key file is a config error with file and line.
#pragma once

#include "config/config_loader.h"

namespace sparkgate::policy {

// What every program that loads a gateway config passes to config::load_config_file /
// load_config_string. Thread-safe; each load gets builders of its own.
config::LoadOptions config_load_options();

}  // namespace sparkgate::policy
