// The configuration in force as JSON, for GET /v1/config. Secrets are never included:
// tokens, JWT secrets and token hashes appear as where they came from or "<redacted>".
#pragma once

#include <boost/json/value.hpp>

#include "config/config.h"

namespace sparkgate::policy {
class JwksCache;
}

namespace sparkgate::admin {

// `jwks`: the fetched keys of issuers with remote keys (their key ids, when they were
// fetched, the last error); null leaves that out. Called on the admin thread.
boost::json::value config_json(const config::Config& cfg, const policy::JwksCache* jwks = nullptr);

}  // namespace sparkgate::admin
