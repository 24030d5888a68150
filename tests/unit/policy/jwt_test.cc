#include "test_jwk.h"
#include "policy/jwt.h"

#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <memory>

using namespace sparkgate;
using policy::AuthFailure;
namespace json = boost::json;

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

const std::string kIss = "https://idp.example";
// 2026-11-25T10:00:00Z
const auto kNow = std::chrono::system_clock::from_time_t(1795600800);
const int64_t kNowS = 1795600800;

using sparkgate::testing::b64url;

struct Keys {
  PkeyPtr rsa1{EVP_RSA_gen(2048)};
  PkeyPtr rsa2{EVP_RSA_gen(2048)};
  PkeyPtr ec1{EVP_EC_gen("P-256")};
  PkeyPtr ec2{EVP_EC_gen("P-256")};
};

// Key generation takes a moment; every test shares one set.
const Keys& keys() {
  static const Keys k;
  REQUIRE(k.rsa1);
  REQUIRE(k.rsa2);
  REQUIRE(k.ec1);
  REQUIRE(k.ec2);
  return k;
}

struct Signer {
  EVP_PKEY* pkey = nullptr;
  std::string secret;  // HS256
};

std::string sign(std::string_view alg, std::string_view input, const Signer& s) {
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (alg == "HS256") {
    unsigned char mac[32];
    size_t len = 0;
    REQUIRE(EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, s.secret.data(), s.secret.size(), in, input.size(),
                      mac, sizeof mac, &len) != nullptr);
    return std::string(reinterpret_cast<char*>(mac), len);
  }
  REQUIRE(s.pkey);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, s.pkey) == 1);
  std::string sig(static_cast<size_t>(EVP_PKEY_get_size(s.pkey)), '\0');
  size_t len = sig.size();
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) == 1);
  sig.resize(len);
  if (alg != "ES256") return sig;
  // DER ECDSA-Sig-Value -> JWS R||S.
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  std::unique_ptr<ECDSA_SIG, void (*)(ECDSA_SIG*)> ecdsa(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())),
                                                          &ECDSA_SIG_free);
  REQUIRE(ecdsa);
  std::string raw(64, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), out, 32) == 32);
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), out + 32, 32) == 32);
  return raw;
}

json::object header(const std::string& alg, const std::string& kid = "") {
  json::object h{{"alg", alg}, {"typ", "JWT"}};
  if (!kid.empty()) h["kid"] = kid;
  return h;
}

json::object claims() {
  return json::object{{"iss", kIss},
                      {"sub", "alice"},
                      {"exp", kNowS + 3600},
                      {"iat", kNowS - 10},
                      {"groups", json::array{"analysts", "etl"}},
                      {"tenant", "acme"}};
}

std::string make_jwt(const json::object& h, const json::object& c, const Signer& s) {
  std::string input = b64url(json::serialize(h)) + "." + b64url(json::serialize(c));
  return input + "." + b64url(sign(h.at("alg").as_string(), input, s));
}

config::JwtIssuer issuer(std::shared_ptr<const policy::JwtKeySet> keys, std::vector<std::string> algorithms,
                         const std::string& name = kIss) {
  config::JwtIssuer i;
  i.issuer = name;
  i.algorithms = std::move(algorithms);
  i.keys = std::move(keys);
  return i;
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sparkgate-jwt-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    std::string file = path + "/" + name;
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }
};

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string public_pem(EVP_PKEY* pkey) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_PUBKEY(bio.get(), pkey) == 1);
  return bio_string(bio.get());
}

std::string private_pem(EVP_PKEY* pkey) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return bio_string(bio.get());
}

std::string certificate_pem(EVP_PKEY* pkey) {
  std::unique_ptr<X509, void (*)(X509*)> cert(X509_new(), &X509_free);
  REQUIRE(cert);
  REQUIRE(X509_set_version(cert.get(), 2) == 1);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("idp"), -1, -1, 0);
  REQUIRE(X509_set_issuer_name(cert.get(), name) == 1);
  REQUIRE(X509_set_pubkey(cert.get(), pkey) == 1);
  REQUIRE(X509_sign(cert.get(), pkey, EVP_sha256()) > 0);
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_X509(bio.get(), cert.get()) == 1);
  return bio_string(bio.get());
}

std::string bn_param(EVP_PKEY* pkey, const char* name, int pad) {
  BIGNUM* bn = nullptr;
  REQUIRE(EVP_PKEY_get_bn_param(pkey, name, &bn) == 1);
  std::string out(pad > 0 ? static_cast<size_t>(pad) : static_cast<size_t>(BN_num_bytes(bn)), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  int n = pad > 0 ? BN_bn2binpad(bn, p, pad) : BN_bn2bin(bn, p);
  BN_free(bn);
  REQUIRE(n == static_cast<int>(out.size()));
  return b64url(out);
}

json::object rsa_jwk(EVP_PKEY* pkey, const std::string& kid) {
  return json::object{{"kty", "RSA"},
                      {"kid", kid},
                      {"use", "sig"},
                      {"alg", "RS256"},
                      {"n", bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, 0)},
                      {"e", bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, 0)}};
}

json::object ec_jwk(EVP_PKEY* pkey, const std::string& kid) {
  return json::object{{"kty", "EC"},
                      {"kid", kid},
                      {"crv", "P-256"},
                      {"x", bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32)},
                      {"y", bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32)}};
}

std::string jwks(std::initializer_list<json::object> keys) {
  json::array a;
  for (const auto& k : keys) a.push_back(k);
  return json::serialize(json::object{{"keys", a}});
}

std::shared_ptr<policy::JwtKeySet> pem_keys(const TempDir& dir, EVP_PKEY* pkey, const std::string& kid = "") {
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;
  static int n = 0;
  REQUIRE_MESSAGE(set->add_pem_file(dir.write("key" + std::to_string(n++) + ".pem", public_pem(pkey)), kid, error),
                  error);
  return set;
}

std::shared_ptr<policy::JwtKeySet> secret_keys(const std::string& secret) {
  auto set = std::make_shared<policy::JwtKeySet>();
  set->add_hmac_secret(secret, "");
  return set;
}

// Asserts the failure and that the message neither is empty nor quotes the token.
policy::AuthResult expect_failure(const std::string& token, const std::vector<config::JwtIssuer>& issuers,
                                  AuthFailure want) {
  auto r = policy::verify_jwt(token, issuers, kNow);
  INFO("message: " << r.message);
  CHECK(r.failure == want);
  CHECK_FALSE(r.ok());
  CHECK_FALSE(r.message.empty());
  if (!token.empty()) CHECK(r.message.find(token) == std::string::npos);
  size_t start = 0;
  for (;;) {
    size_t dot = token.find('.', start);
    std::string part = token.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.size() >= 8) CHECK(r.message.find(part) == std::string::npos);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return r;
}

policy::AuthResult expect_ok(const std::string& token, const std::vector<config::JwtIssuer>& issuers) {
  auto r = policy::verify_jwt(token, issuers, kNow);
  INFO("message: " << r.message);
  CHECK(r.ok());
  return r;
}

}  // namespace

TEST_SUITE("jwt") {

TEST_CASE("jwt: base64url_decode is strict about alphabet, padding and trailing bits") {
  CHECK(policy::base64url_decode("") == std::string());
  CHECK(policy::base64url_decode("YQ") == std::string("a"));
  CHECK(policy::base64url_decode("YWI") == std::string("ab"));
  CHECK(policy::base64url_decode("YWJj") == std::string("abc"));
  CHECK(policy::base64url_decode("-_8") == std::string("\xfb\xff"));
  CHECK_FALSE(policy::base64url_decode("YQ=="));  // padding
  CHECK_FALSE(policy::base64url_decode("Y"));     // impossible length
  CHECK_FALSE(policy::base64url_decode("YR"));    // non-zero unused bits
  CHECK_FALSE(policy::base64url_decode("+/8"));   // standard base64 alphabet
  CHECK_FALSE(policy::base64url_decode(" YQ"));
  CHECK_FALSE(policy::base64url_decode(std::string_view("Y\0", 2)));
}

TEST_CASE("jwt: parse_jwt_alg accepts exactly HS256, RS256 and ES256") {
  for (auto alg : {policy::JwtAlg::kHS256, policy::JwtAlg::kRS256, policy::JwtAlg::kES256}) {
    CHECK(policy::parse_jwt_alg(policy::jwt_alg_name(alg)) == alg);
  }
  CHECK_FALSE(policy::parse_jwt_alg("none"));
  CHECK_FALSE(policy::parse_jwt_alg("hs256"));
  CHECK_FALSE(policy::parse_jwt_alg("RS512"));
  CHECK_FALSE(policy::parse_jwt_alg(""));
}

TEST_CASE("jwt: good HS256, RS256 and ES256 tokens map their claims to a jwt principal") {
  TempDir dir;
  const auto& k = keys();
  const std::string secret(32, 's');
  std::vector<config::JwtIssuer> issuers{issuer(secret_keys(secret), {"HS256"}, "hs"),
                                         issuer(pem_keys(dir, k.rsa1.get()), {"RS256"}, "rs"),
                                         issuer(pem_keys(dir, k.ec1.get()), {"ES256"}, "es")};
  struct Case {
    std::string alg, iss;
    Signer signer;
  };
  for (const auto& c : {Case{"HS256", "hs", {nullptr, secret}}, Case{"RS256", "rs", {k.rsa1.get(), ""}},
                        Case{"ES256", "es", {k.ec1.get(), ""}}}) {
    CAPTURE(c.alg);
    auto claim = claims();
    claim["iss"] = c.iss;
    auto r = expect_ok(make_jwt(header(c.alg), claim, c.signer), issuers);
    CHECK(r.principal.user == "alice");
    CHECK(r.principal.groups == std::vector<std::string>{"analysts", "etl"});
    CHECK(r.principal.tenant == "acme");
    CHECK(r.principal.method == base::AuthMethod::kJwt);
    CHECK(r.principal.verified());
  }
}

TEST_CASE("jwt: an X.509 certificate PEM supplies its public key") {
  TempDir dir;
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;
  REQUIRE_MESSAGE(set->add_pem_file(dir.write("cert.pem", certificate_pem(keys().ec1.get())), "", error), error);
  REQUIRE_MESSAGE(set->add_pem_file(dir.write("rsa.pem", certificate_pem(keys().rsa1.get())), "", error), error);
  CHECK(set->size() == 2);
  std::vector<config::JwtIssuer> issuers{issuer(set, {"ES256", "RS256"})};
  expect_ok(make_jwt(header("ES256"), claims(), {keys().ec1.get(), ""}), issuers);
  expect_ok(make_jwt(header("RS256"), claims(), {keys().rsa1.get(), ""}), issuers);
}

TEST_CASE("jwt: exp and nbf are checked with the issuer's leeway") {
  TempDir dir;
  std::vector<config::JwtIssuer> issuers{issuer(pem_keys(dir, keys().rsa1.get()), {"RS256"})};
  REQUIRE(issuers[0].leeway == std::chrono::seconds(60));
  Signer rsa{keys().rsa1.get(), ""};
  auto c = claims();

  c["exp"] = kNowS - 3600;
  auto r = expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kExpired);
  CHECK(r.message == "JWT expired at 2026-11-25T09:00:00Z (leeway 60s)");

  c["exp"] = kNowS - 30;  // within the leeway
  expect_ok(make_jwt(header("RS256"), c, rsa), issuers);

  c["exp"] = kNowS - 61;
  expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kExpired);

  c["exp"] = static_cast<double>(kNowS) + 0.5;  // NumericDate may have a fraction
  expect_ok(make_jwt(header("RS256"), c, rsa), issuers);

  c["exp"] = "tomorrow";
  expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kBadClaims);

  c.erase("exp");  // optional
  expect_ok(make_jwt(header("RS256"), c, rsa), issuers);

  c["nbf"] = kNowS + 3600;
  r = expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kNotYetValid);
  CHECK(r.message == "JWT is not valid before 2026-11-25T11:00:00Z (leeway 60s)");

  c["nbf"] = kNowS + 30;  // within the leeway
  expect_ok(make_jwt(header("RS256"), c, rsa), issuers);

  issuers[0].leeway = std::chrono::seconds(0);
  expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kNotYetValid);

  c["nbf"] = json::array{1};
  expect_failure(make_jwt(header("RS256"), c, rsa), issuers, AuthFailure::kBadClaims);
}

TEST_CASE("jwt: a signature by another key or over other content does not verify") {
  TempDir dir;
  const auto& k = keys();
  std::vector<config::JwtIssuer> issuers{
      issuer(pem_keys(dir, k.rsa1.get()), {"RS256"}, "rs"), issuer(pem_keys(dir, k.ec1.get()), {"ES256"}, "es"),
      issuer(secret_keys(std::string(32, 'a')), {"HS256"}, "hs")};
  auto c = claims();

  c["iss"] = "rs";
  auto r = expect_failure(make_jwt(header("RS256"), c, {k.rsa2.get(), ""}), issuers, AuthFailure::kBadSignature);
  CHECK(r.message == "JWT signature does not verify with any key of issuer 'rs'");

  c["iss"] = "es";
  expect_failure(make_jwt(header("ES256"), c, {k.ec2.get(), ""}), issuers, AuthFailure::kBadSignature);

  c["iss"] = "hs";
  expect_failure(make_jwt(header("HS256"), c, {nullptr, std::string(32, 'b')}), issuers, AuthFailure::kBadSignature);

  // A valid signature spliced onto another payload.
  c["iss"] = "rs";
  std::string good = make_jwt(header("RS256"), c, {k.rsa1.get(), ""});
  expect_ok(good, issuers);
  c["sub"] = "root";
  std::string other = make_jwt(header("RS256"), c, {k.rsa2.get(), ""});
  std::string spliced = other.substr(0, other.rfind('.')) + good.substr(good.rfind('.'));
  expect_failure(spliced, issuers, AuthFailure::kBadSignature);

  // ES256 requires the 64-byte R||S form, not DER.
  c["iss"] = "es";
  std::string es = make_jwt(header("ES256"), c, {k.ec1.get(), ""});
  expect_ok(es, issuers);
  std::string input = es.substr(0, es.rfind('.'));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k.ec1.get()) == 1);
  std::string der(static_cast<size_t>(EVP_PKEY_get_size(k.ec1.get())), '\0');
  size_t len = der.size();
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                         reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1);
  der.resize(len);
  expect_failure(input + "." + b64url(der), issuers, AuthFailure::kBadSignature);
}

TEST_CASE("jwt: alg none, unsupported algorithms and algorithm confusion are refused") {
  TempDir dir;
  const auto& k = keys();
  auto c = claims();

  std::vector<config::JwtIssuer> rs_only{issuer(pem_keys(dir, k.rsa1.get()), {"RS256"})};
  std::string unsigned_token = b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(json::serialize(c)) + ".";
  auto r = expect_failure(unsigned_token, rs_only, AuthFailure::kBadAlgorithm);
  CHECK(r.message.find("'none'") != std::string::npos);

  std::string hs512 = b64url(R"({"alg":"HS512"})") + "." + b64url(json::serialize(c)) + "." + b64url("x");
  expect_failure(hs512, rs_only, AuthFailure::kBadAlgorithm);

  // The classic confusion: HMAC keyed with the RSA public key PEM the verifier holds.
  std::string confused = make_jwt(header("HS256"), c, {nullptr, public_pem(k.rsa1.get())});
  r = expect_failure(confused, rs_only, AuthFailure::kBadAlgorithm);
  CHECK(r.message == "JWT algorithm HS256 is not allowed for issuer 'https://idp.example'");

  // Even where HS256 is allowed, an RSA key never acts as an HMAC secret.
  std::vector<config::JwtIssuer> both{issuer(pem_keys(dir, k.rsa1.get()), {"RS256", "HS256"})};
  r = expect_failure(confused, both, AuthFailure::kBadSignature);
  CHECK(r.message == "JWT issuer 'https://idp.example' has no HS256 key");

  // And an EC key does not verify RS256.
  std::vector<config::JwtIssuer> ec{issuer(pem_keys(dir, k.ec1.get()), {"ES256", "RS256"})};
  expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), ec, AuthFailure::kBadSignature);
}

TEST_CASE("jwt: an algorithm the issuer does not allow is refused even with a fitting key") {
  TempDir dir;
  auto set = pem_keys(dir, keys().ec1.get());
  std::string error;
  REQUIRE(set->add_pem_file(dir.write("rsa.pem", public_pem(keys().rsa1.get())), "", error));
  std::vector<config::JwtIssuer> issuers{issuer(set, {"RS256"})};
  expect_ok(make_jwt(header("RS256"), claims(), {keys().rsa1.get(), ""}), issuers);
  expect_failure(make_jwt(header("ES256"), claims(), {keys().ec1.get(), ""}), issuers, AuthFailure::kBadAlgorithm);
  issuers[0].algorithms.clear();  // nothing allowed
  expect_failure(make_jwt(header("RS256"), claims(), {keys().rsa1.get(), ""}), issuers, AuthFailure::kBadAlgorithm);
}

TEST_CASE("jwt: aud must contain a configured audience") {
  const std::string secret(32, 'k');
  std::vector<config::JwtIssuer> issuers{issuer(secret_keys(secret), {"HS256"})};
  Signer s{nullptr, secret};
  auto c = claims();
  c["aud"] = "other";
  expect_ok(make_jwt(header("HS256"), c, s), issuers);  // not checked without audiences

  issuers[0].audiences = {"spark", "spark-prod"};
  auto r = expect_failure(make_jwt(header("HS256"), c, s), issuers, AuthFailure::kBadAudience);
  CHECK(r.message == "JWT audience must contain one of 'spark', 'spark-prod'");
  c["aud"] = "spark-prod";
  expect_ok(make_jwt(header("HS256"), c, s), issuers);
  c["aud"] = json::array{"account", "spark"};
  expect_ok(make_jwt(header("HS256"), c, s), issuers);
  c["aud"] = json::array{"account", "sparks"};
  expect_failure(make_jwt(header("HS256"), c, s), issuers, AuthFailure::kBadAudience);
  c["aud"] = 5;
  expect_failure(make_jwt(header("HS256"), c, s), issuers, AuthFailure::kBadAudience);
  c.erase("aud");
  r = expect_failure(make_jwt(header("HS256"), c, s), issuers, AuthFailure::kBadAudience);
  CHECK(r.message.find("no 'aud'") != std::string::npos);
}

TEST_CASE("jwt: iss selects the issuer and must be trusted") {
  TempDir dir;
  const auto& k = keys();
  std::vector<config::JwtIssuer> issuers{issuer(pem_keys(dir, k.rsa1.get()), {"RS256"}, "one"),
                                         issuer(pem_keys(dir, k.rsa2.get()), {"RS256"}, "two")};
  auto c = claims();
  c["iss"] = "two";
  expect_ok(make_jwt(header("RS256"), c, {k.rsa2.get(), ""}), issuers);
  // Signed by issuer one's key but claiming to be two: two's keys are used.
  expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), issuers, AuthFailure::kBadSignature);

  c["iss"] = "https://evil.example";
  auto r = expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), issuers, AuthFailure::kUnknownIssuer);
  CHECK(r.message == "JWT issuer 'https://evil.example' is not trusted");

  c["iss"] = "evil\nINFO forged log line";
  r = expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), issuers, AuthFailure::kUnknownIssuer);
  CHECK(r.message.find('\n') == std::string::npos);

  c["iss"] = 42;
  expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), issuers, AuthFailure::kUnknownIssuer);
  c.erase("iss");
  expect_failure(make_jwt(header("RS256"), c, {k.rsa1.get(), ""}), issuers, AuthFailure::kUnknownIssuer);
}

TEST_CASE("jwt: user, groups and tenant claims") {
  const std::string secret(32, 'c');
  std::vector<config::JwtIssuer> issuers{issuer(secret_keys(secret), {"HS256"})};
  Signer s{nullptr, secret};
  auto token = [&](const json::object& c) { return make_jwt(header("HS256"), c, s); };

  auto c = claims();
  c.erase("sub");
  auto r = expect_failure(token(c), issuers, AuthFailure::kBadClaims);
  CHECK(r.message.find("'sub'") != std::string::npos);
  c["sub"] = "";
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);
  c["sub"] = 7;
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);

  c = claims();
  c["groups"] = "admins";
  r = expect_ok(token(c), issuers);
  CHECK(r.principal.groups == std::vector<std::string>{"admins"});
  c.erase("groups");
  c.erase("tenant");
  r = expect_ok(token(c), issuers);
  CHECK(r.principal.groups.empty());
  CHECK(r.principal.tenant.empty());
  c["groups"] = json::array{"a", 1};
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);
  c["groups"] = json::object{{"a", "b"}};
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);
  c.erase("groups");
  c["tenant"] = json::array{"acme"};
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);

  // Custom claim names; the default names are then ignored.
  issuers[0].user_claim = "email";
  issuers[0].groups_claim = "roles";
  issuers[0].tenant_claim = "org";
  c = claims();
  expect_failure(token(c), issuers, AuthFailure::kBadClaims);  // no email
  c["email"] = "alice@example.com";
  c["roles"] = json::array{"reader"};
  c["org"] = "initech";
  r = expect_ok(token(c), issuers);
  CHECK(r.principal.user == "alice@example.com");
  CHECK(r.principal.groups == std::vector<std::string>{"reader"});
  CHECK(r.principal.tenant == "initech");
}

TEST_CASE("jwt: kid selects among the issuer's keys") {
  TempDir dir;
  const auto& k = keys();
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;
  REQUIRE(set->add_pem_file(dir.write("k1.pem", public_pem(k.rsa1.get())), "k1", error));
  REQUIRE(set->add_pem_file(dir.write("k2.pem", public_pem(k.rsa2.get())), "k2", error));
  std::vector<config::JwtIssuer> issuers{issuer(set, {"RS256"})};

  expect_ok(make_jwt(header("RS256", "k1"), claims(), {k.rsa1.get(), ""}), issuers);
  expect_ok(make_jwt(header("RS256", "k2"), claims(), {k.rsa2.get(), ""}), issuers);
  // The kid names the other key: that key alone is tried.
  expect_failure(make_jwt(header("RS256", "k1"), claims(), {k.rsa2.get(), ""}), issuers, AuthFailure::kBadSignature);
  auto r =
      expect_failure(make_jwt(header("RS256", "k3"), claims(), {k.rsa2.get(), ""}), issuers, AuthFailure::kBadSignature);
  CHECK(r.message == "JWT issuer 'https://idp.example' has no RS256 key with kid 'k3'");
  // Without a kid every key is tried.
  expect_ok(make_jwt(header("RS256"), claims(), {k.rsa2.get(), ""}), issuers);

  // A key without kid matches any kid.
  std::vector<config::JwtIssuer> any{issuer(pem_keys(dir, k.rsa2.get()), {"RS256"})};
  expect_ok(make_jwt(header("RS256", "whatever"), claims(), {k.rsa2.get(), ""}), any);
}

TEST_CASE("jwt: malformed tokens are refused without quoting them") {
  const std::string secret(32, 'm');
  std::vector<config::JwtIssuer> issuers{issuer(secret_keys(secret), {"HS256"})};
  Signer s{nullptr, secret};
  const std::string good = make_jwt(header("HS256"), claims(), s);
  expect_ok(good, issuers);
  const std::string h = good.substr(0, good.find('.'));
  const std::string p = b64url(json::serialize(claims()));
  const std::string sig = good.substr(good.rfind('.') + 1);

  expect_failure("", issuers, AuthFailure::kMalformed);
  expect_failure(h + "." + p, issuers, AuthFailure::kMalformed);                      // 2 parts
  expect_failure(good + "." + sig, issuers, AuthFailure::kMalformed);                 // 4 parts
  expect_failure(h + "." + p + "=." + sig, issuers, AuthFailure::kMalformed);         // padding
  expect_failure(h + ".!!" + p + "." + sig, issuers, AuthFailure::kMalformed);        // bad base64
  expect_failure(h + "." + p + "." + sig + "+", issuers, AuthFailure::kMalformed);    // bad base64 in signature
  expect_failure(b64url("not json") + "." + p + "." + sig, issuers, AuthFailure::kMalformed);
  expect_failure(b64url("[\"HS256\"]") + "." + p + "." + sig, issuers, AuthFailure::kMalformed);
  expect_failure(h + "." + b64url("{\"iss\":") + "." + sig, issuers, AuthFailure::kMalformed);
  expect_failure(h + "." + b64url("[1,2,3]") + "." + sig, issuers, AuthFailure::kMalformed);
  expect_failure(b64url(R"({"typ":"JWT"})") + "." + p + "." + sig, issuers, AuthFailure::kMalformed);  // no alg
  expect_failure(make_jwt(json::object{{"alg", "HS256"}, {"kid", 5}}, claims(), s), issuers, AuthFailure::kMalformed);
  expect_failure(make_jwt(json::object{{"alg", "HS256"}, {"crit", json::array{"exp"}}}, claims(), s), issuers,
                 AuthFailure::kMalformed);

  // Deep nesting is cut off, even when correctly signed.
  std::string deep = "{\"iss\":\"" + kIss + "\",\"sub\":\"a\",\"x\":" + std::string(200, '[') + std::string(200, ']') + "}";
  std::string input = h + "." + b64url(deep);
  expect_failure(input + "." + b64url(sign("HS256", input, s)), issuers, AuthFailure::kMalformed);

  // Huge tokens are refused before any decoding.
  auto big = claims();
  big["pad"] = std::string(20000, 'x');
  auto r = expect_failure(make_jwt(header("HS256"), big, s), issuers, AuthFailure::kMalformed);
  CHECK(r.message.find("16384") != std::string::npos);
}

TEST_CASE("jwt: a JWKS with an RSA and an EC key verifies both algorithms") {
  const auto& k = keys();
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;
  json::object enc = rsa_jwk(k.rsa2.get(), "enc");
  enc["use"] = "enc";
  json::object rs384 = rsa_jwk(k.rsa2.get(), "rs384");
  rs384["alg"] = "RS384";
  json::object okp{{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}};
  json::object oct{{"kty", "oct"}, {"kid", "h"}, {"k", b64url(std::string(32, 'o'))}};
  REQUIRE_MESSAGE(set->add_jwks_json(jwks({rsa_jwk(k.rsa1.get(), "r"), ec_jwk(k.ec1.get(), "e"), enc, rs384, okp, oct}),
                                     "jwks test", error),
                  error);
  CHECK(set->size() == 3);  // enc, RS384 and OKP are skipped
  std::vector<config::JwtIssuer> issuers{issuer(set, {"RS256", "ES256", "HS256"})};

  expect_ok(make_jwt(header("RS256", "r"), claims(), {k.rsa1.get(), ""}), issuers);
  expect_ok(make_jwt(header("ES256", "e"), claims(), {k.ec1.get(), ""}), issuers);
  expect_ok(make_jwt(header("ES256"), claims(), {k.ec1.get(), ""}), issuers);
  expect_ok(make_jwt(header("HS256", "h"), claims(), {nullptr, std::string(32, 'o')}), issuers);
  // The skipped "use": "enc" key is not used.
  expect_failure(make_jwt(header("RS256", "enc"), claims(), {k.rsa2.get(), ""}), issuers, AuthFailure::kBadSignature);
  expect_failure(make_jwt(header("RS256"), claims(), {k.rsa2.get(), ""}), issuers, AuthFailure::kBadSignature);

  // The same keys through add_jwks_file.
  TempDir dir;
  auto from_file = std::make_shared<policy::JwtKeySet>();
  REQUIRE_MESSAGE(from_file->add_jwks_file(dir.write("jwks.json", jwks({ec_jwk(k.ec2.get(), "")})), error), error);
  CHECK(from_file->size() == 1);
  std::vector<config::JwtIssuer> file_issuers{issuer(from_file, {"ES256"})};
  expect_ok(make_jwt(header("ES256", "any"), claims(), {k.ec2.get(), ""}), file_issuers);
}

TEST_CASE("jwt: JWKS errors name the problem and add nothing") {
  const auto& k = keys();
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;

  json::object okp{{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}};
  CHECK_FALSE(set->add_jwks_json(jwks({okp}), "jwks only-okp", error));
  CHECK(error.find("jwks only-okp") != std::string::npos);
  CHECK(error.find("no usable key") != std::string::npos);

  error.clear();
  CHECK_FALSE(set->add_jwks_json("not json", "jwks garbage", error));
  CHECK(error.find("not a JWK Set") != std::string::npos);
  error.clear();
  CHECK_FALSE(set->add_jwks_json(R"({"keys":{}})", "jwks object", error));
  CHECK_FALSE(error.empty());

  // A point not on the curve.
  json::object bad_ec{{"kty", "EC"}, {"crv", "P-256"}, {"x", b64url(std::string(32, '\1'))},
                      {"y", b64url(std::string(32, '\1'))}};
  error.clear();
  CHECK_FALSE(set->add_jwks_json(jwks({rsa_jwk(k.rsa1.get(), "good"), bad_ec}), "jwks bad-ec", error));
  CHECK(error.find("key 1") != std::string::npos);
  CHECK(set->size() == 0);  // all or nothing: the good RSA key was not added either

  // alg contradicting kty.
  json::object mixed = ec_jwk(k.ec1.get(), "mixed");
  mixed["alg"] = "RS256";
  error.clear();
  CHECK_FALSE(set->add_jwks_json(jwks({mixed}), "jwks mixed", error));
  CHECK(error.find("does not fit") != std::string::npos);

  // A short RSA modulus; the error does not quote the key.
  PkeyPtr small(EVP_RSA_gen(1024));
  REQUIRE(small);
  json::object weak = rsa_jwk(small.get(), "weak");
  error.clear();
  CHECK_FALSE(set->add_jwks_json(jwks({weak}), "jwks weak", error));
  CHECK(error.find("2048") != std::string::npos);
  CHECK(error.find(std::string(weak["n"].as_string()).substr(0, 16)) == std::string::npos);
  CHECK(set->size() == 0);
}

TEST_CASE("jwt: PEM loading refuses missing files, private keys, weak keys and garbage") {
  TempDir dir;
  auto set = std::make_shared<policy::JwtKeySet>();
  std::string error;
  CHECK_FALSE(set->add_pem_file(dir.path + "/missing.pem", "", error));
  CHECK(error.find("missing.pem") != std::string::npos);

  error.clear();
  CHECK_FALSE(set->add_pem_file(dir.write("garbage.pem", "hello"), "", error));
  CHECK(error.find("no PEM public key") != std::string::npos);

  std::string priv = private_pem(keys().ec1.get());
  error.clear();
  CHECK_FALSE(set->add_pem_file(dir.write("private.pem", priv), "", error));
  CHECK(error.find("private key") != std::string::npos);
  std::string body = priv.substr(priv.find('\n') + 1, 40);
  CHECK(error.find(body) == std::string::npos);

  PkeyPtr small(EVP_RSA_gen(1024));
  REQUIRE(small);
  error.clear();
  CHECK_FALSE(set->add_pem_file(dir.write("weak.pem", public_pem(small.get())), "", error));
  CHECK(error.find("1024 bits") != std::string::npos);

  PkeyPtr p384(EVP_EC_gen("P-384"));
  REQUIRE(p384);
  error.clear();
  CHECK_FALSE(set->add_pem_file(dir.write("p384.pem", public_pem(p384.get())), "", error));
  CHECK(error.find("P-256") != std::string::npos);

  CHECK(set->size() == 0);
}

}  // TEST_SUITE
