// A minimal blocking HTTP/2 (h2c, prior knowledge) client on libnghttp2, for tests that
// must send what grpc++ never would (malformed gRPC framing) or see the response at the
// frame level (trailers-only vs. headers + trailers).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sparkgate::itest {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct RawH2Response {
  HeaderList headers;   // the first header block (response headers, or trailers-only)
  HeaderList trailers;  // the second header block, if any
  int header_blocks = 0;
  // The first HEADERS frame carried END_STREAM: a trailers-only response.
  bool trailers_only = false;
  std::string data;           // DATA payload, gRPC framing included
  bool closed = false;        // the stream closed (normally or by reset)
  uint32_t close_error = 0;   // the stream's close error code (RST_STREAM code or 0)
  bool goaway = false;        // the server sent GOAWAY
  bool timed_out = false;
  std::string error;          // socket or nghttp2 failure, if any

  // The value of `name` in the first header block, then the trailers; "" if absent.
  std::string get(const std::string& name) const;
};

// Opens a connection to 127.0.0.1:port, sends one POST to `path` with the gRPC request
// headers plus `extra_headers` (a pseudo-header or content-type there replaces the
// default: {":method", "GET"}), sends `body` as DATA with END_STREAM, and reads until the
// stream closes or `timeout` passes. Never throws; failures land in RawH2Response::error.
RawH2Response raw_h2_request(uint16_t port, const std::string& path, const std::string& body,
                             const HeaderList& extra_headers = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The 5-byte gRPC message prefix (uncompressed) followed by `message`.
std::string grpc_frame(const std::string& message);

}  // namespace sparkgate::itest
