// Input that is not a Spark Connect call: HTTP/1.1 on the gRPC port, and unknown methods.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

namespace sparkgate::itest {
namespace {

struct RawExchange {
  std::string response;
  bool closed = false;  // the peer closed the connection (EOF or reset)
};

// Sends `request` on a fresh TCP connection to 127.0.0.1:port and reads until the peer
// closes or `timeout` passes.
RawExchange raw_exchange(uint16_t port, const std::string& request,
                         std::chrono::milliseconds timeout) {
  RawExchange out;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      out.closed = true;
      break;
    }
    out.response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

}  // namespace

TEST_CASE("HTTP/1.1 on the gRPC port gets an HTTP/1.1 4xx and a close") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  const RawExchange x = raw_exchange(
      gw.port(), "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itest\r\n\r\n", 5s);
  INFO("response: " << x.response.substr(0, 200));
  CHECK(x.response.rfind("HTTP/1.1 4", 0) == 0);
  CHECK_MESSAGE(x.closed, "the gateway kept the HTTP/1.1 connection open");

  auto channel = make_channel(gw.address());
  const CallResult r = call(channel, "Config", {request_for("Config", "after-http1")});
  CHECK_MESSAGE(r.status.ok(), r.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("unknown methods get UNIMPLEMENTED") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  for (const std::string path :
       {"/spark.connect.SparkConnectService/Nope", "/other.Service/ExecutePlan"}) {
    CAPTURE(path);
    StreamingCall c(channel, path, {});
    c.write(request_for("Config", "s-nope"));
    c.writes_done();
    while (c.read()) {
    }
    const CallResult r = c.finish();
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::UNIMPLEMENTED, r.describe());
    // The gateway answers this itself: nothing reached the backend.
    CHECK(!r.has_trailer("x-fake-method"));
  }
  const CallResult ok = call(channel, "Config", {request_for("Config", "after-nope")});
  CHECK_MESSAGE(ok.status.ok(), ok.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
