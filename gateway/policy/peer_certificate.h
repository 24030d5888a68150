// The identity in a client's TLS certificate (mTLS), read once per connection right
// after the handshake and shared read-only by every stream of that connection.
#pragma once

#include <memory>
#include <string>
#include <vector>

typedef struct ssl_st SSL;

namespace sparkgate::policy {

struct PeerCertificate {
  std::string subject_cn;
  std::string subject_o;
  std::vector<std::string> subject_ou;
  std::vector<std::string> san_dns;
  std::vector<std::string> san_email;
  std::vector<std::string> san_uri;
};

// The verified client certificate of a completed handshake, or null when the client sent
// none or it did not verify. Call on the connection's thread.
std::shared_ptr<const PeerCertificate> read_peer_certificate(SSL* ssl);

}  // namespace sparkgate::policy
