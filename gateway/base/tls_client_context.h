// The TLS client context every outgoing TLS connection of the gateway starts from.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace sparkgate::base {

// A client context that verifies the peer against `ca_file` (a PEM bundle), or against the
// system trust store when `ca_file` is empty; TLS 1.2 or newer. The caller still sets the
// host name to verify (SNI and RFC 6125 matching) per connection, and may add a client
// certificate. Returns null with `error` set ("cannot load CA bundle <file>: <reason>", or
// the trust store's) when the trust anchors cannot be loaded. Any thread.
std::shared_ptr<boost::asio::ssl::context> make_tls_client_context(const std::string& ca_file, std::string& error);

}  // namespace sparkgate::base
