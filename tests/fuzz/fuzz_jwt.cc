// libFuzzer target: JWT parsing and verification (gateway/policy/jwt.h).
//
// Input: [mode: 1 byte][rest]
//   mode % 4 == 0: rest is a bearer token, verified as it is against three issuers
//                  (HS256 secret, RS256 key, ES256 key; keys generated at start-up);
//   mode % 4 == 1: rest is "header JSON \0 payload JSON": the target encodes both and signs
//                  them with the HS256 issuer's real secret, so the claim checks behind
//                  the signature are reached;
//   mode % 4 == 2: rest is a JWK Set (JSON) loaded into an empty key set;
//   mode % 4 == 3: rest is base64url text for the strict decoder.
// Invariants checked:
//   - a token verifies only if it is really signed with the HS256 issuer's secret: no
//     unsigned, forged or algorithm-confused token passes (mode 0);
//   - a signed token verifies only if its header says alg HS256 and its iss is the HS256
//     issuer; the principal is then the user claim (non-empty), method "jwt", and exp/nbf
//     (when numbers) are within the leeway of now;
//   - a refusal names a reason and its message never contains the token, its signature
//     or its payload part;
//   - base64url_decode accepts exactly the canonical encodings (decode, re-encode = input);
//   - a JWK Set loads all or nothing.
#include "test_jwk.h"
#include <algorithm>
#include <cctype>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "policy/jwt.h"

using namespace sparkgate;
namespace fz = sparkgate::fuzz;
namespace json = boost::json;

namespace {

const std::string kSecret = "fuzz-secret-0123456789abcdef-0123456789";
const auto kNow = std::chrono::system_clock::from_time_t(1795600800);  // 2026-11-25T10:00:00Z

using sparkgate::testing::b64url;

// Writes the public half of a freshly generated key as PEM and loads it into a key set.
void add_generated_key(policy::JwtKeySet& set, EVP_PKEY* key, const std::string& name) {
  FUZZ_CHECK(key != nullptr);
  const auto path = std::filesystem::temp_directory_path() / ("sparkgate-fuzz-jwt-" + std::to_string(::getpid()) + "-" + name);
  FILE* f = std::fopen(path.c_str(), "w");
  FUZZ_CHECK(f && PEM_write_PUBKEY(f, key) == 1);
  std::fclose(f);
  std::string error;
  FUZZ_CHECK(set.add_pem_file(path.string(), "", error));
  std::filesystem::remove(path);
  EVP_PKEY_free(key);
}

const std::vector<config::JwtIssuer>& issuers() {
  static const std::vector<config::JwtIssuer> kIssuers = [] {
    std::vector<config::JwtIssuer> v;
    {
      config::JwtIssuer hs;
      hs.issuer = "https://hs.example";
      hs.algorithms = {"HS256"};
      hs.audiences = {"sparkgate", "other"};
      auto keys = std::make_shared<policy::JwtKeySet>();
      keys->add_hmac_secret(kSecret, "");
      hs.keys = keys;
      v.push_back(std::move(hs));
    }
    {
      config::JwtIssuer rs;
      rs.issuer = "https://rs.example";
      rs.algorithms = {"RS256"};
      rs.user_claim = "email";
      auto keys = std::make_shared<policy::JwtKeySet>();
      add_generated_key(*keys, EVP_RSA_gen(2048), "rsa");
      rs.keys = keys;
      v.push_back(std::move(rs));
    }
    {
      config::JwtIssuer es;
      es.issuer = "https://es.example";
      es.algorithms = {"ES256", "HS256"};  // HS256 allowed but the issuer has no secret
      auto keys = std::make_shared<policy::JwtKeySet>();
      add_generated_key(*keys, EVP_EC_gen("P-256"), "ec");
      es.keys = keys;
      v.push_back(std::move(es));
    }
    return v;
  }();
  return kIssuers;
}

void check_refusal(const policy::AuthResult& r, std::string_view token) {
  FUZZ_CHECK(!r.ok());
  FUZZ_CHECK(!r.message.empty());
  FUZZ_CHECK(!policy::auth_failure_label(r.failure).empty());
  // The message may quote short names from the token (iss, kid, alg), never the token
  // or a whole part of it.
  // Only a token made of JWT characters (base64url and dots) can be a secret: the fuzzer
  // also builds "tokens" out of a message's own English ("ee dot-separated parts (").
  const bool jwt_chars = std::all_of(token.begin(), token.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '=';
  });
  if (token.size() >= 24 && jwt_chars) FUZZ_CHECK(r.message.find(token) == std::string::npos);
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 != std::string_view::npos) {
    std::string_view payload = token.substr(dot1 + 1, dot2 - dot1 - 1);
    std::string_view signature = token.substr(dot2 + 1);
    // Only real token parts (base64url) are secrets; a "part" the fuzzer copied from the
    // fixed English of a message (spaces, brackets) is not a leak.
    auto b64 = [](std::string_view p) {
      return p.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
             std::string_view::npos;
    };
    if (payload.size() >= 24 && b64(payload)) FUZZ_CHECK(r.message.find(payload) == std::string::npos);
    if (signature.size() >= 24 && b64(signature)) FUZZ_CHECK(r.message.find(signature) == std::string::npos);
  }
}

std::optional<double> number(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  if (!v) return std::nullopt;
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  if (v->is_double()) return v->get_double();
  return std::nullopt;
}

// An accepted token must really be an HS256 token of the HS256 issuer (the only issuer
// whose key the fuzzer can sign with), and the principal what its claims say.
void check_accepted(std::string_view header, std::string_view payload, const policy::AuthResult& r) {
  boost::system::error_code ec;
  json::value h = json::parse(json::string_view(header.data(), header.size()), ec);
  FUZZ_CHECK(!ec && h.is_object());
  const json::value* alg = h.get_object().if_contains("alg");
  FUZZ_CHECK(alg && alg->is_string() && alg->get_string() == "HS256");
  json::value p = json::parse(json::string_view(payload.data(), payload.size()), ec);
  FUZZ_CHECK(!ec && p.is_object());
  const json::object& claims = p.get_object();
  const json::value* iss = claims.if_contains("iss");
  FUZZ_CHECK(iss && iss->is_string() && iss->get_string() == "https://hs.example");
  const json::value* sub = claims.if_contains("sub");
  FUZZ_CHECK(sub && sub->is_string() && !sub->get_string().empty());
  FUZZ_CHECK(r.principal.user == std::string(sub->get_string()));
  FUZZ_CHECK(r.principal.method == sparkgate::base::AuthMethod::kJwt && r.principal.verified());
  const double now_s = 1795600800.0, leeway = 60.0;
  if (auto exp = number(claims, "exp")) FUZZ_CHECK(std::isfinite(*exp) && now_s <= *exp + leeway);
  if (auto nbf = number(claims, "nbf")) FUZZ_CHECK(std::isfinite(*nbf) && now_s + leeway >= *nbf);
  const json::value* aud = claims.if_contains("aud");
  FUZZ_CHECK(aud != nullptr);
  auto wanted = [](const json::value& a) {
    return a.is_string() && (a.get_string() == "sparkgate" || a.get_string() == "other");
  };
  bool aud_ok = wanted(*aud);
  if (aud->is_array())
    for (const auto& a : aud->get_array()) aud_ok = aud_ok || wanted(a);
  FUZZ_CHECK(aud_ok);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  const uint8_t mode = fz::take<uint8_t>(in) % 4;
  const std::string_view rest = fz::as_chars(in);

  if (mode == 0) {
    auto r = policy::verify_jwt(rest, issuers(), kNow);
    if (!r.ok()) {
      check_refusal(r, rest);
      return 0;
    }
    // Accepted: only a token really signed with the HS256 secret may be (the seeds hold
    // some; the fuzzer cannot forge one, nor an RS256/ES256 signature).
    const size_t dot1 = rest.find('.');
    const size_t dot2 = rest.find('.', dot1 + 1);
    FUZZ_CHECK(dot1 != std::string_view::npos && dot2 != std::string_view::npos);
    const std::string_view signing_input = rest.substr(0, dot2);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
                    reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
                    &mac_len) != nullptr);
    const auto sig = policy::base64url_decode(rest.substr(dot2 + 1));
    FUZZ_CHECK(sig && *sig == std::string(reinterpret_cast<const char*>(mac), mac_len));
    const auto header = policy::base64url_decode(rest.substr(0, dot1));
    const auto payload = policy::base64url_decode(rest.substr(dot1 + 1, dot2 - dot1 - 1));
    FUZZ_CHECK(header && payload);
    check_accepted(*header, *payload, r);
    return 0;
  }

  if (mode == 1) {
    size_t zero = rest.find('\0');
    std::string_view header = rest.substr(0, zero);
    std::string_view payload = zero == std::string_view::npos ? std::string_view() : rest.substr(zero + 1);
    std::string token = b64url(header) + "." + b64url(payload);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
                    reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac, &mac_len) != nullptr);
    token += "." + b64url({reinterpret_cast<const char*>(mac), mac_len});
    auto r = policy::verify_jwt(token, issuers(), kNow);
    if (!r.ok()) {
      check_refusal(r, token);
      return 0;
    }
    check_accepted(header, payload, r);
    return 0;
  }

  if (mode == 2) {
    policy::JwtKeySet set;
    std::string error;
    const bool ok = set.add_jwks_json(rest, "jwks fuzz", error);
    FUZZ_CHECK(ok == error.empty());
    if (ok) FUZZ_CHECK(set.size() >= 1);
    else FUZZ_CHECK(set.size() == 0);
    // A second load on top keeps the first one's keys whatever happens.
    const size_t before = set.size();
    std::string error2;
    const bool ok2 = set.add_jwks_json(rest, "jwks fuzz", error2);
    FUZZ_CHECK(ok2 == ok);
    FUZZ_CHECK(set.size() == (ok2 ? 2 * before : before));
    return 0;
  }

  auto decoded = policy::base64url_decode(rest);
  if (decoded) FUZZ_CHECK(b64url(*decoded) == rest);
  // And every canonical encoding decodes back.
  auto round = policy::base64url_decode(b64url(rest));
  FUZZ_CHECK(round && *round == rest);
  return 0;
}
