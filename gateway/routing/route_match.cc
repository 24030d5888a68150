#include "routing/route_match.h"

#include <algorithm>

namespace sparkgate::routing {

namespace {
bool listed(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}
}  // namespace

bool route_matches(const config::RouteMatch& m, const RequestFacts& f) {
  if (!m.users.empty() && !listed(m.users, f.user)) return false;
  if (!m.tenants.empty() && !listed(m.tenants, f.tenant)) return false;
  if (!m.groups.empty()) {
    if (!f.groups) return false;
    bool any = std::any_of(f.groups->begin(), f.groups->end(), [&](const std::string& g) { return listed(m.groups, g); });
    if (!any) return false;
  }
  if (!m.rpcs.empty() && !listed(m.rpcs, f.rpc)) return false;
  if (m.client_type && !m.client_type->matches(f.client_type)) return false;
  for (const auto& [name, matcher] : m.headers) {
    const auto value = f.headers ? f.headers->find(name) : std::nullopt;
    if (!value || !matcher.matches(*value)) return false;
  }
  return true;
}

const config::Route* match_route(const config::Config& config, const RequestFacts& facts) {
  for (const auto& r : config.routes) {
    if (route_matches(r.match, facts)) return &r;
  }
  return nullptr;
}

}  // namespace sparkgate::routing
