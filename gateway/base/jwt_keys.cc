#include "base/jwt_keys.h"

namespace sparkgate::base {

std::optional<JwtAlg> parse_jwt_alg(std::string_view name) {
  if (name == "HS256") return JwtAlg::kHS256;
  if (name == "RS256") return JwtAlg::kRS256;
  if (name == "ES256") return JwtAlg::kES256;
  return std::nullopt;
}

std::string_view jwt_alg_name(JwtAlg alg) {
  switch (alg) {
    case JwtAlg::kHS256: return "HS256";
    case JwtAlg::kRS256: return "RS256";
    case JwtAlg::kES256: return "ES256";
  }
  return "?";
}

}  // namespace sparkgate::base
