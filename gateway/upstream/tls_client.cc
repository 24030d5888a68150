#include "upstream/tls_client.h"
#include "base/tls_client_context.h"

#include <openssl/ssl.h>

namespace sparkgate::upstream {

std::shared_ptr<boost::asio::ssl::context> make_upstream_tls_context(const config::UpstreamTls& tls,
                                                                     std::string& error) {
  namespace ssl = boost::asio::ssl;
  auto ctx = base::make_tls_client_context(tls.ca, error);
  if (!ctx) return nullptr;
  boost::system::error_code ec;
  if (!tls.cert.empty() || !tls.key.empty()) {
    if (tls.cert.empty() || tls.key.empty()) {
      error = "a client certificate needs both cert and key";
      return nullptr;
    }
    ctx->use_certificate_chain_file(tls.cert, ec);
    if (ec) {
      error = "cannot load client certificate " + tls.cert + ": " + ec.message();
      return nullptr;
    }
    ctx->use_private_key_file(tls.key, ssl::context::pem, ec);
    if (ec || SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
      error = ec && ec.message().find("mismatch") == std::string::npos
                  ? "cannot load client key " + tls.key + ": " + ec.message()
                  : "client key " + tls.key + " does not match certificate " + tls.cert;
      return nullptr;
    }
  }
  return ctx;
}

namespace {
std::filesystem::file_time_type stamp(const std::string& path) {
  if (path.empty()) return {};
  std::error_code ec;
  auto t = std::filesystem::last_write_time(path, ec);
  return ec ? std::filesystem::file_time_type{} : t;
}
}  // namespace

std::shared_ptr<boost::asio::ssl::context> TlsContextCache::get(const config::UpstreamTls& tls,
                                                                std::string& error) {
  Paths paths{tls.ca, tls.cert, tls.key};
  auto stamps = std::make_tuple(stamp(tls.ca), stamp(tls.cert), stamp(tls.key));
  {
    std::lock_guard lock(mu_);
    auto it = contexts_.find(paths);
    if (it != contexts_.end() && it->second.stamps == stamps) return it->second.context;
  }
  // Built outside the lock: loading files must not stall other threads' lookups.
  auto ctx = make_upstream_tls_context(tls, error);
  if (!ctx) return nullptr;
  std::lock_guard lock(mu_);
  auto& entry = contexts_[paths];
  // Another thread may have built the same one meanwhile; keep a single context.
  if (entry.context && entry.stamps == stamps) return entry.context;
  entry = Entry{stamps, ctx};
  return ctx;
}

size_t TlsContextCache::size() const {
  std::lock_guard lock(mu_);
  return contexts_.size();
}

}  // namespace sparkgate::upstream
