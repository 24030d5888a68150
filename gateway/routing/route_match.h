// Route selection: the first route of the config whose every condition holds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "http2/header_map.h"

namespace sparkgate::routing {

// What a route can match on. The principal fields come from authentication when it is
// on; until then `user` is the user_id of the request's user_context.
struct RequestFacts {
  std::string_view user;
  const std::vector<std::string>* groups = nullptr;  // may be null: no groups
  std::string_view tenant;
  std::string_view client_type;
  std::string_view rpc;  // method name, "ExecutePlan"
  const http2::HeaderMap* headers = nullptr;
};

bool route_matches(const config::RouteMatch& match, const RequestFacts& facts);

// The first matching route, or nullptr.
const config::Route* match_route(const config::Config& config, const RequestFacts& facts);

}  // namespace sparkgate::routing
