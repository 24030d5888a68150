// The policy sections of the config: auth, identity and quotas. Key material (JWT keys,
// JWKS files, HMAC secrets, token files) is read at load time, so that a reload picks up
// new keys and a broken key file is a config error with file and line. JWT key sources
// become JwtKeySpecs, which the caller's JwtKeyBuilder (policy's) parses.
#include <cmath>

#include "base/jwt_keys.h"
#include "config/walker.h"

namespace sparkgate::config::detail {

namespace {

bool parse_hex_sha256(const std::string& text, std::string& out) {
  static constexpr std::string_view kPrefix = "sha256:";
  if (!text.starts_with(kPrefix) || text.size() != kPrefix.size() + 64) return false;
  out.clear();
  for (size_t i = kPrefix.size(); i < text.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

// user, groups, tenant of a token entry.
bool load_principal_fields(Walker& w, const YAML::Node& n, const std::string& where, base::Principal& p) {
  if (!n["user"]) {
    w.error(n, where + " needs a user");
    return false;
  }
  bool ok = w.get_string(n["user"], where + ".user", p.user);
  if (ok && p.user.empty()) {
    w.error(n["user"], where + ".user must not be empty");
    ok = false;
  }
  if (n["groups"]) ok = w.get_string_list(n["groups"], where + ".groups", p.groups) && ok;
  if (n["tenant"]) ok = w.get_string(n["tenant"], where + ".tenant", p.tenant) && ok;
  return ok;
}

void load_token_list(Walker& w, const YAML::Node& list, const std::string& where, std::vector<StaticToken>& out) {
  if (!list.IsSequence()) {
    w.error(list, where + " must be a list of {sha256, user, groups, tenant}");
    return;
  }
  for (const auto& item : list) {
    if (!w.check_keys(item, {"sha256", "user", "groups", "tenant"}, where + " entry")) continue;
    StaticToken t;
    t.line = item.Mark().line + 1;
    bool ok = true;
    std::string text;
    if (!item["sha256"]) {
      w.error(item, where + " entry needs sha256: \"sha256:<64 hex digits>\" (the hash of the token, never the token)");
      ok = false;
    } else if (w.get_string(item["sha256"], where + ".sha256", text) && !parse_hex_sha256(text, t.sha256)) {
      // The value might be a token pasted by mistake: do not echo it.
      w.error(item["sha256"], where + ".sha256 must be \"sha256:\" followed by 64 hex digits "
                                      "(e.g. printf %s \"$TOKEN\" | sha256sum)");
      ok = false;
    }
    ok = load_principal_fields(w, item, where, t.principal) && ok;
    if (!ok) continue;
    for (const auto& other : out) {
      if (other.sha256 == t.sha256) {
        w.error(item["sha256"], where + ": the same token hash is already defined (line " +
                                    std::to_string(other.line) + ")");
        ok = false;
        break;
      }
    }
    if (ok) out.push_back(std::move(t));
  }
}

void load_tokens_file(Walker& w, const YAML::Node& n, std::vector<StaticToken>& out) {
  std::string path;
  if (!w.get_readable_path(n, "auth.tokens_file", path)) return;
  // Errors inside the tokens file name that file and its lines.
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  Walker fw(path, std::filesystem::path(path).parent_path().string());
  try {
    YAML::Node root = YAML::Load(ss.str());
    if (root.IsMap() && root["tokens"]) {
      fw.check_keys(root, {"tokens"}, "the tokens file");
      load_token_list(fw, root["tokens"], "tokens", out);
    } else {
      load_token_list(fw, root, "tokens", out);
    }
  } catch (const YAML::Exception& e) {
    fw.errors().push_back({path, e.mark.line >= 0 ? e.mark.line + 1 : 0, "YAML syntax error: " + e.msg});
  }
  for (auto& e : fw.errors()) w.errors().push_back(std::move(e));
}

void load_jwt_issuer(Walker& w, const YAML::Node& n, std::vector<JwtIssuer>& out) {
  if (!w.check_keys(n, {"issuer", "audience", "algorithms", "leeway", "keys", "jwks_file", "secret_env", "secret_file",
                        "claims"},
                    "auth.jwt entry"))
    return;
  JwtIssuer iss;
  bool ok = true;
  if (!n["issuer"]) {
    w.error(n, "auth.jwt entry needs an issuer (the iss claim it accepts)");
    ok = false;
  } else if (w.get_string(n["issuer"], "auth.jwt.issuer", iss.issuer) && iss.issuer.empty()) {
    w.error(n["issuer"], "auth.jwt.issuer must not be empty");
    ok = false;
  }
  for (const auto& other : out) {
    if (ok && other.issuer == iss.issuer) {
      w.error(n["issuer"], "auth.jwt: issuer '" + iss.issuer + "' is defined twice");
      ok = false;
    }
  }
  if (n["audience"]) ok = w.get_string_list(n["audience"], "auth.jwt.audience", iss.audiences) && ok;
  if (n["leeway"]) {
    std::chrono::milliseconds leeway{};
    if (w.get_duration(n["leeway"], "auth.jwt.leeway", leeway)) {
      iss.leeway = std::chrono::duration_cast<std::chrono::seconds>(leeway);
      if (iss.leeway > std::chrono::hours(1)) {
        w.error(n["leeway"], "auth.jwt.leeway must be at most 1h");
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (const auto claims = n["claims"]) {
    if (w.check_keys(claims, {"user", "groups", "tenant"}, "auth.jwt.claims")) {
      if (claims["user"]) ok = w.get_string(claims["user"], "auth.jwt.claims.user", iss.user_claim) && ok;
      if (claims["groups"]) ok = w.get_string(claims["groups"], "auth.jwt.claims.groups", iss.groups_claim) && ok;
      if (claims["tenant"]) ok = w.get_string(claims["tenant"], "auth.jwt.claims.tenant", iss.tenant_claim) && ok;
      if (iss.user_claim.empty()) {
        w.error(claims["user"], "auth.jwt.claims.user must not be empty");
        ok = false;
      }
    } else {
      ok = false;
    }
  }

  std::unique_ptr<JwtKeyBuilder> keys;
  if (w.load_options && w.load_options->jwt_key_builder) keys = w.load_options->jwt_key_builder();
  size_t sources = 0;
  // Hands one key source to the builder; false (with an error at `at`) if it is refused.
  auto add_keys = [&](const YAML::Node& at, JwtKeySpec spec, const std::string& what) {
    ++sources;
    std::string error;
    if (!keys) {
      w.error(at, what + ": this program cannot load JWT keys (the config loader has no key builder)");
      return false;
    }
    if (!keys->add(std::move(spec), error)) {
      w.error(at, what + ": " + error);
      return false;
    }
    return true;
  };
  bool has_public = false, has_secret = false;
  if (const auto list = n["keys"]) {
    if (!list.IsSequence()) {
      w.error(list, "auth.jwt.keys must be a list of PEM files (or {file, kid})");
      ok = false;
    } else {
      for (const auto& k : list) {
        std::string file, kid;
        const YAML::Node at = k.IsMap() ? k["file"] : k;
        if (k.IsMap()) {
          if (!w.check_keys(k, {"file", "kid"}, "auth.jwt.keys entry")) continue;
          if (!k["file"]) {
            w.error(k, "auth.jwt.keys entry needs a file");
            ok = false;
            continue;
          }
          if (k["kid"] && !w.get_string(k["kid"], "auth.jwt.keys.kid", kid)) continue;
        }
        if (!w.get_readable_path(at, "auth.jwt.keys file", file)) {
          ok = false;
          continue;
        }
        if (!add_keys(at, JwtKeySpec{JwtKeySpec::Kind::kPemFile, file, kid, {}}, "auth.jwt.keys")) {
          ok = false;
          continue;
        }
        has_public = true;
        iss.key_sources.push_back("file " + file);
      }
    }
  }
  if (const auto jwks = n["jwks_file"]) {
    std::string file;
    if (!w.get_readable_path(jwks, "auth.jwt.jwks_file", file)) {
      ok = false;
    } else if (!add_keys(jwks, JwtKeySpec{JwtKeySpec::Kind::kJwksFile, file, {}, {}}, "auth.jwt.jwks_file")) {
      ok = false;
    } else {
      has_public = true;  // a JWKS may also hold oct keys; algorithms decide what is used
      iss.key_sources.push_back("jwks " + file);
    }
  }
  if (n["secret_env"] || n["secret_file"]) {
    std::string secret, source;
    if (w.read_secret(n, "auth.jwt", "secret", secret, source)) {
      if (secret.size() < 32) {
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
        w.error(n["secret_env"] ? n["secret_env"] : n["secret_file"],
                "auth.jwt: the HS256 secret from " + source + " is shorter than 32 bytes");
        ok = false;
      } else if (add_keys(n["secret_env"] ? n["secret_env"] : n["secret_file"],
                          JwtKeySpec{JwtKeySpec::Kind::kHmacSecret, {}, {}, std::move(secret)}, "auth.jwt")) {
        has_secret = true;
        iss.key_sources.push_back("secret " + source);
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  if (ok && sources == 0) {
    w.error(n, "auth.jwt entry for issuer '" + iss.issuer + "' needs keys, jwks_file, or secret_env/secret_file");
    ok = false;
  }
  if (const auto algs = n["algorithms"]) {
    w.for_each_string(algs, "auth.jwt.algorithms", [&](const YAML::Node& at, const std::string& a) {
      auto alg = base::parse_jwt_alg(a);
      if (!alg) {
        w.error(at, "auth.jwt.algorithms: '" + a + "' is not one of HS256, RS256, ES256");
        ok = false;
        return;
      }
      if (*alg == base::JwtAlg::kHS256 && !has_secret && !n["jwks_file"]) {
        w.error(at, "auth.jwt.algorithms: HS256 needs secret_env or secret_file");
        ok = false;
        return;
      }
      iss.algorithms.push_back(a);
    });
  } else {
    // Default: what the configured keys can verify. Never HS256 merely because a JWKS
    // exists: that would invite algorithm confusion.
    if (has_public) iss.algorithms = {"RS256", "ES256"};
    if (has_secret) iss.algorithms.push_back("HS256");
  }
  if (keys) iss.keys = keys->build();
  if (ok) out.push_back(std::move(iss));
}

bool parse_cert_identity(const std::string& s, CertIdentity& out) {
  for (auto c : {CertIdentity::kSubjectCn, CertIdentity::kSanDns, CertIdentity::kSanEmail, CertIdentity::kSanUri}) {
    if (s == cert_identity_name(c)) {
      out = c;
      return true;
    }
  }
  return false;
}

void load_mtls(Walker& w, const YAML::Node& n, Config& cfg) {
  if (n.IsNull()) {
    cfg.auth.mtls = Mtls{};
    return;
  }
  if (!w.check_keys(n, {"user_from", "groups_from", "tenant_from"}, "auth.mtls")) return;
  Mtls m;
  if (const auto from = n["user_from"]) {
    std::string s;
    if (w.get_string(from, "auth.mtls.user_from", s) && !parse_cert_identity(s, m.user_from))
      w.error(from, "auth.mtls.user_from '" + s + "' is not one of subject_cn, san_dns, san_email, san_uri");
  }
  if (const auto g = n["groups_from"]) {
    std::string s;
    if (w.get_string(g, "auth.mtls.groups_from", s)) {
      if (s == "subject_ou") m.groups_from_ou = true;
      else w.error(g, "auth.mtls.groups_from '" + s + "' is not subject_ou");
    }
  }
  if (const auto t = n["tenant_from"]) {
    std::string s;
    if (w.get_string(t, "auth.mtls.tenant_from", s)) {
      if (s == "subject_o") m.tenant_from_o = true;
      else w.error(t, "auth.mtls.tenant_from '" + s + "' is not subject_o");
    }
  }
  bool any_client_ca = false;
  for (const auto& l : cfg.listeners) any_client_ca = any_client_ca || (l.tls && !l.tls->client_ca.empty());
  if (!any_client_ca)
    w.error(n, "auth.mtls needs a listener with tls.client_ca (otherwise no client presents a certificate)");
  cfg.auth.mtls = m;
}

void load_limits(Walker& w, const YAML::Node& n, const std::string& where, QuotaLimits& q) {
  if (!w.check_keys(n, {"max_sessions", "max_concurrent_operations", "requests_per_second", "burst",
                        "max_artifact_bytes", "max_message_bytes"},
                    where))
    return;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  if (n["max_sessions"] && w.get_bounded(n["max_sessions"], where + ".max_sessions", 0, 1000000, u32, false))
    q.max_sessions = u32;
  if (n["max_concurrent_operations"] &&
      w.get_bounded(n["max_concurrent_operations"], where + ".max_concurrent_operations", 0, 1000000, u32, false))
    q.max_concurrent_operations = u32;
  if (const auto rps = n["requests_per_second"]) {
    double v = -1;
    if (!rps.IsScalar() || !YAML::convert<double>::decode(rps, v) || !std::isfinite(v) || v < 0 || v > 1e9) {
      w.error(rps, where + ".requests_per_second must be a number from 0 (unlimited) to 1e9");
    } else {
      q.requests_per_second = v;
    }
  }
  if (n["burst"] && w.get_bounded(n["burst"], where + ".burst", 1, 1000000000, u32, false)) q.burst = u32;
  if (n["max_artifact_bytes"] &&
      w.get_bounded(n["max_artifact_bytes"], where + ".max_artifact_bytes", 0, UINT64_MAX, u64, true))
    q.max_artifact_bytes = u64;
  if (n["max_message_bytes"] &&
      w.get_bounded(n["max_message_bytes"], where + ".max_message_bytes", 0, 2ull << 30, u64, true))
    q.max_message_bytes = u64;
}

void load_named_limits(Walker& w, const YAML::Node& n, const std::string& where,
                       std::vector<std::pair<std::string, QuotaLimits>>& out) {
  if (!n.IsMap()) {
    w.error(n, where + " must map names to limits, e.g. {analysts: {max_sessions: 5}}");
    return;
  }
  for (const auto& kv : n) {
    std::string name;
    if (!w.get_string(kv.first, where + " name", name)) continue;
    QuotaLimits q;
    load_limits(w, kv.second, where + "." + name, q);
    out.emplace_back(std::move(name), q);
  }
}

}  // namespace

void load_auth(Walker& w, const YAML::Node& n, Config& cfg) {
  Auth& a = cfg.auth;
  if (!n) return;
  if (!w.check_keys(n, {"tokens", "tokens_file", "jwt", "mtls", "anonymous", "forward_client_credentials"}, "auth"))
    return;
  if (n["tokens"]) load_token_list(w, n["tokens"], "auth.tokens", a.tokens);
  if (n["tokens_file"]) load_tokens_file(w, n["tokens_file"], a.tokens);
  if (const auto jwt = n["jwt"]) {
    if (!jwt.IsSequence()) {
      w.error(jwt, "auth.jwt must be a list of issuers");
    } else {
      for (const auto& item : jwt) load_jwt_issuer(w, item, a.jwt);
    }
  }
  if (n["mtls"]) load_mtls(w, n["mtls"], cfg);
  if (const auto anon = n["anonymous"]) {
    std::string s;
    if (w.get_string(anon, "auth.anonymous", s)) {
      if (s == "allow") a.anonymous = true;
      else if (s == "deny") a.anonymous = false;
      else w.error(anon, "auth.anonymous '" + s + "' is not one of allow, deny");
    }
  }
  // With authentication on, the client's credential is meant for the gateway.
  a.forward_client_credentials = !a.enabled();
  if (n["forward_client_credentials"])
    w.get_bool(n["forward_client_credentials"], "auth.forward_client_credentials", a.forward_client_credentials);
  if (!a.enabled() && !a.anonymous && w.errors().empty())
    w.error(n, "auth configures no tokens, jwt or mtls; remove the section or add one of them");
}

void load_identity(Walker& w, const YAML::Node& n, Config& cfg) {
  cfg.identity.mode = cfg.auth.enabled() ? Identity::Mode::kEnforce : Identity::Mode::kOff;
  if (!n) return;
  if (!w.check_keys(n, {"mode"}, "identity") || !n["mode"]) return;
  std::string s;
  if (!w.get_string(n["mode"], "identity.mode", s)) return;
  if (s == "enforce") cfg.identity.mode = Identity::Mode::kEnforce;
  else if (s == "rewrite") cfg.identity.mode = Identity::Mode::kRewrite;
  else if (s == "off") cfg.identity.mode = Identity::Mode::kOff;
  else {
    w.error(n["mode"], "identity.mode '" + s + "' is not one of enforce, rewrite, off");
    return;
  }
  if (cfg.identity.mode != Identity::Mode::kOff && !cfg.auth.enabled())
    w.error(n["mode"], "identity.mode " + s + " needs authentication (auth.tokens, auth.jwt or auth.mtls)");
}

void load_quotas(Walker& w, const YAML::Node& n, Config& cfg) {
  Quotas& q = cfg.quotas;
  q.redis = cfg.sessions.redis;  // one Redis for both unless quotas.redis says otherwise
  if (!n) return;
  if (!w.check_keys(n, {"default", "groups", "tenants", "users", "store", "redis", "on_store_failure"}, "quotas"))
    return;
  if (n["default"]) load_limits(w, n["default"], "quotas.default", q.defaults);
  if (n["groups"]) load_named_limits(w, n["groups"], "quotas.groups", q.groups);
  if (n["tenants"]) load_named_limits(w, n["tenants"], "quotas.tenants", q.tenants);
  if (n["users"]) load_named_limits(w, n["users"], "quotas.users", q.users);
  if (const auto store = n["store"]) {
    std::string s;
    if (w.get_string(store, "quotas.store", s)) {
      if (s == "memory") q.store = Quotas::Store::kMemory;
      else if (s == "redis") q.store = Quotas::Store::kRedis;
      else w.error(store, "quotas.store '" + s + "' is not one of memory, redis");
    }
  }
  if (n["redis"]) load_redis(w, n["redis"], "quotas.redis", q.redis);
  if (const auto f = n["on_store_failure"]) {
    std::string s;
    if (w.get_string(f, "quotas.on_store_failure", s)) {
      if (s == "allow") q.on_store_failure = Quotas::OnStoreFailure::kAllow;
      else if (s == "deny") q.on_store_failure = Quotas::OnStoreFailure::kDeny;
      else w.error(f, "quotas.on_store_failure '" + s + "' is not one of allow, deny");
    }
  }
}

}  // namespace sparkgate::config::detail
