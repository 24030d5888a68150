#include "server/tls.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

namespace sparkgate::server {

namespace {
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  // nghttp2_select_next_protocol wants a non-const out pointer; it only reads `in`.
  unsigned char* selected = nullptr;
  int rv = nghttp2_select_next_protocol(&selected, outlen, in, inlen);
  if (rv != 1) return SSL_TLSEXT_ERR_ALERT_FATAL;  // h2 is the only protocol we speak
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}
}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const config::TlsFiles& files, std::string& error) {
  auto ctx = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(boost::asio::ssl::context::default_workarounds | boost::asio::ssl::context::no_sslv2 |
                       boost::asio::ssl::context::no_sslv3 | boost::asio::ssl::context::no_tlsv1 |
                       boost::asio::ssl::context::no_tlsv1_1 | boost::asio::ssl::context::single_dh_use,
                   ec);
  ctx->use_certificate_chain_file(files.cert, ec);
  if (ec) {
    error = "cannot load certificate " + files.cert + ": " + ec.message();
    return nullptr;
  }
  ctx->use_private_key_file(files.key, boost::asio::ssl::context::pem, ec);
  if (ec) {
    // OpenSSL checks the key against the certificate while loading it.
    if (ec.message().find("mismatch") != std::string::npos)
      error = "private key " + files.key + " does not match certificate " + files.cert;
    else
      error = "cannot load private key " + files.key + ": " + ec.message();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    error = "private key " + files.key + " does not match certificate " + files.cert;
    return nullptr;
  }
  SSL_CTX_set_alpn_select_cb(ctx->native_handle(), select_alpn, nullptr);
  if (!files.client_ca.empty()) {
    // mTLS: ask for a certificate chaining to client_ca; its identity is read after the
    // handshake (policy/peer_certificate). Without require_client_cert a client may
    // still connect without one and authenticate with a token.
    if (SSL_CTX_load_verify_locations(ctx->native_handle(), files.client_ca.c_str(), nullptr) != 1) {
      error = "cannot load client CA " + files.client_ca;
      return nullptr;
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.client_ca.c_str());
    if (names == nullptr) {
      error = "client CA " + files.client_ca + " holds no certificate";
      return nullptr;
    }
    SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    int mode = SSL_VERIFY_PEER;
    if (files.require_client_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx->native_handle(), mode, nullptr);
    SSL_CTX_set_verify_depth(ctx->native_handle(), 8);
    // Session resumption would skip the certificate on later connections.
    SSL_CTX_set_session_cache_mode(ctx->native_handle(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx->native_handle(), 0);
  }
  return ctx;
}

}  // namespace sparkgate::server
