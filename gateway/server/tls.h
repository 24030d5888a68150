// TLS server contexts for listeners: certificate chain, key, modern protocol versions,
// and ALPN that selects "h2".
#pragma once

#include <boost/asio/ssl.hpp>

#include <memory>
#include <string>

#include "config/config.h"

namespace sparkgate::server {

// Builds a context from the listener's files. Returns null and sets `error` on failure
// (unreadable file, key not matching the certificate). Thread-safe; the context is then
// shared read-only by all workers.
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const config::TlsFiles& files, std::string& error);

}  // namespace sparkgate::server
