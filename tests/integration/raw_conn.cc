#include "raw_conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace sparkgate::itest {

namespace {
constexpr size_t kFrameHeaderBytes = 9;

uint32_t be32(const std::string& s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}
}  // namespace

RawConn::RawConn(uint16_t port) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (fd_ >= 0) close(fd_);
    throw std::runtime_error("RawConn: connect to port " + std::to_string(port) + " failed: " + std::strerror(err));
  }
  nghttp2_hd_deflate_new(&deflater_, 4096);
}

RawConn::~RawConn() {
  if (fd_ >= 0) close(fd_);
  if (deflater_) nghttp2_hd_deflate_del(deflater_);
}

bool RawConn::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawConn::read_for(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!closed_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd_, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      closed_ = true;  // EOF, or ECONNRESET
      break;
    }
    received_.append(buf, static_cast<size_t>(n));
  }
  return !closed_;
}

bool RawConn::wait_closed(std::chrono::milliseconds timeout) {
  read_for(timeout);
  return closed_;
}

bool RawConn::wait_frame(uint8_t type, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    for (const auto& f : frames())
      if (f.type == type) return true;
    if (closed_ || std::chrono::steady_clock::now() >= until) return false;
    read_for(std::min(std::chrono::milliseconds(20), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                         until - std::chrono::steady_clock::now())));
  }
}

void RawConn::abort() {
  if (fd_ < 0) return;
  linger l{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd_);
  fd_ = -1;
  closed_ = true;
}

std::vector<H2Frame> RawConn::frames() const {
  std::vector<H2Frame> out;
  size_t at = 0;
  while (received_.size() - at >= kFrameHeaderBytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(received_.data() + at);
    size_t len = (size_t{p[0]} << 16) | (size_t{p[1]} << 8) | p[2];
    if (received_.size() - at - kFrameHeaderBytes < len) break;
    H2Frame f;
    f.type = p[3];
    f.flags = p[4];
    f.stream_id = static_cast<int32_t>(be32(received_, at + 5) & 0x7fffffffu);
    f.payload = received_.substr(at + kFrameHeaderBytes, len);
    out.push_back(std::move(f));
    at += kFrameHeaderBytes + len;
  }
  return out;
}

std::optional<std::pair<uint32_t, std::string>> RawConn::goaway() const {
  for (const auto& f : frames()) {
    if (f.type != NGHTTP2_GOAWAY || f.payload.size() < 8) continue;
    return std::make_pair(be32(f.payload, 4), f.payload.substr(8));
  }
  return std::nullopt;
}

std::optional<uint32_t> RawConn::rst_code(int32_t stream_id) const {
  for (const auto& f : frames())
    if (f.type == NGHTTP2_RST_STREAM && f.stream_id == stream_id && f.payload.size() == 4) return be32(f.payload, 0);
  return std::nullopt;
}

std::string RawConn::preface() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + frame(NGHTTP2_SETTINGS, 0, 0, "");
}

std::string RawConn::frame(uint8_t type, uint8_t flags, int32_t stream_id, std::string_view payload) {
  std::string out(kFrameHeaderBytes, '\0');
  size_t len = payload.size();
  out[0] = static_cast<char>(len >> 16);
  out[1] = static_cast<char>(len >> 8);
  out[2] = static_cast<char>(len);
  out[3] = static_cast<char>(type);
  out[4] = static_cast<char>(flags);
  uint32_t id = static_cast<uint32_t>(stream_id) & 0x7fffffffu;
  out[5] = static_cast<char>(id >> 24);
  out[6] = static_cast<char>(id >> 16);
  out[7] = static_cast<char>(id >> 8);
  out[8] = static_cast<char>(id);
  out.append(payload);
  return out;
}

std::string RawConn::encode_headers(const HeaderList& headers) {
  std::vector<nghttp2_nv> nva;
  for (const auto& [k, v] : headers)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  std::string out(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
  ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<uint8_t*>(out.data()), out.size(), nva.data(),
                                    nva.size());
  if (n < 0) throw std::runtime_error(std::string("hpack: ") + nghttp2_strerror(static_cast<int>(n)));
  out.resize(static_cast<size_t>(n));
  return out;
}

HeaderList RawConn::grpc_request_headers(uint16_t port, std::string_view rpc, const HeaderList& extra) {
  HeaderList h = {{":method", "POST"},
                  {":scheme", "http"},
                  {":authority", "127.0.0.1:" + std::to_string(port)},
                  {":path", "/spark.connect.SparkConnectService/" + std::string(rpc)},
                  {"content-type", "application/grpc"},
                  {"te", "trailers"}};
  h.insert(h.end(), extra.begin(), extra.end());
  return h;
}

}  // namespace sparkgate::itest
