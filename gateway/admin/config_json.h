// The configuration in force as JSON, for GET /v1/config. Secrets are never included:
// tokens, JWT secrets and token hashes appear as where they came from or "<redacted>".
#pragma once

#include <boost/json/value.hpp>

#include "config/config.h"

namespace sparkgate::admin {

boost::json::value config_json(const config::Config& cfg);

}  // namespace sparkgate::admin
