// The header blocks of replies the gateway makes itself (DESIGN.md §6): a local error is
// HTTP 200 with grpc-status, never an HTTP 4xx/5xx (except for requests that are not gRPC
// at all). The only place these blocks are built.
//
// Templates over the header container (anything with add(std::string, std::string)), so
// that this folder needs no HTTP/2 type. Plain functions, usable on any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "grpcwire/status.h"

namespace sparkgate::grpcwire {

inline std::string status_value(StatusCode code) { return std::to_string(static_cast<int>(code)); }

// A trailers-only reply: one HEADERS frame with END_STREAM carrying :status,
// content-type, grpc-status and grpc-message (percent-encoded). `http_status` other than
// 200 only for a request that is not gRPC (405 wrong method, 415 wrong content type).
template <class Headers>
void add_trailers_only(Headers& h, StatusCode code, std::string_view message, int http_status = 200) {
  h.add(":status", std::to_string(http_status));
  h.add("content-type", "application/grpc");
  h.add("grpc-status", status_value(code));
  h.add("grpc-message", percent_encode(message));
}

// The response headers of a reply with messages (the trailers follow the body).
template <class Headers>
void add_reply_headers(Headers& h) {
  h.add(":status", "200");
  h.add("content-type", "application/grpc");
}

// The trailers that end a reply whose headers (and maybe messages) went out already.
// An empty message is left out.
template <class Headers>
void add_status_trailers(Headers& h, StatusCode code, std::string_view message) {
  h.add("grpc-status", status_value(code));
  if (!message.empty()) h.add("grpc-message", percent_encode(message));
}

// The grpc-status value a peer sent, typed: its leading decimal number (a value outside
// 0..16 is kept as it is, for the metrics to show), or kUnknown when there is none.
StatusCode parse_status(std::string_view value);

}  // namespace sparkgate::grpcwire
