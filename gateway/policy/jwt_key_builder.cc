#include "policy/jwt_key_builder.h"

#include <memory>
#include <utility>

#include "policy/jwt.h"

namespace sparkgate::policy {

namespace {

class KeySetBuilder final : public config::JwtKeyBuilder {
 public:
  bool add(config::JwtKeySpec spec, std::string& error) override {
    using Kind = config::JwtKeySpec::Kind;
    switch (spec.kind) {
      case Kind::kPemFile: return keys_->add_pem_file(spec.path, spec.kid, error);
      case Kind::kJwksFile: return keys_->add_jwks_file(spec.path, error);
      case Kind::kHmacSecret: keys_->add_hmac_secret(std::move(spec.secret), spec.kid); return true;
    }
    error = "unknown kind of key source";
    return false;
  }

  std::shared_ptr<const base::JwtKeys> build() override { return std::move(keys_); }

 private:
  std::shared_ptr<JwtKeySet> keys_ = std::make_shared<JwtKeySet>();
};

}  // namespace

config::LoadOptions config_load_options() {
  config::LoadOptions o;
  o.jwt_key_builder = [] { return std::make_unique<KeySetBuilder>(); };
  return o;
}

}  // namespace sparkgate::policy
