#include "config/config.h"

namespace sparkgate::config {

std::string_view placement_name(Placement p) {
  switch (p) {
    case Placement::kLeastSessions: return "least_sessions";
    case Placement::kRoundRobin: return "round_robin";
    case Placement::kRendezvous: return "rendezvous";
  }
  return "?";
}

std::string_view engine_share_name(Engines::Share s) {
  switch (s) {
    case Engines::Share::kUser: return "user";
    case Engines::Share::kGroup: return "group";
    case Engines::Share::kTenant: return "tenant";
    case Engines::Share::kCluster: return "cluster";
  }
  return "?";
}

std::string_view cert_identity_name(CertIdentity c) {
  switch (c) {
    case CertIdentity::kSubjectCn: return "subject_cn";
    case CertIdentity::kSanDns: return "san_dns";
    case CertIdentity::kSanEmail: return "san_email";
    case CertIdentity::kSanUri: return "san_uri";
  }
  return "?";
}

std::string_view identity_mode_name(Identity::Mode m) {
  switch (m) {
    case Identity::Mode::kOff: return "off";
    case Identity::Mode::kEnforce: return "enforce";
    case Identity::Mode::kRewrite: return "rewrite";
  }
  return "?";
}

bool StringMatcher::matches(std::string_view value) const {
  if (regex) return std::regex_match(value.begin(), value.end(), *regex);
  return value == text;
}

const Cluster* Config::find_cluster(const std::string& name) const {
  for (const auto& c : clusters) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

}  // namespace sparkgate::config
