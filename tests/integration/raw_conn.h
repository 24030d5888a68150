// A raw TCP connection for the fault tests (test_faults.cc): it sends what no HTTP/2
// client library would (garbage, a trickled preface, a header block that never ends,
// more streams than allowed, a connection dropped mid-request) and reads back the
// frames the gateway sends, so that a test can see the GOAWAY, RST_STREAM or close.
//
// Blocking, single-threaded; not thread-safe. Never throws after construction.
#pragma once

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "raw_h2.h"

namespace sparkgate::itest {

struct H2Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  int32_t stream_id = 0;
  std::string payload;
};

class RawConn {
 public:
  // Connects to 127.0.0.1:port; throws std::runtime_error if that fails.
  explicit RawConn(uint16_t port);
  ~RawConn();
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // Writes all of `bytes`; false if the peer closed or the write failed.
  bool send(std::string_view bytes);
  // Reads whatever arrives for `timeout`, or until the peer closes. Appends to
  // received(); false once the peer has closed.
  bool read_for(std::chrono::milliseconds timeout);
  // Reads until the peer closes the connection or `timeout` passes; true if it closed.
  bool wait_closed(std::chrono::milliseconds timeout);
  // Reads until a frame of `type` arrives (true), or the connection closes or `timeout`
  // passes (false).
  bool wait_frame(uint8_t type, std::chrono::milliseconds timeout);
  // Closes at once with a TCP RST (SO_LINGER 0), as a crashed client would.
  void abort();

  bool closed() const { return closed_; }
  const std::string& received() const { return received_; }
  // The frames in received() (the gateway sends no preface of its own); a torn last
  // frame is left out.
  std::vector<H2Frame> frames() const;
  // The first GOAWAY received: its error code and debug data.
  std::optional<std::pair<uint32_t, std::string>> goaway() const;
  // The RST_STREAM error code received for `stream_id`, if any.
  std::optional<uint32_t> rst_code(int32_t stream_id) const;

  // The client preface followed by an empty SETTINGS frame.
  static std::string preface();
  static std::string frame(uint8_t type, uint8_t flags, int32_t stream_id, std::string_view payload);
  // A header block for this connection's HPACK state (the encoder lives as long as the
  // connection, as the server's decoder does).
  std::string encode_headers(const HeaderList& headers);
  // The gRPC request headers of `rpc` on this server, plus `extra`.
  static HeaderList grpc_request_headers(uint16_t port, std::string_view rpc, const HeaderList& extra = {});

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
  nghttp2_hd_deflater* deflater_ = nullptr;
};

}  // namespace sparkgate::itest
