#include "base/tls_client_context.h"

#include <openssl/ssl.h>

namespace sparkgate::base {

std::shared_ptr<boost::asio::ssl::context> make_tls_client_context(const std::string& ca_file, std::string& error) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                   ec);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_verify_mode(ssl::verify_peer, ec);
  if (ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) {
      error = "cannot load the system trust store: ";
      error += ec.message();
      return nullptr;
    }
  } else {
    ctx->load_verify_file(ca_file, ec);
    if (ec) {
      error = "cannot load CA bundle ";
      error += ca_file;
      error += ": ";
      error += ec.message();
      return nullptr;
    }
  }
  return ctx;
}

}  // namespace sparkgate::base
