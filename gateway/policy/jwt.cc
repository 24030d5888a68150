#include "policy/jwt.h"
#include "base/quote.h"

#include "policy/jwks_cache.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <boost/json.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>

namespace sparkgate::policy {

namespace json = boost::json;

namespace {

// Far above any real token (a few hundred bytes to a few KiB), low enough that a hostile
// header costs little to refuse.
constexpr size_t kMaxTokenBytes = 16 * 1024;
// Real claims nest two or three levels (Keycloak's resource_access.client.roles).
constexpr size_t kMaxJsonDepth = 16;
// Key files are small; the cap keeps a misconfigured path (/dev/zero) from hanging.
constexpr long kMaxKeyFileBytes = 1024 * 1024;
constexpr int kMinRsaBits = 2048;
constexpr size_t kP256CoordBytes = 32;

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;
using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree>;
using ParamPtr = std::unique_ptr<OSSL_PARAM, ParamFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// Leftover entries in the thread's OpenSSL error queue would be misread by the next
// SSL_get_error() of the worker's TLS connections, so every failure path clears it.
void clear_openssl_errors() { ERR_clear_error(); }

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// A name taken from the token (iss, kid, alg) for a message: quoted when short and
// printable, otherwise left out so that hostile input never reaches a log line.
std::string quote(std::string_view s) { return base::quote_for_message(s, 64); }

std::string format_time(double t) {
  // 9999-12-31T23:59:59Z: gmtime_r's range on every platform we build on.
  if (std::isfinite(t) && t >= 0 && t < 253402300800.0) {
    auto tt = static_cast<std::time_t>(std::floor(t));
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    if (std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0) return buf;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", t);
  return buf;
}

std::optional<json::object> parse_object(std::string_view text) {
  json::parse_options opt;
  opt.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, json::storage_ptr(), opt);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::optional<double> as_number(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double() && std::isfinite(v.get_double())) return v.get_double();
  return std::nullopt;
}

// nullopt: absent. An empty optional string inside: present but not a string.
std::optional<std::optional<std::string>> string_member(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(json::string_view(name.data(), name.size()));
  if (!v) return std::nullopt;
  if (!v->is_string()) return std::optional<std::string>();
  return std::optional<std::string>(std::string(v->get_string()));
}

bool read_small_file(const std::string& path, std::string& out, std::string& error) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  out.clear();
  char buf[8192];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
    out.append(buf, n);
    if (out.size() > static_cast<size_t>(kMaxKeyFileBytes)) {
      error = path + " is larger than 1 MiB, not a key file";
      return false;
    }
  }
  if (std::ferror(f.get())) {
    error = "cannot read " + path;
    return false;
  }
  return true;
}

// ES256 signatures are R||S (RFC 7518 §3.4); EVP wants a DER ECDSA-Sig-Value.
std::optional<std::string> es256_raw_to_der(std::string_view raw) {
  if (raw.size() != 2 * kP256CoordBytes) return std::nullopt;
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BnPtr r(BN_bin2bn(bytes(raw), kP256CoordBytes, nullptr));
  BnPtr s(BN_bin2bn(bytes(raw) + kP256CoordBytes, kP256CoordBytes, nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::nullopt;
  r.release();  // owned by sig now
  s.release();
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &p) != len) return std::nullopt;
  return der;
}

bool digest_verify(EVP_PKEY* pkey, std::string_view input, std::string_view sig) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey) != 1) return false;
  return EVP_DigestVerify(ctx.get(), bytes(sig), sig.size(), bytes(input), input.size()) == 1;
}

bool hmac_verify(const std::vector<unsigned char>& secret, std::string_view input, std::string_view sig) {
  std::array<unsigned char, 32> mac{};
  size_t mac_len = 0;
  if (secret.empty() || sig.size() != mac.size()) return false;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(), bytes(input),
                 input.size(), mac.data(), mac.size(), &mac_len) ||
      mac_len != mac.size()) {
    return false;
  }
  return CRYPTO_memcmp(mac.data(), sig.data(), mac.size()) == 0;
}

// A key that may be used at all: RSA of at least 2048 bits, or a valid P-256 point.
std::optional<JwtAlg> usable_key_alg(EVP_PKEY* pkey, std::string& error) {
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < kMinRsaBits) {
      error = "RSA key has " + std::to_string(bits) + " bits, at least 2048 are required";
      return std::nullopt;
    }
    return JwtAlg::kRS256;
  }
  if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = {};
    size_t len = 0;
    if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) != 1 || std::string_view(group) != "prime256v1") {
      error = "EC key is not on curve P-256";
      return std::nullopt;
    }
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
    if (!ctx || EVP_PKEY_public_check(ctx.get()) != 1) {
      error = "EC public key is not a valid P-256 point";
      return std::nullopt;
    }
    return JwtAlg::kES256;
  }
  const char* type = EVP_PKEY_get0_type_name(pkey);
  error = std::string("unsupported key type ") + (type ? type : "?") + " (RSA or EC P-256 expected)";
  return std::nullopt;
}

PkeyPtr pkey_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return nullptr;
  }
  return PkeyPtr(raw);
}

PkeyPtr rsa_from_jwk(const std::string& n, const std::string& e, std::string& error) {
  BnPtr bn_n(BN_bin2bn(bytes(n), static_cast<int>(n.size()), nullptr));
  BnPtr bn_e(BN_bin2bn(bytes(e), static_cast<int>(e.size()), nullptr));
  if (!bn_n || !bn_e || !BN_is_odd(bn_e.get()) || BN_num_bits(bn_e.get()) < 2 || !BN_is_odd(bn_n.get())) {
    error = "RSA modulus or exponent is invalid";
    return nullptr;
  }
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    error = "cannot build the RSA key";
    return nullptr;
  }
  PkeyPtr pkey = pkey_from_params("RSA", bld.get());
  if (!pkey) error = "RSA modulus or exponent is invalid";
  return pkey;
}

PkeyPtr ec_from_jwk(const std::string& x, const std::string& y, std::string& error) {
  if (x.size() != kP256CoordBytes || y.size() != kP256CoordBytes) {
    error = "P-256 coordinates x and y must be 32 bytes each";
    return nullptr;
  }
  std::string point = "\x04" + x + y;  // SEC1 uncompressed point
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    error = "cannot build the EC key";
    return nullptr;
  }
  PkeyPtr pkey = pkey_from_params("EC", bld.get());
  if (!pkey) error = "EC point is not on curve P-256";
  return pkey;
}

// JWKS values come from the operator; tolerate the '=' padding some tools still write.
std::optional<std::string> jwk_bytes(const json::object& jwk, std::string_view name) {
  auto member = string_member(jwk, name);
  if (!member || !*member) return std::nullopt;
  std::string_view s = **member;
  while (!s.empty() && s.back() == '=') s.remove_suffix(1);
  return base64url_decode(s);
}

}  // namespace

// ---- algorithms and base64url -----------------------------------------------------------

std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Non-zero leftover bits mean a second spelling of the same bytes: refuse it.
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

// ---- JwtKeySet -------------------------------------------------------------------------

struct JwtKeySet::Key {
  JwtAlg alg;  // what the key verifies: fixed by its type (and its JWK "alg", if any)
  std::string kid;
  PkeyPtr pkey;                       // RS256, ES256
  std::vector<unsigned char> secret;  // HS256

  Key(JwtAlg a, std::string k) : alg(a), kid(std::move(k)) {}
  Key(Key&&) noexcept = default;
  Key& operator=(Key&&) noexcept = default;
  ~Key() {
    if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
  }
};

JwtKeySet::JwtKeySet() = default;
JwtKeySet::~JwtKeySet() = default;
JwtKeySet::JwtKeySet(JwtKeySet&&) noexcept = default;
JwtKeySet& JwtKeySet::operator=(JwtKeySet&&) noexcept = default;

size_t JwtKeySet::size() const { return keys_.size(); }

void JwtKeySet::add_hmac_secret(std::string secret, const std::string& kid) {
  Key key(JwtAlg::kHS256, kid);
  key.secret.assign(secret.begin(), secret.end());
  OPENSSL_cleanse(secret.data(), secret.size());
  keys_.push_back(std::move(key));
}

bool JwtKeySet::add_pem_file(const std::string& path, const std::string& kid, std::string& error) {
  std::string pem;
  if (!read_small_file(path, pem, error)) return false;
  if (pem.find("PRIVATE KEY-----") != std::string::npos) {
    OPENSSL_cleanse(pem.data(), pem.size());
    error = path + " holds a private key; give the public key or a certificate";
    return false;
  }
  // Never prompt for a passphrase on the gateway's terminal.
  auto no_password = [](char*, int, int, void*) { return 0; };
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr) : nullptr);
  if (!pkey) {
    bio.reset(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, no_password, nullptr) : nullptr);
    if (cert) pkey.reset(X509_get_pubkey(cert.get()));
  }
  clear_openssl_errors();
  if (!pkey) {
    error = path + " holds no PEM public key (BEGIN PUBLIC KEY) or certificate (BEGIN CERTIFICATE)";
    return false;
  }
  std::string why;
  auto alg = usable_key_alg(pkey.get(), why);
  clear_openssl_errors();
  if (!alg) {
    error = path + ": " + why;
    return false;
  }
  Key key(*alg, kid);
  key.pkey = std::move(pkey);
  keys_.push_back(std::move(key));
  return true;
}

bool JwtKeySet::add_jwks_file(const std::string& path, std::string& error) {
  std::string text;
  if (!read_small_file(path, text, error)) return false;
  bool ok = add_jwks_json(text, path, error);
  OPENSSL_cleanse(text.data(), text.size());  // may hold "oct" secrets
  return ok;
}

std::vector<std::string> JwtKeySet::key_ids() const {
  std::vector<std::string> out;
  out.reserve(keys_.size());
  for (const auto& k : keys_) out.push_back(k.kid);
  return out;
}

bool JwtKeySet::add_jwks_json(std::string_view text, const std::string& what, std::string& error,
                              bool allow_secrets) {
  auto jwks = parse_object(text);
  const json::value* list = jwks ? jwks->if_contains("keys") : nullptr;
  if (!list || !list->is_array()) {
    error = what + ": not a JWK Set (a JSON object with a \"keys\" array)";
    return false;
  }
  std::vector<Key> added;
  size_t index = 0;
  for (const json::value& v : list->get_array()) {
    std::string where = what + ": key " + std::to_string(index++);
    if (!v.is_object()) {
      error = where + " is not a JSON object";
      return false;
    }
    const json::object& jwk = v.get_object();
    auto kty = string_member(jwk, "kty");
    auto kid = string_member(jwk, "kid");
    auto use = string_member(jwk, "use");
    auto alg_name = string_member(jwk, "alg");
    if (!kty || !*kty || (kid && !*kid) || (use && !*use) || (alg_name && !*alg_name)) {
      error = where + ": kty is missing, or kty, kid, use or alg is not a string";
      return false;
    }
    if (kid) where += " (kid " + quote(**kid) + ")";
    if (use && **use != "sig") continue;  // an encryption key
    std::optional<JwtAlg> alg;
    if (alg_name) {
      alg = parse_jwt_alg(**alg_name);
      if (!alg) continue;  // RS384, PS256, ...: not supported, not an error
    }
    std::optional<JwtAlg> fits;
    if (**kty == "RSA") {
      fits = JwtAlg::kRS256;
    } else if (**kty == "EC") {
      auto crv = string_member(jwk, "crv");
      if (!crv || !*crv) {
        error = where + ": EC key without crv";
        return false;
      }
      if (**crv != "P-256") continue;
      fits = JwtAlg::kES256;
    } else if (**kty == "oct") {
      if (!allow_secrets) continue;
      fits = JwtAlg::kHS256;
    } else {
      continue;  // OKP and future types
    }
    if (alg && *alg != *fits) {
      error = where + ": alg " + std::string(jwt_alg_name(*alg)) + " does not fit kty " + **kty;
      return false;
    }
    Key key(*fits, kid ? **kid : std::string());
    std::string why;
    if (*fits == JwtAlg::kHS256) {
      auto k = jwk_bytes(jwk, "k");
      if (!k || k->empty()) {
        error = where + ": \"k\" is missing, empty or not base64url";
        return false;
      }
      key.secret.assign(k->begin(), k->end());
      OPENSSL_cleanse(k->data(), k->size());
    } else {
      const char* first = *fits == JwtAlg::kRS256 ? "n" : "x";
      const char* second = *fits == JwtAlg::kRS256 ? "e" : "y";
      auto a = jwk_bytes(jwk, first);
      auto b = jwk_bytes(jwk, second);
      if (!a || !b) {
        error = where + ": \"" + first + "\" or \"" + second + "\" is missing or not base64url";
        return false;
      }
      key.pkey = *fits == JwtAlg::kRS256 ? rsa_from_jwk(*a, *b, why) : ec_from_jwk(*a, *b, why);
      if (key.pkey && !usable_key_alg(key.pkey.get(), why)) key.pkey.reset();
      clear_openssl_errors();
      if (!key.pkey) {
        error = where + ": " + why;
        return false;
      }
    }
    added.push_back(std::move(key));
  }
  if (added.empty()) {
    error = what + ": no usable key (RSA, EC P-256 or oct signing keys for RS256, ES256 or HS256)";
    return false;
  }
  for (auto& k : added) keys_.push_back(std::move(k));
  return true;
}

JwtKeySet::Verify JwtKeySet::verify(JwtAlg alg, const std::optional<std::string>& kid,
                                    std::string_view signing_input, std::string_view signature) const {
  bool candidate = false;
  bool verified = false;
  std::optional<std::string> der;
  if (alg == JwtAlg::kES256) der = es256_raw_to_der(signature);
  for (const Key& key : keys_) {
    if (key.alg != alg) continue;
    if (kid && !key.kid.empty() && key.kid != *kid) continue;
    candidate = true;
    switch (alg) {
      case JwtAlg::kHS256: verified = hmac_verify(key.secret, signing_input, signature); break;
      case JwtAlg::kRS256: verified = digest_verify(key.pkey.get(), signing_input, signature); break;
      case JwtAlg::kES256: verified = der && digest_verify(key.pkey.get(), signing_input, *der); break;
    }
    if (verified) break;
  }
  clear_openssl_errors();
  if (verified) return Verify::kVerified;
  return candidate ? Verify::kMismatch : Verify::kNoKey;
}

// ---- verify_jwt ------------------------------------------------------------------------

namespace {

AuthResult fail(AuthFailure f, std::string message) { return AuthResult::fail(f, std::move(message)); }

AuthResult map_claims(const json::object& claims, const config::JwtIssuer& issuer, double now_s) {
  const std::string leeway = "(leeway " + std::to_string(issuer.leeway.count()) + "s)";
  const double leeway_s = static_cast<double>(issuer.leeway.count());
  if (const json::value* v = claims.if_contains("exp")) {
    auto exp = as_number(*v);
    if (!exp) return fail(AuthFailure::kBadClaims, "JWT 'exp' is not a number");
    if (now_s > *exp + leeway_s) {
      return fail(AuthFailure::kExpired, "JWT expired at " + format_time(*exp) + " " + leeway);
    }
  }
  if (const json::value* v = claims.if_contains("nbf")) {
    auto nbf = as_number(*v);
    if (!nbf) return fail(AuthFailure::kBadClaims, "JWT 'nbf' is not a number");
    if (now_s + leeway_s < *nbf) {
      return fail(AuthFailure::kNotYetValid, "JWT is not valid before " + format_time(*nbf) + " " + leeway);
    }
  }
  if (!issuer.audiences.empty()) {
    const json::value* aud = claims.if_contains("aud");
    bool match = false;
    auto check = [&](const json::value& a) {
      if (!a.is_string()) return;
      for (const auto& want : issuer.audiences) {
        if (a.get_string() == want) match = true;
      }
    };
    if (aud && aud->is_array()) {
      for (const auto& a : aud->get_array()) check(a);
    } else if (aud) {
      check(*aud);
    }
    if (!match) {
      std::string want;
      for (const auto& a : issuer.audiences) want += (want.empty() ? "'" : ", '") + a + "'";
      return fail(AuthFailure::kBadAudience,
                  std::string(aud ? "JWT audience" : "JWT has no 'aud' claim; it") + " must contain one of " + want);
    }
  }

  AuthResult ok;
  ok.principal.method = base::AuthMethod::kJwt;
  auto user = string_member(claims, issuer.user_claim);
  if (!user || !*user || (*user)->empty()) {
    return fail(AuthFailure::kBadClaims, "JWT user claim " + quote(issuer.user_claim) + " is missing, empty or not a string");
  }
  ok.principal.user = std::move(**user);
  if (const json::value* g = claims.if_contains(json::string_view(issuer.groups_claim))) {
    if (g->is_string()) {
      ok.principal.groups.emplace_back(g->get_string());
    } else if (g->is_array()) {
      for (const auto& e : g->get_array()) {
        if (!e.is_string()) {
          return fail(AuthFailure::kBadClaims, "JWT groups claim " + quote(issuer.groups_claim) + " holds a non-string");
        }
        ok.principal.groups.emplace_back(e.get_string());
      }
    } else {
      return fail(AuthFailure::kBadClaims,
                  "JWT groups claim " + quote(issuer.groups_claim) + " is not a string or an array of strings");
    }
  }
  auto tenant = string_member(claims, issuer.tenant_claim);
  if (tenant && !*tenant) {
    return fail(AuthFailure::kBadClaims, "JWT tenant claim " + quote(issuer.tenant_claim) + " is not a string");
  }
  if (tenant) ok.principal.tenant = std::move(**tenant);
  return ok;
}

// " (keys fetched at T; the last refresh failed: E)" for a remote issuer's messages.
std::string remote_note(const JwksSnapshot& s) {
  std::string out = " (keys fetched ";
  if (s.fetched_at) {
    out += format_time(std::chrono::duration<double>(s.fetched_at->time_since_epoch()).count());
  } else {
    out += "never";
  }
  if (!s.last_error.empty()) out += "; the last fetch failed: " + s.last_error;
  return out + ")";
}

AuthResult verify_jwt_impl(std::string_view token, const std::vector<config::JwtIssuer>& issuers,
                           std::chrono::system_clock::time_point now, const RemoteKeys* remote) {
  if (token.empty()) return fail(AuthFailure::kMalformed, "JWT is empty");
  if (token.size() > kMaxTokenBytes) {
    return fail(AuthFailure::kMalformed, "JWT is longer than " + std::to_string(kMaxTokenBytes) + " bytes");
  }
  size_t dot1 = token.find('.');
  size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(AuthFailure::kMalformed, "JWT must have three dot-separated parts (header.payload.signature)");
  }
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view signing_input = token.substr(0, dot2);

  auto header_json = base64url_decode(header_b64);
  if (!header_json) return fail(AuthFailure::kMalformed, "JWT header is not valid base64url");
  auto header = parse_object(*header_json);
  if (!header) return fail(AuthFailure::kMalformed, "JWT header is not a JSON object");
  auto alg_name = string_member(*header, "alg");
  if (!alg_name || !*alg_name) return fail(AuthFailure::kMalformed, "JWT header has no 'alg' string");
  auto alg = parse_jwt_alg(**alg_name);
  if (!alg) {
    return fail(AuthFailure::kBadAlgorithm,
                "JWT algorithm " + quote(**alg_name) + " is not supported (HS256, RS256 or ES256)");
  }
  if (header->contains("crit")) {
    return fail(AuthFailure::kMalformed, "JWT header has critical extensions ('crit'), none are supported");
  }
  auto kid = string_member(*header, "kid");
  if (kid && !*kid) return fail(AuthFailure::kMalformed, "JWT header 'kid' is not a string");

  auto payload_json = base64url_decode(payload_b64);
  if (!payload_json) return fail(AuthFailure::kMalformed, "JWT payload is not valid base64url");
  auto claims = parse_object(*payload_json);
  if (!claims) return fail(AuthFailure::kMalformed, "JWT payload is not a JSON object");
  auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!signature) return fail(AuthFailure::kMalformed, "JWT signature is not valid base64url");

  // iss is still unverified here; it only picks the keys the signature must verify with.
  auto iss = string_member(*claims, "iss");
  if (!iss) return fail(AuthFailure::kUnknownIssuer, "JWT has no 'iss' claim");
  if (!*iss) return fail(AuthFailure::kUnknownIssuer, "JWT 'iss' claim is not a string");
  const config::JwtIssuer* issuer = nullptr;
  for (const auto& i : issuers) {
    if (i.issuer == **iss) {
      issuer = &i;
      break;
    }
  }
  const std::string iss_q = quote(**iss);
  if (!issuer) return fail(AuthFailure::kUnknownIssuer, "JWT issuer " + iss_q + " is not trusted");
  std::string_view alg_s = jwt_alg_name(*alg);
  bool allowed = false;
  for (const auto& a : issuer->algorithms) allowed = allowed || a == alg_s;
  if (!allowed) {
    return fail(AuthFailure::kBadAlgorithm,
                "JWT algorithm " + std::string(alg_s) + " is not allowed for issuer " + iss_q);
  }
  const base::JwtKeys* keys = issuer->keys.get();
  std::shared_ptr<const JwksSnapshot> fetched;  // holds the remote keys while they are used
  std::string note;
  if (issuer->remote) {
    fetched = remote ? remote->snapshot(issuer->issuer) : nullptr;
    keys = fetched ? fetched->keys.get() : nullptr;
    if (!keys) {
      AuthResult r = fail(AuthFailure::kKeysUnavailable,
                          "JWT issuer " + iss_q + " has no keys yet: " +
                              (fetched && !fetched->last_error.empty()
                                   ? "fetching them failed: " + fetched->last_error
                                   : std::string("they have not been fetched yet")));
      r.refresh_issuer = issuer->issuer;
      return r;
    }
    note = remote_note(*fetched);
  }
  if (!keys || keys->size() == 0) {
    return fail(AuthFailure::kBadSignature, "JWT issuer " + iss_q + " has no verification keys");
  }
  switch (keys->verify(*alg, kid ? *kid : std::optional<std::string>(), signing_input, *signature)) {
    case JwtKeySet::Verify::kVerified: break;
    case JwtKeySet::Verify::kNoKey: {
      AuthResult r = fail(AuthFailure::kBadSignature, "JWT issuer " + iss_q + " has no " + std::string(alg_s) +
                                                          " key" + (kid ? " with kid " + quote(**kid) : std::string()) +
                                                          note);
      if (issuer->remote) r.refresh_issuer = issuer->issuer;
      return r;
    }
    case JwtKeySet::Verify::kMismatch:
      return fail(AuthFailure::kBadSignature, "JWT signature does not verify with any key of issuer " + iss_q);
  }
  double now_s = std::chrono::duration<double>(now.time_since_epoch()).count();
  return map_claims(*claims, *issuer, now_s);
}

}  // namespace

AuthResult verify_jwt(std::string_view token, const std::vector<config::JwtIssuer>& issuers,
                      std::chrono::system_clock::time_point now, const RemoteKeys* remote) {
  try {
    return verify_jwt_impl(token, issuers, now, remote);
  } catch (...) {
    clear_openssl_errors();
    return fail(AuthFailure::kMalformed, "JWT could not be processed");
  }
}

}  // namespace sparkgate::policy
