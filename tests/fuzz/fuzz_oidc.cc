// libFuzzer target: the OIDC key-source parsers (gateway/policy/oidc_documents.h).
//
// Input: [mode: 1 byte][rest]
//   mode % 3 == 0: rest is a discovery document, parsed for the issuer
//                  "https://idp.example.com/realms/data";
//   mode % 3 == 1: rest is a fetched JWK Set;
//   mode % 3 == 2: rest is a URL for parse_https_url.
// Invariants checked:
//   - an accepted discovery document is at most kMaxOidcDocumentBytes and its jwks_uri is
//     itself an https URL (parse_https_url accepts it); a refusal has a reason;
//   - an accepted JWK Set has at least one key, as many kids as keys, and never an HMAC
//     secret (an "oct" key fetched from a URL must not become a verification key);
//   - an accepted URL is https, has a host without '@', '/', '#' or whitespace, a target
//     starting with '/', and re-parsing scheme://authority+target gives the same parts.
#include <cstdint>
#include <span>
#include <string>

#include "fuzz_util.h"
#include "policy/oidc_documents.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;

namespace {

const std::string kIssuer = "https://idp.example.com/realms/data";

void check_url(std::string_view text) {
  std::string error;
  auto url = policy::parse_https_url(text, error);
  if (!url) {
    FUZZ_CHECK(!error.empty());
    return;
  }
  FUZZ_CHECK(!url->host.empty());
  FUZZ_CHECK(url->port != 0);
  FUZZ_CHECK(!url->target.empty() && url->target.front() == '/');
  for (char c : url->host) {
    FUZZ_CHECK(c != '@' && c != '/' && c != '#' && c != '?' && static_cast<unsigned char>(c) > 0x20);
  }
  for (char c : url->target) FUZZ_CHECK(c != '#' && static_cast<unsigned char>(c) > 0x20);
  std::string again_error;
  auto again = policy::parse_https_url("https://" + url->authority() + url->target, again_error);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(again->host == url->host && again->port == url->port && again->target == url->target);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  const uint8_t mode = fz::take<uint8_t>(in) % 3;
  const std::string_view rest = fz::as_chars(in);
  std::string error;
  if (mode == 0) {
    auto uri = policy::parse_discovery(rest, kIssuer, error);
    if (!uri) {
      FUZZ_CHECK(!error.empty());
      return 0;
    }
    FUZZ_CHECK(rest.size() <= policy::kMaxOidcDocumentBytes);
    std::string why;
    FUZZ_CHECK(policy::parse_https_url(*uri, why).has_value());
    check_url(*uri);
  } else if (mode == 1) {
    auto jwks = policy::parse_fetched_jwks(rest, "https://idp.example.com/certs", error);
    if (!jwks) {
      FUZZ_CHECK(!error.empty());
      return 0;
    }
    FUZZ_CHECK(jwks->keys && jwks->keys->size() > 0);
    FUZZ_CHECK(jwks->kids.size() == jwks->keys->size());
    // No secret: an HS256 signature over anything never verifies with these keys.
    FUZZ_CHECK(jwks->keys->verify(policy::JwtAlg::kHS256, std::nullopt, "x.y", std::string(32, '\0')) ==
               policy::JwtKeySet::Verify::kNoKey);
  } else {
    check_url(rest);
  }
  return 0;
}
