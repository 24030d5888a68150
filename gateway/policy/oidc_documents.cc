#include "policy/oidc_documents.h"
#include "base/quote.h"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>

namespace sparkgate::policy {

namespace json = boost::json;

namespace {

std::string quote(std::string_view s) { return base::quote_for_message(s, 120); }

}  // namespace

std::optional<std::string> parse_discovery(std::string_view body, std::string_view expected_issuer,
                                           std::string& error) {
  if (body.size() > kMaxOidcDocumentBytes) {
    error = "the discovery document is larger than " + std::to_string(kMaxOidcDocumentBytes) + " bytes";
    return std::nullopt;
  }
  json::parse_options opt;
  opt.max_depth = 32;
  boost::system::error_code ec;
  json::value doc = json::parse(json::string_view(body.data(), body.size()), ec, json::storage_ptr(), opt);
  if (ec || !doc.is_object()) {
    error = "the discovery document is not a JSON object";
    return std::nullopt;
  }
  const json::object& o = doc.get_object();
  const json::value* issuer = o.if_contains("issuer");
  if (!issuer || !issuer->is_string()) {
    error = "the discovery document has no \"issuer\" string";
    return std::nullopt;
  }
  std::string_view got(issuer->get_string().data(), issuer->get_string().size());
  if (got != expected_issuer) {
    error = "the discovery document names issuer " + quote(got) + ", not the configured " + quote(expected_issuer);
    return std::nullopt;
  }
  const json::value* jwks_uri = o.if_contains("jwks_uri");
  if (!jwks_uri || !jwks_uri->is_string()) {
    error = "the discovery document has no \"jwks_uri\" string";
    return std::nullopt;
  }
  std::string uri(jwks_uri->get_string());
  std::string why;
  if (!parse_https_url(uri, why)) {
    error = "the discovery document's jwks_uri is not usable: " + why;
    return std::nullopt;
  }
  return uri;
}

std::optional<FetchedJwks> parse_fetched_jwks(std::string_view body, const std::string& source, std::string& error) {
  if (body.size() > kMaxOidcDocumentBytes) {
    error = source + ": the JWK Set is larger than " + std::to_string(kMaxOidcDocumentBytes) + " bytes";
    return std::nullopt;
  }
  auto keys = std::make_shared<JwtKeySet>();
  if (!keys->add_jwks_json(body, source, error, /*allow_secrets=*/false)) return std::nullopt;
  FetchedJwks out;
  out.kids = keys->key_ids();
  out.keys = std::move(keys);
  return out;
}

}  // namespace sparkgate::policy
