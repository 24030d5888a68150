// Helpers shared by the tests that build JWTs and JWK Sets (unit tests and fuzz targets):
// base64url without padding, and the public JWK of an RSA key.
#pragma once

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace sparkgate::testing {

// RFC 4648 §5 base64url, unpadded, as JWS uses it.
inline std::string b64url(std::string_view in) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

// The base64url big-endian bytes of one of `pkey`'s BIGNUM parameters
// (OSSL_PKEY_PARAM_RSA_N, _E, ...); empty if the key has no such parameter.
inline std::string bn_param_b64url(EVP_PKEY* pkey, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return {};
  std::string bytes(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(bytes.data()));
  BN_free(bn);
  return b64url(bytes);
}

// The public JWK (an RS256 signing key) of RSA key `pkey` under `kid`, as JSON.
inline std::string rsa_public_jwk(EVP_PKEY* pkey, std::string_view kid) {
  std::string jwk = R"({"kty":"RSA","use":"sig","alg":"RS256","kid":")";
  jwk += kid;
  jwk += R"(","n":")";
  jwk += bn_param_b64url(pkey, OSSL_PKEY_PARAM_RSA_N);
  jwk += R"(","e":")";
  jwk += bn_param_b64url(pkey, OSSL_PKEY_PARAM_RSA_E);
  jwk += R"("})";
  return jwk;
}

}  // namespace sparkgate::testing
