// The configuration in force as JSON, for GET /v1/config. Secrets are never included:
// tokens, JWT secrets and token hashes appear as where they came from or "<redacted>".
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <string>

#include "config/config.h"

namespace sparkgate::admin {

// `remote_status`: for an issuer with remote keys, what was fetched (key ids, when, the
// last error), merged into its "remote" object; empty leaves that out.
using RemoteStatus = std::function<boost::json::object(const std::string& issuer)>;
boost::json::value config_json(const config::Config& cfg, const RemoteStatus& remote_status = {});

}  // namespace sparkgate::admin
