// Authentication and identity through the real gateway binary: static tokens (inline and
// in a tokens file, reloaded on SIGHUP), JWTs signed here with OpenSSL (RS256 keys in a
// PEM file, ES256 keys in a JWKS file, an HS256 secret from the environment), client
// certificates (mTLS), identity enforce and rewrite (checked byte for byte with the
// fake's x-fake-request-sha256 trailer), the session registry keyed by the verified
// user, and which credential reaches the backend.
//
// Each fake has its own random server_side_session_id and puts it in every response;
// that is how a test tells which backend served a call.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "spark/response_scanner.h"
#include "spark/rpc.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;
using ::grpc::StatusCode;

// ---- tokens and calls ----

std::string token_hash(const std::string& token) { return "sha256:" + sha256_hex(token); }

CallOptions with_token(const std::string& token, const std::string& header = "authorization") {
  CallOptions o;
  o.op_timeout = 10s;
  if (!token.empty()) o.metadata = {{header, "Bearer " + token}};
  return o;
}

CallOptions with_header(const std::string& name, const std::string& value) {
  CallOptions o;
  o.op_timeout = 10s;
  o.metadata = {{name, value}};
  return o;
}

CallOptions quick() {
  CallOptions o;
  o.op_timeout = 10s;
  return o;
}

// The server_side_session_id in the first response message of `r`, or "" if none.
std::string ssid_of(const CallResult& r, std::string_view rpc) {
  if (r.responses.empty()) return "";
  const auto* info = spark::find_rpc_by_path(method_path(rpc));
  if (!info) return "";
  const auto& msg = r.responses.front();
  spark::ResponseScanner scan(*info, msg.size());
  scan.feed({reinterpret_cast<const uint8_t*>(msg.data()), msg.size()});
  return std::string(scan.server_side_session_id());
}

std::string ssid_of_fake(const FakeServer& f) {
  auto r = call(make_channel(f.address()), "Config", {request_for("Config", "probe")}, quick());
  REQUIRE(r.status.ok());
  return ssid_of(r, "Config");
}

double metric(const Gateway& gw, const std::string& series) {
  return scrape_metric(gw.admin_port(), series).value_or(-1);
}

double auth_failures(const Gateway& gw, const std::string& reason) {
  return metric(gw, "sparkgate_auth_failures_total{reason=\"" + reason + "\"}");
}

// "  tokens:\n    - {...}\n" entries for `auth:`.
std::string token_entry(const std::string& token, const std::string& user, const std::string& extra = "") {
  return "    - {sha256: \"" + token_hash(token) + "\", user: " + user + (extra.empty() ? "" : ", " + extra) + "}\n";
}

// ---- JWTs ----

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

Pkey rsa_key() {
  Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  REQUIRE(k);
  return k;
}

Pkey ec_key() {
  Pkey k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  REQUIRE(k);
  return k;
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  REQUIRE(PEM_write_bio_PUBKEY(bio.get(), key) == 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

std::string b64url(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8) |
                       static_cast<uint8_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (in.size() - i == 1) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (in.size() - i == 2) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

std::string bn_bytes(EVP_PKEY* key, const char* param, int pad = 0) {
  BIGNUM* bn = nullptr;
  REQUIRE(EVP_PKEY_get_bn_param(key, param, &bn) == 1);
  const int n = pad > 0 ? pad : BN_num_bytes(bn);
  std::string out(static_cast<size_t>(n), '\0');
  REQUIRE(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), n) == n);
  BN_free(bn);
  return out;
}

// RS256 or ES256 (raw R||S, RFC 7518 §3.4) over `input`.
std::string sign(EVP_PKEY* key, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) == 1);
  sig.resize(len);
  if (!EVP_PKEY_is_a(key, "EC")) return sig;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* der = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  REQUIRE(der != nullptr);
  std::string raw(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(der), reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(der), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(der);
  return raw;
}

std::string hs256(const std::string& secret, std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
               reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len) != nullptr);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string jwt_input(const std::string& header_json, const std::string& payload_json) {
  return b64url(header_json) + "." + b64url(payload_json);
}

std::string jwt_signed(EVP_PKEY* key, const std::string& header_json, const std::string& payload_json) {
  const std::string input = jwt_input(header_json, payload_json);
  return input + "." + b64url(sign(key, input));
}

std::string jwt_hs256(const std::string& secret, const std::string& header_json, const std::string& payload_json) {
  const std::string input = jwt_input(header_json, payload_json);
  return input + "." + b64url(hs256(secret, input));
}

// The gateway's format for exp/nbf in messages.
std::string utc(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string claims(const std::string& iss, const std::string& aud_json, const std::string& sub, int64_t exp,
                   const std::string& extra = "") {
  return "{\"iss\":\"" + iss + "\",\"aud\":" + aud_json + ",\"sub\":\"" + sub + "\",\"exp\":" + std::to_string(exp) +
         extra + "}";
}

// An UNAUTHENTICATED refusal with exactly `message`, which never contains the credential.
void check_refused(const CallResult& r, const std::string& message, const std::string& credential) {
  CHECK_MESSAGE(r.status.error_code() == StatusCode::UNAUTHENTICATED, r.describe());
  CHECK(r.status.error_message() == message);
  CHECK(r.status.error_message().find(credential) == std::string::npos);
  CHECK(r.responses.empty());
}

}  // namespace

TEST_CASE("auth: static tokens: missing, malformed and unknown credentials are refused; both header names work") {
  if (direct_mode()) return;
  FakeServer fake;
  const std::string alice_token = "sk-alice-7f3a9c2e41d8b65f0a1e";
  const std::string unknown_token = "sk-nobody-0c4d8e2b7a9f13e6d5c2";
  GatewayOptions o = one_backend(fake.address());
  o.log_level = "debug";  // even debug logs must not show a credential
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(alice_token, "alice", "groups: [analysts], tenant: acme");
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string req = request_for("Config", "tok-1");

  auto none = call(ch, "Config", {req}, quick());
  check_refused(none, "no credential: send 'authorization: Bearer <token>' (token=... in the sc:// URL)", alice_token);

  auto basic = call(ch, "Config", {req}, with_header("authorization", "Basic YWxpY2U6c2VjcmV0LXB3"));
  check_refused(basic, "the authorization header is not 'Bearer <token>'", "YWxpY2U6c2VjcmV0LXB3");
  auto basic_scala = call(ch, "Config", {req}, with_header("authentication", "Basic YWxpY2U6c2VjcmV0LXB3"));
  check_refused(basic_scala, "the authentication header is not 'Bearer <token>'", "YWxpY2U6c2VjcmV0LXB3");

  auto unknown = call(ch, "Config", {req}, with_token(unknown_token));
  check_refused(unknown, "the bearer token is not valid (unknown token)", unknown_token);
  // A token that differs from a valid one in its last character is just as unknown.
  std::string near = alice_token;
  near.back() = near.back() == 'e' ? 'f' : 'e';
  check_refused(call(ch, "Config", {req}, with_token(near)), "the bearer token is not valid (unknown token)", near);

  // The valid token, PySpark style and Scala style; enforce passes the request unchanged.
  auto ok = call(ch, "Config", {req}, with_token(alice_token));
  REQUIRE_MESSAGE(ok.status.ok(), ok.describe());
  CHECK(ok.trailer("x-fake-request-sha256") == sha256_hex(req));
  auto scala = call(ch, "Config", {req}, with_token(alice_token, "authentication"));
  REQUIRE_MESSAGE(scala.status.ok(), scala.describe());
  CHECK(scala.trailer("x-fake-request-sha256") == sha256_hex(req));
  // "bearer" is case-insensitive (RFC 6750 §2.1 follows RFC 7235's case-insensitive scheme).
  auto lower = call(ch, "Config", {req}, with_header("authorization", "bearer " + alice_token));
  CHECK_MESSAGE(lower.status.ok(), lower.describe());

  CHECK(auth_failures(gw, "missing") == 1);
  CHECK(auth_failures(gw, "malformed") == 2);
  CHECK(auth_failures(gw, "unknown_token") == 2);
  for (const char* reason : {"expired", "not_yet_valid", "bad_signature", "bad_algorithm", "unknown_issuer",
                             "bad_audience", "bad_claims", "bad_certificate"}) {
    CAPTURE(reason);
    CHECK(auth_failures(gw, reason) == 0);
  }
  // Refused calls never reached the backend: only the three good ones did.
  CHECK(fake_stats(fake).sent_messages == 3);
  const std::string log = gw.stderr_text();
  CHECK(log.find("authentication failed (unknown_token)") != std::string::npos);
  for (const auto& secret : {alice_token, unknown_token, near, std::string("YWxpY2U6c2VjcmV0LXB3")}) {
    CAPTURE(secret);
    CHECK(log.find(secret) == std::string::npos);
  }
  CHECK(gw.running());
}

TEST_CASE("auth: JWTs: RS256 (PEM), ES256 (JWKS) and HS256 pass; each kind of bad token is refused by reason") {
  if (direct_mode()) return;
  TempDir dir;
  auto rsa = rsa_key();
  auto other_rsa = rsa_key();
  auto ec = ec_key();
  const std::string rsa_pem = dir.write("rsa.pem", public_pem(rsa.get()));
  const std::string jwks =
      dir.write("jwks.json", "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e1\",\"use\":\"sig\","
                             "\"alg\":\"ES256\","
                             "\"x\":\"" + b64url(bn_bytes(ec.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32)) +
                             "\",\"y\":\"" + b64url(bn_bytes(ec.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"}]}");
  const std::string hs_secret = "hs256-itest-secret-0123456789abcdef-XYZ";
  REQUIRE(setenv("SPARKGATE_ITEST_JWT_SECRET", hs_secret.c_str(), 1) == 0);

  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  o.log_level = "debug";
  o.extra_yaml =
      "auth:\n  jwt:\n"
      "    - issuer: https://idp.test\n      audience: sparkgate\n      algorithms: [RS256, ES256]\n"
      "      leeway: 60s\n      keys: [{file: " + rsa_pem + ", kid: k1}]\n      jwks_file: " + jwks + "\n"
      "    - issuer: https://hs.test\n      audience: [other, sparkgate]\n      algorithms: [HS256]\n"
      "      secret_env: SPARKGATE_ITEST_JWT_SECRET\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string req = request_for("Config", "jwt-1");
  const int64_t now = std::time(nullptr);
  const std::string rs_header = R"({"alg":"RS256","typ":"JWT","kid":"k1"})";
  const std::string es_header = R"({"alg":"ES256","typ":"JWT","kid":"e1"})";
  const std::string hs_header = R"({"alg":"HS256","typ":"JWT"})";
  const std::string idp = "https://idp.test";
  std::vector<std::string> all_tokens;
  auto send = [&](const std::string& token) {
    all_tokens.push_back(token);
    return call(ch, "Config", {req}, with_token(token));
  };

  // Valid tokens of each algorithm, the user from `sub`.
  for (const auto& token :
       {jwt_signed(rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "alice", now + 600, ",\"groups\":[\"a\"]")),
        jwt_signed(ec.get(), es_header, claims(idp, "[\"x\",\"sparkgate\"]", "alice", now + 600)),
        jwt_hs256(hs_secret, hs_header, claims("https://hs.test", "\"sparkgate\"", "alice", now + 600)),
        // expired 20 s ago: within the 60 s leeway
        jwt_signed(rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "alice", now - 20))}) {
    auto r = send(token);
    CHECK_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(req));
  }

  struct Bad {
    std::string name;
    std::string token;
    std::string message;
  };
  const std::string good_rs = jwt_signed(rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "alice", now + 600));
  // The same signature over another payload (sub bob instead of alice).
  const std::string tampered = jwt_input(rs_header, claims(idp, "\"sparkgate\"", "bob", now + 600)) +
                               good_rs.substr(good_rs.rfind('.'));
  const std::vector<Bad> bad = {
      {"no user claim", jwt_signed(rsa.get(), rs_header,
                                   "{\"iss\":\"" + idp + "\",\"aud\":\"sparkgate\",\"exp\":" +
                                       std::to_string(now + 600) + "}"),
       "JWT user claim 'sub' is missing, empty or not a string"},
      {"unknown kid", jwt_signed(rsa.get(), R"({"alg":"RS256","typ":"JWT","kid":"k9"})",
                                 claims(idp, "\"sparkgate\"", "alice", now + 600)),
       "JWT issuer 'https://idp.test' has no RS256 key with kid 'k9'"},
      {"expired", jwt_signed(rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "alice", now - 3600)),
       "JWT expired at " + utc(now - 3600) + " (leeway 60s)"},
      {"not yet valid",
       jwt_signed(ec.get(), es_header,
                  claims(idp, "\"sparkgate\"", "alice", now + 7200, ",\"nbf\":" + std::to_string(now + 3600))),
       "JWT is not valid before " + utc(now + 3600) + " (leeway 60s)"},
      {"signed by another key",
       jwt_signed(other_rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "alice", now + 600)),
       "JWT signature does not verify with any key of issuer 'https://idp.test'"},
      {"tampered payload", tampered, "JWT signature does not verify with any key of issuer 'https://idp.test'"},
      {"alg none", b64url(R"({"alg":"none","typ":"JWT"})") + "." +
                       b64url(claims(idp, "\"sparkgate\"", "alice", now + 600)) + ".",
       "JWT algorithm 'none' is not supported (HS256, RS256 or ES256)"},
      // Algorithm confusion: the RSA public key used as an HMAC secret.
      {"HS256 for an RS256 issuer", jwt_hs256(public_pem(rsa.get()), hs_header,
                                              claims(idp, "\"sparkgate\"", "alice", now + 600)),
       "JWT algorithm HS256 is not allowed for issuer 'https://idp.test'"},
      {"unknown issuer",
       jwt_signed(rsa.get(), rs_header, claims("https://evil.test", "\"sparkgate\"", "alice", now + 600)),
       "JWT issuer 'https://evil.test' is not trusted"},
      {"wrong audience", jwt_signed(rsa.get(), rs_header, claims(idp, "\"spark-other\"", "alice", now + 600)),
       "JWT audience must contain one of 'sparkgate'"},
  };
  for (const auto& b : bad) {
    CAPTURE(b.name);
    auto r = send(b.token);
    check_refused(r, b.message, b.token);
    // Not even the signature part (the part that is secret-derived) may be echoed.
    const std::string sig = b.token.substr(b.token.rfind('.') + 1);
    if (!sig.empty()) CHECK(r.status.error_message().find(sig) == std::string::npos);
  }

  // A valid JWT for bob: the principal is the claim's user, so user_id alice is refused.
  auto bob = send(jwt_signed(rsa.get(), rs_header, claims(idp, "\"sparkgate\"", "bob", now + 600)));
  CHECK(bob.status.error_code() == StatusCode::PERMISSION_DENIED);
  CHECK(bob.status.error_message() == "user_id 'alice' does not match authenticated user 'bob'");

  CHECK(auth_failures(gw, "expired") == 1);
  CHECK(auth_failures(gw, "not_yet_valid") == 1);
  CHECK(auth_failures(gw, "bad_signature") == 3);
  CHECK(auth_failures(gw, "bad_algorithm") == 2);
  CHECK(auth_failures(gw, "bad_claims") == 1);
  CHECK(auth_failures(gw, "unknown_issuer") == 1);
  CHECK(auth_failures(gw, "bad_audience") == 1);
  CHECK(auth_failures(gw, "missing") == 0);
  CHECK(auth_failures(gw, "malformed") == 0);
  CHECK(metric(gw, "sparkgate_identity_rejections_total") == 1);
  CHECK(fake_stats(fake).sent_messages == 4);
  const std::string log = gw.stderr_text();
  for (const auto& token : all_tokens) {
    CHECK(log.find(token) == std::string::npos);
    const std::string sig = token.substr(token.rfind('.') + 1);
    if (!sig.empty()) CHECK(log.find(sig) == std::string::npos);
  }
  CHECK(log.find(hs_secret) == std::string::npos);

  // Key rotation: a new JWKS is read on reload; the old key's tokens stop verifying.
  auto ec2 = ec_key();
  dir.write("jwks.json.new",
            "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"e2\",\"x\":\"" +
                b64url(bn_bytes(ec2.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32)) + "\",\"y\":\"" +
                b64url(bn_bytes(ec2.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32)) + "\"}]}");
  std::filesystem::rename(dir.path() / "jwks.json.new", jwks);
  gw.rewrite_config("", o.extra_yaml);
  REQUIRE_MESSAGE(wait_until([&] { return metric(gw, "sparkgate_config_reloads_total{result=\"success\"}") == 1; }, 5s),
                  gw.stderr_text());
  auto rotated = send(jwt_signed(ec2.get(), R"({"alg":"ES256","typ":"JWT","kid":"e2"})",
                                 claims(idp, "\"sparkgate\"", "alice", now + 600)));
  CHECK_MESSAGE(rotated.status.ok(), rotated.describe());
  auto old_key = send(jwt_signed(ec.get(), es_header, claims(idp, "\"sparkgate\"", "alice", now + 600)));
  check_refused(old_key, "JWT issuer 'https://idp.test' has no ES256 key with kid 'e1'", all_tokens.back());
  // RS256 keys from the PEM file are still there.
  CHECK(send(good_rs).status.ok());
  CHECK(gw.running());
}

TEST_CASE("auth: tokens_file; a reload adds a token without a restart; a broken auth config keeps the old one") {
  if (direct_mode()) return;
  TempDir dir;
  const std::string alice_token = "tf-alice-4b1e8a0c9d2f7e63";
  const std::string bob_token = "tf-bob-93c1d7e0a2b4f856";
  const std::string tokens = dir.write("tokens.yaml", "tokens:\n" + token_entry(alice_token, "alice"));
  FakeServer fake;
  GatewayOptions o = one_backend(fake.address());
  const std::string auth_yaml = "auth:\n  tokens_file: " + tokens + "\n";
  o.extra_yaml = auth_yaml;
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  auto config_as = [&](const std::string& user, const std::string& token) {
    return call(ch, "Config", {with_user(request_for("Config", "tf-" + user), user)}, with_token(token));
  };
  auto reloads = [&](const char* result) {
    return metric(gw, std::string("sparkgate_config_reloads_total{result=\"") + result + "\"}");
  };

  CHECK_MESSAGE(config_as("alice", alice_token).status.ok(), gw.stderr_text());
  auto bob_before = config_as("bob", bob_token);
  CHECK(bob_before.status.error_code() == StatusCode::UNAUTHENTICATED);
  CHECK(bob_before.status.error_message() == "the bearer token is not valid (unknown token)");

  // bob is added to the tokens file (now as a bare list, the other accepted shape).
  dir.write("tokens.yaml.new", token_entry(alice_token, "alice").substr(2) + token_entry(bob_token, "bob").substr(2));
  std::filesystem::rename(dir.path() / "tokens.yaml.new", tokens);
  gw.rewrite_config("", auth_yaml);
  REQUIRE_MESSAGE(wait_until([&] { return reloads("success") == 1; }, 5s), gw.stderr_text());
  auto bob_after = config_as("bob", bob_token);
  CHECK_MESSAGE(bob_after.status.ok(), bob_after.describe());
  CHECK(config_as("alice", alice_token).status.ok());

  // A token pasted where its hash belongs: the reload fails, the old auth keeps serving,
  // and the pasted value is never echoed.
  const std::string pasted = "sk-pasted-by-mistake-5e7a1c";
  gw.rewrite_config("", auth_yaml + "  tokens:\n    - {sha256: \"sha256:" + pasted + "\", user: carol}\n");
  REQUIRE_MESSAGE(wait_until([&] { return reloads("failure") == 1; }, 5s), gw.stderr_text());
  CHECK(config_as("alice", alice_token).status.ok());
  CHECK(config_as("bob", bob_token).status.ok());
  CHECK(config_as("carol", pasted).status.error_code() == StatusCode::UNAUTHENTICATED);
  const std::string log = gw.stderr_text();
  CHECK(log.find("still running the previous configuration") != std::string::npos);
  CHECK(log.find(".sha256 must be \"sha256:\" followed by 64 hex digits") != std::string::npos);
  for (const auto& secret : {pasted, alice_token, bob_token}) {
    CAPTURE(secret);
    CHECK(log.find(secret) == std::string::npos);
  }

  // A broken tokens file (an entry without user) is refused the same way.
  dir.write("tokens.yaml", "- {sha256: \"" + token_hash(alice_token) + "\"}\n");
  gw.rewrite_config("", auth_yaml);
  REQUIRE_MESSAGE(wait_until([&] { return reloads("failure") == 2; }, 5s), gw.stderr_text());
  CHECK(config_as("alice", alice_token).status.ok());
  CHECK(config_as("bob", bob_token).status.ok());
  CHECK(reloads("success") == 1);
  CHECK(gw.running());
}

TEST_CASE("auth: identity enforce refuses another user_id on every RPC; the authenticated user passes") {
  if (direct_mode()) return;
  FakeServer fake;
  const std::string token = "enf-alice-61d0c3b9e2";
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(token, "alice") + "identity:\n  mode: enforce\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());

  int refused = 0;
  for (const auto& rpc : spark::all_rpcs()) {
    std::string name(rpc.name);
    CAPTURE(name);
    const std::string as_bob = with_user(request_for(rpc.name, "enf-" + name), "bob");
    auto r = call(ch, rpc.name, {as_bob}, with_token(token));
    CHECK(r.status.error_code() == StatusCode::PERMISSION_DENIED);
    CHECK(r.status.error_message() == "user_id 'bob' does not match authenticated user 'alice'");
    ++refused;
  }
  CHECK(fake_stats(fake).sent_messages == 0);
  // The same requests as alice pass, unchanged.
  for (const char* rpc : {"Config", "ExecutePlan", "AddArtifacts"}) {
    CAPTURE(rpc);
    const std::string req = request_for(rpc, std::string("enf-") + rpc);
    // Two messages for the client-streaming AddArtifacts; the fake hashes both.
    const bool streaming = std::string_view(rpc) == "AddArtifacts";
    auto r = call(ch, rpc, streaming ? std::vector<std::string>{req, req} : std::vector<std::string>{req},
                  with_token(token));
    CHECK_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(streaming ? req + req : req));
  }
  // No user_context at all is no exception.
  {
    view::ConfigRequest bare;
    bare.set_session_id("enf-bare");
    auto r = call(ch, "Config", {bare.SerializeAsString()}, with_token(token));
    CHECK(r.status.error_code() == StatusCode::PERMISSION_DENIED);
    CHECK(r.status.error_message() == "user_id '' does not match authenticated user 'alice'");
    ++refused;
  }
  // A second user_context smuggled in after a large plan (protobuf would merge it, so
  // Spark would see bob): refused, and the backend does not answer the request.
  {
    const auto before = fake_stats(fake);
    const std::string smuggled = execute_plan_request("enf-smuggle", "", 300 * 1024) +
                                 pb_len_field(2, pb_len_field(1, "bob"));
    auto r = call(ch, "ExecutePlan", {smuggled}, with_token(token));
    CHECK(r.status.error_code() == StatusCode::INVALID_ARGUMENT);
    CHECK(r.status.error_message() ==
          "cannot read the Spark request envelope of ExecutePlan: the request repeats envelope field 2 after the "
          "gateway routed it");
    CHECK(fake_stats(fake).sent_messages == before.sent_messages);
  }
  CHECK(metric(gw, "sparkgate_identity_rejections_total") == refused);
  CHECK(gw.running());
}

TEST_CASE("auth: identity rewrite splices user_context byte for byte") {
  if (direct_mode()) return;
  FakeServer fake;
  const std::string token = "rw-alice-0f9e8d7c6b5a";
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(token, "alice") + "identity:\n  mode: rewrite\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string principal_uc = pb_len_field(1, "alice") + pb_len_field(2, "alice");
  // extensions (field 999): a google.protobuf.Any; field 50: unknown to every version.
  const std::string ext = pb_len_field(999, pb_len_field(1, "type.googleapis.com/itest.Ext") +
                                                pb_len_field(2, pb_varint_field(1, 1)));
  const std::string unknown_inner = pb_varint_field(50, 7);

  SUBCASE("ExecutePlan: user_context among other fields, a 300 KiB plan and unknown fields") {
    std::string plan_inner = pb_len_field(1000, random_bytes(300 * 1024, 7));
    const std::string session = pb_len_field(1, "rw-exec");
    // user_id after an unknown field, and user_name last: the order of the others is kept.
    const std::string uc_bob = unknown_inner + pb_len_field(1, "bob") + ext + pb_len_field(2, "Bob Builder");
    const std::string tail = pb_len_field(3, plan_inner) + pb_len_field(4, "itest") + pb_len_field(6, "op-rw") +
                             pb_len_field(2000, "trailing unknown") + pb_varint_field(2001, 123456789);
    const std::string sent = session + pb_len_field(2, uc_bob) + tail;
    const std::string expected = session + pb_len_field(2, principal_uc + unknown_inner + ext) + tail;
    auto r = call(ch, "ExecutePlan", {sent}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-bytes") == std::to_string(expected.size()));
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(expected));
    CHECK(metric(gw, "sparkgate_identity_rejections_total") == 0);
  }
  SUBCASE("ExecutePlan larger than the stream window, user_context shrinking and growing, many times") {
    // 3 MiB plans need several window updates; the splice changes the byte count the
    // gateway forwards, in both directions, on one connection.
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      const std::string session = pb_len_field(1, "rw-big-" + std::to_string(i));
      const std::string old_user = i % 2 ? std::string("b") : std::string(5000, 'm');
      const std::string uc = pb_len_field(1, old_user) + ext;
      const std::string tail = pb_len_field(3, pb_len_field(1000, random_bytes(3 << 20, 100 + i))) +
                               pb_len_field(4, "itest");
      const std::string sent = session + pb_len_field(2, uc) + tail;
      const std::string expected = session + pb_len_field(2, principal_uc + ext) + tail;
      auto r = call(ch, "ExecutePlan", {sent, sent}, with_token(token));
      REQUIRE_MESSAGE(r.status.ok(), r.describe());
      // Only the first message is rewritten; the second passes as sent.
      CHECK(r.trailer("x-fake-request-bytes") == std::to_string(expected.size() + sent.size()));
      CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(expected + sent));
    }
  }
  SUBCASE("Config without user_context: one is inserted at the start") {
    const std::string sent = pb_len_field(1, "rw-config") + pb_len_field(4, "itest") + pb_len_field(3000, "x");
    const std::string expected = pb_len_field(2, principal_uc) + sent;
    auto r = call(ch, "Config", {sent}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(expected));
  }
  SUBCASE("user_context written twice: both lose user_id and user_name, the first gets the principal") {
    const std::string session = pb_len_field(1, "rw-dup");
    const std::string sent = session + pb_len_field(2, pb_len_field(1, "bob")) +
                             pb_len_field(2, pb_len_field(2, "mallory") + ext) + pb_len_field(4, "itest");
    const std::string expected =
        session + pb_len_field(2, principal_uc) + pb_len_field(2, ext) + pb_len_field(4, "itest");
    auto r = call(ch, "Config", {sent}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(expected));
  }
  SUBCASE("user_context already the principal: the request passes untouched") {
    const std::string sent = pb_len_field(1, "rw-same") + pb_len_field(2, principal_uc + ext) +
                             pb_len_field(4, "itest");
    auto r = call(ch, "Config", {sent}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(sent));
  }
  SUBCASE("AddArtifacts: the first message is rewritten, the later ones pass as sent") {
    const std::string first = with_user(request_for("AddArtifacts", "rw-art"), "bob");
    const std::string second = request_for("AddArtifacts", "rw-art") + pb_len_field(1000, random_bytes(70000, 3));
    auto r = call(ch, "AddArtifacts", {first, second}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    // request_for's message is alice's, and the splice writes user_name too.
    const std::string uc_alice = pb_len_field(2, pb_len_field(1, "alice"));
    std::string rewritten = request_for("AddArtifacts", "rw-art");
    rewritten.replace(rewritten.find(uc_alice), uc_alice.size(), pb_len_field(2, principal_uc));
    CHECK(r.trailer("x-fake-request-messages") == "2");
    CHECK(r.trailer("x-fake-request-sha256") == sha256_hex(rewritten + second));
  }
  CHECK(gw.running());
}

TEST_CASE("auth: sessions are keyed by the verified user: another user's session id reaches a session of one's own") {
  if (direct_mode()) return;
  FakeServer a, b;
  const std::string a_id = ssid_of_fake(a), b_id = ssid_of_fake(b);
  const std::string alice_token = "reg-alice-5d4c3b2a19";
  const std::string bob_token = "reg-bob-a1b2c3d4e5f6";
  GatewayOptions o;
  o.backends = {a.address()};
  o.clusters_yaml = "clusters:\n  - name: spark\n    placement: round_robin\n    backends:\n      - address: " +
                    a.address() + "\n      - address: " + b.address() + "\nroutes:\n  - cluster: spark\n";
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(alice_token, "alice") + token_entry(bob_token, "bob") +
                 "identity:\n  mode: rewrite\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string as_bob = with_user(request_for("Config", "shared-sid"), "bob");

  auto bob1 = call(ch, "Config", {as_bob}, with_token(bob_token));
  REQUIRE_MESSAGE(bob1.status.ok(), bob1.describe());
  const std::string bob_home = ssid_of(bob1, "Config");
  REQUIRE((bob_home == a_id || bob_home == b_id));
  const std::string other = bob_home == a_id ? b_id : a_id;

  // alice sends bob's session id, even with user_id "bob": the gateway rewrites it to
  // alice, and (alice, shared-sid) is a new session, placed by round robin on the other
  // backend.
  auto alice1 = call(ch, "Config", {as_bob}, with_token(alice_token));
  REQUIRE_MESSAGE(alice1.status.ok(), alice1.describe());
  CHECK(ssid_of(alice1, "Config") == other);
  std::string expected = as_bob;
  const std::string uc_bob = pb_len_field(2, pb_len_field(1, "bob"));
  expected.replace(expected.find(uc_bob), uc_bob.size(),
                   pb_len_field(2, pb_len_field(1, "alice") + pb_len_field(2, "alice")));
  CHECK(alice1.trailer("x-fake-request-sha256") == sha256_hex(expected));

  // Each keeps their own pin, whatever the order of calls.
  for (int i = 0; i < 5; ++i) {
    CHECK(ssid_of(call(ch, "Config", {as_bob}, with_token(bob_token)), "Config") == bob_home);
    CHECK(ssid_of(call(ch, "Config", {as_bob}, with_token(alice_token)), "Config") == other);
    CHECK(ssid_of(call(ch, "ExecutePlan", {with_user(request_for("ExecutePlan", "shared-sid"), "bob")},
                       with_token(alice_token)),
                  "ExecutePlan") == other);
  }
  // alice releasing "her" shared-sid ends her session only; bob's stays where it was.
  auto rel = call(ch, "ReleaseSession", {with_user(request_for("ReleaseSession", "shared-sid"), "bob")},
                  with_token(alice_token));
  REQUIRE_MESSAGE(rel.status.ok(), rel.describe());
  CHECK(ssid_of(rel, "ReleaseSession") == other);
  for (int i = 0; i < 3; ++i) {
    CHECK(ssid_of(call(ch, "Config", {as_bob}, with_token(bob_token)), "Config") == bob_home);
  }
  CHECK(gw.running());
}

TEST_CASE("auth: which credential reaches the backend") {
  if (direct_mode()) return;
  FakeServer fake;
  const std::string token = "fwd-alice-2e4f6a8c0b";
  const std::string auth_yaml = "auth:\n  tokens:\n" + token_entry(token, "alice");
  const std::string req = request_for("Config", "fwd-1");

  SUBCASE("without auth the client's header is passed on") {
    Gateway gw(one_backend(fake.address()));
    auto r = call(make_channel(gw.address()), "Config", {req}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-authorization") == "Bearer " + token);
  }
  SUBCASE("with auth, by default the client's credential stops at the gateway") {
    GatewayOptions o = one_backend(fake.address());
    o.extra_yaml = auth_yaml;
    Gateway gw(o);
    auto r = call(make_channel(gw.address()), "Config", {req}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK_FALSE(r.has_trailer("x-fake-authorization"));
    auto scala = call(make_channel(gw.address()), "Config", {req}, with_token(token, "authentication"));
    REQUIRE_MESSAGE(scala.status.ok(), scala.describe());
    CHECK_FALSE(scala.has_trailer("x-fake-authorization"));
  }
  SUBCASE("forward_client_credentials: true passes it on") {
    GatewayOptions o = one_backend(fake.address());
    o.extra_yaml = auth_yaml + "  forward_client_credentials: true\n";
    Gateway gw(o);
    auto r = call(make_channel(gw.address()), "Config", {req}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-authorization") == "Bearer " + token);
  }
  SUBCASE("cluster credentials replace the client's, also with forwarding on") {
    const std::string cluster_token = "cluster-secret-77aa55cc33";
    REQUIRE(setenv("SPARKGATE_ITEST_CLUSTER_TOKEN", cluster_token.c_str(), 1) == 0);
    GatewayOptions o = one_backend(fake.address());
    o.clusters_yaml = "clusters:\n  - name: local\n    credentials: {token_env: SPARKGATE_ITEST_CLUSTER_TOKEN}\n"
                      "    backends:\n      - address: " + fake.address() + "\nroutes:\n  - cluster: local\n";
    o.extra_yaml = auth_yaml + "  forward_client_credentials: true\n";
    o.log_level = "debug";
    Gateway gw(o);
    auto r = call(make_channel(gw.address()), "Config", {req}, with_token(token));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(r.trailer("x-fake-authorization") == "Bearer " + cluster_token);
    auto scala = call(make_channel(gw.address()), "Config", {req}, with_token(token, "authentication"));
    REQUIRE_MESSAGE(scala.status.ok(), scala.describe());
    CHECK(scala.trailer("x-fake-authorization") == "Bearer " + cluster_token);
    CHECK(gw.stderr_text().find(cluster_token) == std::string::npos);
  }
}

TEST_CASE("auth: mTLS with required client certificates: principal, groups and routing from the certificate") {
  if (direct_mode()) return;
  TestPki pki;
  const auto alice = issue_client_cert(pki, "alice", "/O=acme/OU=etl/CN=alice");
  const auto bob = issue_client_cert(pki, "bob", "/O=acme/OU=adhoc/CN=bob");
  const auto intruder = issue_client_cert(pki, "intruder", "/O=acme/OU=etl/CN=alice", "", true);
  const auto nameless = issue_client_cert(pki, "nameless", "/O=acme/OU=etl");
  const auto gina = issue_client_cert(pki, "gina", "/O=globex/OU=etl/CN=gina");
  FakeServer etl, adhoc;
  const std::string etl_id = ssid_of_fake(etl), adhoc_id = ssid_of_fake(adhoc);
  GatewayOptions o;
  o.backends = {etl.address()};
  o.tls = ListenerTls{pki.server_cert, pki.server_key};
  o.tls_client_ca = pki.ca_cert;
  o.tls_require_client_cert = true;
  o.clusters_yaml = "clusters:\n  - name: etl\n    backends:\n      - address: " + etl.address() +
                    "\n  - name: adhoc\n    backends:\n      - address: " + adhoc.address() +
                    "\nroutes:\n  - match: {tenants: [globex]}\n    deny: \"tenant globex is not served here\"\n"
                    "  - match: {groups: [etl]}\n    cluster: etl\n"
                    "  - match: {groups: [adhoc]}\n    cluster: adhoc\n";
  o.extra_yaml = "auth:\n  mtls: {user_from: subject_cn, groups_from: subject_ou, tenant_from: subject_o}\n";
  Gateway gw(o);
  auto config_as = [&](const std::shared_ptr<::grpc::Channel>& ch, const std::string& user) {
    return call(ch, "Config", {with_user(request_for("Config", "mtls-" + user), user)}, quick());
  };

  // No certificate, or one from another CA: the handshake fails, nothing reaches a backend.
  auto no_cert = config_as(make_tls_channel(gw.address(), pki.ca_pem, "localhost"), "alice");
  CHECK_MESSAGE(no_cert.status.error_code() == StatusCode::UNAVAILABLE, no_cert.describe());
  auto foreign = config_as(make_mtls_channel(gw.address(), pki.ca_pem, "localhost", intruder.cert_pem,
                                             intruder.key_pem),
                           "alice");
  CHECK_MESSAGE(foreign.status.error_code() == StatusCode::UNAVAILABLE, foreign.describe());
  // (ssid_of_fake asked each fake once, directly.)
  CHECK(fake_stats(etl).sent_messages == 1);
  CHECK(fake_stats(adhoc).sent_messages == 1);

  auto alice_ch = make_mtls_channel(gw.address(), pki.ca_pem, "localhost", alice.cert_pem, alice.key_pem);
  auto bob_ch = make_mtls_channel(gw.address(), pki.ca_pem, "localhost", bob.cert_pem, bob.key_pem);
  auto a = config_as(alice_ch, "alice");
  REQUIRE_MESSAGE(a.status.ok(), a.describe() << "\n" << gw.stderr_text());
  CHECK(ssid_of(a, "Config") == etl_id);
  auto b = config_as(bob_ch, "bob");
  REQUIRE_MESSAGE(b.status.ok(), b.describe());
  CHECK(ssid_of(b, "Config") == adhoc_id);
  // The certificate's CN is the user that enforce compares with.
  auto imp = config_as(alice_ch, "bob");
  CHECK(imp.status.error_code() == StatusCode::PERMISSION_DENIED);
  CHECK(imp.status.error_message() == "user_id 'bob' does not match authenticated user 'alice'");
  // The tenant comes from O.
  auto g = config_as(make_mtls_channel(gw.address(), pki.ca_pem, "localhost", gina.cert_pem, gina.key_pem), "gina");
  CHECK(g.status.error_code() == StatusCode::PERMISSION_DENIED);
  CHECK(g.status.error_message() == "tenant globex is not served here");
  // A valid certificate without the configured identity field.
  auto nl = config_as(make_mtls_channel(gw.address(), pki.ca_pem, "localhost", nameless.cert_pem, nameless.key_pem),
                      "alice");
  CHECK(nl.status.error_code() == StatusCode::UNAUTHENTICATED);
  CHECK(nl.status.error_message() ==
        "the client certificate has no subject_cn to take the user from (auth.mtls.user_from)");
  CHECK(auth_failures(gw, "bad_certificate") == 1);
  CHECK(metric(gw, "sparkgate_identity_rejections_total") == 1);
  CHECK(gw.running());
}

TEST_CASE("auth: mTLS optional: a token without a certificate works, a certificate without a token too") {
  if (direct_mode()) return;
  TestPki pki;
  const auto carol = issue_client_cert(pki, "carol", "/O=acme/OU=etl/CN=carol");
  const auto intruder = issue_client_cert(pki, "intruder2", "/CN=carol", "", true);
  FakeServer fake;
  const std::string dave_token = "opt-dave-8c6e4a2b0d";
  GatewayOptions o = one_backend(fake.address());
  o.tls = ListenerTls{pki.server_cert, pki.server_key};
  o.tls_client_ca = pki.ca_cert;
  o.tls_require_client_cert = false;
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(dave_token, "dave") + "  mtls: {user_from: subject_cn}\n";
  Gateway gw(o);
  auto plain_tls = make_tls_channel(gw.address(), pki.ca_pem, "localhost");
  auto carol_ch = make_mtls_channel(gw.address(), pki.ca_pem, "localhost", carol.cert_pem, carol.key_pem);
  auto config_as = [&](const std::shared_ptr<::grpc::Channel>& ch, const std::string& user, const CallOptions& co) {
    return call(ch, "Config", {with_user(request_for("Config", "opt-" + user), user)}, co);
  };

  auto dave = config_as(plain_tls, "dave", with_token(dave_token));
  CHECK_MESSAGE(dave.status.ok(), dave.describe() << "\n" << gw.stderr_text());
  auto nobody = config_as(plain_tls, "dave", quick());
  CHECK(nobody.status.error_code() == StatusCode::UNAUTHENTICATED);
  CHECK(nobody.status.error_message() ==
        "no credential: send 'authorization: Bearer <token>' (token=... in the sc:// URL) or present a client "
        "certificate");
  auto carol_cert = config_as(carol_ch, "carol", quick());
  CHECK_MESSAGE(carol_cert.status.ok(), carol_cert.describe());
  // A bearer token takes precedence over the connection's certificate.
  auto both = config_as(carol_ch, "dave", with_token(dave_token));
  CHECK_MESSAGE(both.status.ok(), both.describe());
  auto both_as_carol = config_as(carol_ch, "carol", with_token(dave_token));
  CHECK(both_as_carol.status.error_code() == StatusCode::PERMISSION_DENIED);
  // A bad token is refused even on a connection with a good certificate.
  auto bad_token = config_as(carol_ch, "carol", with_token("opt-nobody-1234567890"));
  CHECK(bad_token.status.error_code() == StatusCode::UNAUTHENTICATED);
  CHECK(bad_token.status.error_message() == "the bearer token is not valid (unknown token)");
  // An optional certificate must still be a valid one.
  auto foreign = config_as(make_mtls_channel(gw.address(), pki.ca_pem, "localhost", intruder.cert_pem,
                                             intruder.key_pem),
                           "carol", quick());
  CHECK_MESSAGE(foreign.status.error_code() == StatusCode::UNAVAILABLE, foreign.describe());
  CHECK(fake_stats(fake).sent_messages == 3);
  CHECK(gw.running());
}

TEST_CASE("auth: anonymous: allow admits requests without a credential as their own user_id; bad ones are refused") {
  if (direct_mode()) return;
  FakeServer fake;
  const std::string token = "anon-alice-3c5e7a9b1d";
  GatewayOptions o = one_backend(fake.address());
  o.extra_yaml = "auth:\n  tokens:\n" + token_entry(token, "alice") + "  anonymous: allow\n";
  Gateway gw(o);
  auto ch = make_channel(gw.address());
  const std::string as_bob = with_user(request_for("Config", "anon-1"), "bob");
  auto anon = call(ch, "Config", {as_bob}, quick());
  CHECK_MESSAGE(anon.status.ok(), anon.describe());
  CHECK(anon.trailer("x-fake-request-sha256") == sha256_hex(as_bob));
  auto wrong = call(ch, "Config", {as_bob}, with_token("anon-unknown-000000"));
  CHECK(wrong.status.error_code() == StatusCode::UNAUTHENTICATED);
  CHECK(wrong.status.error_message() == "the bearer token is not valid (unknown token)");
  // A valid token is still enforced.
  auto imp = call(ch, "Config", {as_bob}, with_token(token));
  CHECK(imp.status.error_code() == StatusCode::PERMISSION_DENIED);
  CHECK(auth_failures(gw, "missing") == 0);
  CHECK(auth_failures(gw, "unknown_token") == 1);
}

}  // namespace sparkgate::itest
