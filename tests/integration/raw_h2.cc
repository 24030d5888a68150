#include "raw_h2.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace sparkgate::itest {
namespace {

struct ClientState {
  int fd = -1;
  int32_t stream_id = -1;
  const std::string* body = nullptr;
  size_t body_offset = 0;
  RawH2Response* out = nullptr;
  std::string pending;  // bytes nghttp2 produced that the socket has not taken yet
};

ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int, void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  st->pending.append(reinterpret_cast<const char*>(data), length);
  return static_cast<ssize_t>(length);
}

int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  if (frame->hd.stream_id != st->stream_id) return 0;
  std::pair<std::string, std::string> h(std::string(reinterpret_cast<const char*>(name), namelen),
                                        std::string(reinterpret_cast<const char*>(value), valuelen));
  if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
    st->out->headers.push_back(std::move(h));
  } else {
    st->out->trailers.push_back(std::move(h));
  }
  return 0;
}

int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  if (frame->hd.type == NGHTTP2_GOAWAY) st->out->goaway = true;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->hd.stream_id == st->stream_id) {
    ++st->out->header_blocks;
    if (st->out->header_blocks == 1 && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      st->out->trailers_only = true;
    }
  }
  return 0;
}

int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                  void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  if (stream_id == st->stream_id) st->out->data.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  if (stream_id == st->stream_id) {
    st->out->closed = true;
    st->out->close_error = error_code;
  }
  return 0;
}

ssize_t read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* data_flags,
                  nghttp2_data_source*, void* user_data) {
  auto* st = static_cast<ClientState*>(user_data);
  const size_t n = std::min(length, st->body->size() - st->body_offset);
  std::memcpy(buf, st->body->data() + st->body_offset, n);
  st->body_offset += n;
  if (st->body_offset == st->body->size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

std::string RawH2Response::get(const std::string& name) const {
  for (const auto* list : {&headers, &trailers}) {
    for (const auto& [k, v] : *list) {
      if (k == name) return v;
    }
  }
  return "";
}

std::string grpc_frame(const std::string& message) {
  std::string out(5, '\0');
  const uint32_t n = static_cast<uint32_t>(message.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  return out + message;
}

RawH2Response raw_h2_request(uint16_t port, const std::string& path, const std::string& body,
                             const HeaderList& extra_headers, std::chrono::milliseconds timeout) {
  RawH2Response out;
  ClientState st;
  st.body = &body;
  st.out = &out;
  st.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (st.fd < 0 || connect(st.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    out.error = "connect failed";
    if (st.fd >= 0) close(st.fd);
    return out;
  }

  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session* session = nullptr;
  nghttp2_session_client_new(&session, cbs, &st);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);

  const std::string authority = "127.0.0.1:" + std::to_string(port);
  HeaderList headers = {{":method", "POST"},
                        {":scheme", "http"},
                        {":authority", authority},
                        {":path", path},
                        {"content-type", "application/grpc"},
                        {"te", "trailers"}};
  for (const auto& [k, v] : extra_headers) {
    auto same = std::find_if(headers.begin(), headers.end(), [&](const auto& h) { return h.first == k; });
    if (same != headers.end() && (k[0] == ':' || k == "content-type")) {
      same->second = v;  // :method GET, another content type: replaces the gRPC default
    } else {
      headers.emplace_back(k, v);
    }
  }
  std::vector<nghttp2_nv> nva;
  for (const auto& [k, v] : headers) nva.push_back(make_nv(k, v));
  nghttp2_data_provider provider{};
  provider.read_callback = read_body;
  st.stream_id = nghttp2_submit_request(session, nullptr, nva.data(), nva.size(), &provider, &st);

  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!out.closed) {
    if (nghttp2_session_send(session) != 0) {
      out.error = "nghttp2_session_send failed";
      break;
    }
    while (!st.pending.empty()) {
      const ssize_t n = send(st.fd, st.pending.data(), st.pending.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      st.pending.erase(0, static_cast<size_t>(n));
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      out.timed_out = true;
      break;
    }
    pollfd pfd{st.fd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(std::min<long>(left.count(), 100))) <= 0) continue;
    uint8_t buf[16384];
    const ssize_t n = recv(st.fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (!out.closed) out.error = "connection closed before the stream ended";
      break;
    }
    if (nghttp2_session_mem_recv(session, buf, static_cast<size_t>(n)) < 0) {
      out.error = "HTTP/2 protocol error from the server";
      break;
    }
  }
  nghttp2_session_del(session);
  close(st.fd);
  return out;
}

}  // namespace sparkgate::itest
