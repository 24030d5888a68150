// A gRPC unary call made by the gateway itself over an upstream HTTP/2 connection: the
// health checker's grpc.health.v1.Health/Check, ReleaseSession for reaped sessions.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "http2/client_connection.h"
#include "http2/header_map.h"

namespace sparkgate::upstream {

struct UnaryResult {
  // True when the call reached a gRPC status (grpc_status is then meaningful); false
  // when the connection, the stream or the HTTP response failed, or the call timed out.
  bool transport_ok = false;
  std::string transport_error;  // why, when !transport_ok ("timed out after 200 ms")
  bool timed_out = false;       // the failure was the timeout
  int grpc_status = -1;
  std::string grpc_message;      // percent-decoded
  std::string response_message;  // the first response message, without its 5-byte prefix
};

// The largest first response message kept; a larger one fails the call.
inline constexpr size_t kMaxUnaryResponseBytes = 4u << 20;

// Sends `request_message` (unframed; the 5-byte prefix is added) to `path` on `connection`,
// with :authority = connection.backend(), content-type application/grpc, te: trailers, then
// `extra_headers` appended as given (e.g. authorization; they must not repeat these). Response bytes are consumed as
// they arrive; only the first message is kept. After `timeout` the stream is reset
// (RST_STREAM CANCEL) and the call fails with "timed out after N ms".
//
// `done` is called exactly once, always from a handler posted to the connection's executor:
// never synchronously inside unary_call and never inside an nghttp2 callback, so it may
// start another call or close the connection. The connection must be connected; if it is not,
// or closes before the answer, the call fails with transport_ok false.
//
// Threading: call on the connection's thread. The connection need not outlive the call (if it
// is destroyed first, the call fails).
void unary_call(http2::ClientConnection& connection, const std::string& path, const http2::HeaderMap& extra_headers,
                std::string request_message, std::chrono::milliseconds timeout,
                std::function<void(UnaryResult)> done);

}  // namespace sparkgate::upstream
