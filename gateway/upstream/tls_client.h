// TLS client contexts for connections from the gateway to backends (a cluster's `tls:`
// setting): TLS 1.2 or newer, the peer certificate verified against a CA bundle (or the
// system trust store), an optional client certificate for mTLS.
#pragma once

#include <boost/asio/ssl.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "config/config.h"

namespace sparkgate::upstream {

// Builds a client context for `tls`: peer verification on, CA bundle tls.ca (or the
// system default paths when empty), client certificate chain and key when tls.cert is
// set. The server name is not part of the context; it is given per connection
// (http2::ClientTls). Returns null and sets `error` on failure ("cannot load CA bundle
// /etc/ca.pem: ..."). Thread-safe; the context is then shared read-only.
std::shared_ptr<boost::asio::ssl::context> make_upstream_tls_context(const config::UpstreamTls& tls,
                                                                     std::string& error);

// One context per distinct TLS setting, built on first use. The key is the file paths
// (ca, cert, key) and their modification times, so a rotated certificate gets a fresh
// context on the next lookup (new connections use it; open ones keep theirs). Failures
// are not cached: the next lookup tries again.
//
// Threading: every method is thread-safe. Owned by whoever creates connections (a
// worker's PoolSet, the health checker), possibly shared.
class TlsContextCache {
 public:
  // The context for `tls`, or null with `error` set.
  std::shared_ptr<boost::asio::ssl::context> get(const config::UpstreamTls& tls, std::string& error);
  size_t size() const;

 private:
  using FileStamp = std::filesystem::file_time_type;
  using Paths = std::tuple<std::string, std::string, std::string>;  // ca, cert, key
  struct Entry {
    std::tuple<FileStamp, FileStamp, FileStamp> stamps;
    std::shared_ptr<boost::asio::ssl::context> context;
  };

  mutable std::mutex mu_;
  std::map<Paths, Entry> contexts_;
};

}  // namespace sparkgate::upstream
