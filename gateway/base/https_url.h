// https:// URLs of identity-provider documents (OIDC discovery, JWK Sets): parsed by the
// config loader (to refuse http:// and malformed URLs with a line number) and by policy
// (the jwks_uri a discovery document names); http:// or https:// URLs of OTLP collectors. Pure functions; callable from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sparkgate::base {

// An https:// URL, split for a request: host (a name, an IPv4 address, or an IPv6
// address without its brackets), port (443 if absent) and the request target (path and
// query, "/" if empty).
struct HttpsUrl {
  std::string host;
  uint16_t port = 443;
  std::string target;
  std::string text;  // the URL as given
  bool tls = true;   // https:// (false only from parse_http_url with http://)

  std::string authority() const;  // host[:port] as it goes in the Host header
};

// Parses `text` as an absolute https URL. Refused with a reason in `error`: any other
// scheme (http:// included), userinfo ("user@"), a fragment, an empty or malformed host, a
// bad port, whitespace or control characters.
std::optional<HttpsUrl> parse_https_url(std::string_view text, std::string& error);

// The same rules, but http:// is accepted too (tls false, port 80 if absent): for
// endpoints where plain HTTP is a legitimate choice (an OTLP collector on the pod's own
// network).
std::optional<HttpsUrl> parse_http_url(std::string_view text, std::string& error);

// {issuer}/.well-known/openid-configuration, with one trailing '/' of the issuer dropped
// (OpenID Connect Discovery 1.0 §4).
std::string discovery_url(std::string_view issuer);

}  // namespace sparkgate::base
