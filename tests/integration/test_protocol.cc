// Input that is not a well-formed Spark Connect call (HTTP/1.1 on the gRPC port, unknown
// methods, malformed gRPC framing), the wire form of replies, and shutdown.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "harness.h"
#include "raw_h2.h"

namespace sparkgate::itest {
namespace {

struct RawExchange {
  std::string response;
  bool closed = false;  // the peer closed the connection (EOF or reset)
};

// Connects to 127.0.0.1:port, waits `send_delay`, sends `request`, and reads until the
// peer closes or `timeout` passes.
RawExchange raw_exchange(uint16_t port, const std::string& request,
                         std::chrono::milliseconds send_delay, std::chrono::milliseconds timeout) {
  RawExchange out;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  std::this_thread::sleep_for(send_delay);
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

// Non-printable bytes as \xNN, so binary (e.g. an HTTP/2 frame) shows in a report.
std::string escaped(const std::string& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("HTTP/1.1 on the gRPC port gets an HTTP/1.1 4xx and a close") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  // Sent at once, and after a pause (a client that connects first and writes later: the
  // gateway must not have spoken HTTP/2 to it in the meantime).
  for (const auto delay : {0ms, 200ms}) {
    CAPTURE(delay.count());
    const RawExchange x = raw_exchange(
        gw.port(), "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: itest\r\n\r\n", delay, 5s);
    INFO("response (escaped): " << escaped(x.response.substr(0, 200)));
    CHECK(x.response.rfind("HTTP/1.1 4", 0) == 0);
    CHECK_MESSAGE(x.closed, "the gateway kept the HTTP/1.1 connection open");
  }

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

TEST_CASE("SIGTERM with no open streams: the gateway exits 0 promptly") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  {
    auto channel = make_channel(gw.address());
    const CallResult r = call(channel, "ExecutePlan", {request_for("ExecutePlan", "s-term")});
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
  }
  const auto start = std::chrono::steady_clock::now();
  const std::optional<int> status = gw.terminate(5s);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start).count();
  MESSAGE("gateway exit after SIGTERM took " << ms << " ms");
  REQUIRE_MESSAGE(status.has_value(), "no exit within 5 s of SIGTERM; stderr:\n" << gw.stderr_text());
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("wire form: local errors are HTTP 200 + grpc-status; malformed framing is INVALID_ARGUMENT") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  const std::string path = method_path("Config");
  const std::string good = request_for("Config", "s-raw");

  SUBCASE("unknown method") {
    const RawH2Response r =
        raw_h2_request(gw.port(), method_path("Nope"), grpc_frame(good));
    INFO("error='" << r.error << "' grpc-message='" << r.get("grpc-message") << "'");
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "200");
    CHECK(r.get("grpc-status") == "12");
    CHECK(r.trailers_only);
  }
  SUBCASE("invalid compressed flag") {
    const RawH2Response r = raw_h2_request(gw.port(), path, std::string("\x02\0\0\0\0", 5));
    INFO("error='" << r.error << "' grpc-message='" << r.get("grpc-message") << "'");
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "200");
    CHECK(r.get("grpc-status") == "3");
    CHECK(!r.get("grpc-message").empty());
    CHECK(r.get("x-fake-method").empty());
  }
  SUBCASE("compressed flag without grpc-encoding") {
    const RawH2Response r = raw_h2_request(gw.port(), path, "\x01" + grpc_frame(good).substr(1));
    INFO("error='" << r.error << "' grpc-message='" << r.get("grpc-message") << "'");
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "200");
    // grpc's own servers answer INTERNAL here; the gateway's table says INVALID_ARGUMENT.
    CHECK(r.get("grpc-status") == "3");
  }
  SUBCASE("stream ends inside the first message, before the envelope is complete") {
    // The prefix promises 100 bytes; 3 arrive, then END_STREAM.
    const RawH2Response r = raw_h2_request(gw.port(), path, std::string("\0\0\0\0\x64\x0a\x01s", 8));
    INFO("error='" << r.error << "' grpc-message='" << r.get("grpc-message") << "'");
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "200");
    CHECK(r.get("grpc-status") == "3");
    CHECK(r.get("x-fake-method").empty());
  }
  SUBCASE("stream ends inside the first message, after the envelope") {
    // session_id and user_context are complete, the message's last 2 bytes never come.
    // The gateway knows the message boundary (it enforces max_message_bytes), so a
    // truncated message is malformed framing, not something to pass on: grpc-core
    // backends silently drop a partial trailing message and answer OK.
    std::string truncated = grpc_frame(good);
    truncated.resize(truncated.size() - 2);
    const RawH2Response r = raw_h2_request(gw.port(), path, truncated);
    INFO("error='" << r.error << "' grpc-message='" << r.get("grpc-message")
                   << "' backend saw " << r.get("x-fake-request-messages") << " messages");
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "200");
    CHECK(r.get("grpc-status") == "3");
  }
  SUBCASE("a well-formed call: headers, data, trailers") {
    const RawH2Response r = raw_h2_request(gw.port(), path, grpc_frame(good));
    INFO("error='" << r.error << "'");
    REQUIRE(r.closed);
    CHECK(r.close_error == 0);
    CHECK(r.get(":status") == "200");
    CHECK(r.header_blocks == 2);
    CHECK(!r.trailers_only);
    CHECK(r.get("grpc-status") == "0");
    CHECK(r.data.size() > 5);
    CHECK(r.get("x-fake-method") == "Config");
  }
  SUBCASE("a backend trailers-only error stays trailers-only") {
    const RawH2Response r = raw_h2_request(gw.port(), path, grpc_frame(good),
                                           {{"x-fake-status", "5"}, {"x-fake-message", "gone"}});
    INFO("error='" << r.error << "'");
    REQUIRE(r.closed);
    CHECK(r.get("grpc-status") == "5");
    CHECK(r.get("grpc-message") == "gone");
    CHECK(r.data.empty());
    CHECK_MESSAGE(r.trailers_only, "the backend's trailers-only reply arrived as "
                                       << r.header_blocks << " header blocks");
  }

  // Bad input on one connection must not hurt other clients.
  auto channel = make_channel(gw.address());
  const CallResult ok = call(channel, "Config", {request_for("Config", "after-raw")});
  CHECK_MESSAGE(ok.status.ok(), ok.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest

namespace sparkgate::itest {

TEST_CASE("a request that is not gRPC gets its HTTP status and a text/plain body saying how to connect") {
  if (direct_mode()) return;
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  const std::string authority = "127.0.0.1:" + std::to_string(gw.port());

  SUBCASE("GET / (curl, a browser)") {
    const RawH2Response r = raw_h2_request(gw.port(), "/", "", {{":method", "GET"}});
    INFO("error='" << r.error << "' data='" << r.data << "'");
    REQUIRE(r.closed);
    CHECK(r.close_error == 0);  // ended by END_STREAM, not reset
    CHECK(r.get(":status") == "405");
    CHECK(r.get("content-type") == "text/plain; charset=utf-8");
    CHECK(r.get("content-length") == std::to_string(r.data.size()));
    CHECK_FALSE(r.trailers_only);
    CHECK(r.get("grpc-status").empty());
    CHECK(r.data.starts_with("405 method GET is not allowed: gRPC requires POST\n"));
    CHECK(r.data.find("Spark Connect") != std::string::npos);
    CHECK(r.data.find("sc://" + authority) != std::string::npos);
  }
  SUBCASE("POST with another content type") {
    const RawH2Response r = raw_h2_request(gw.port(), method_path("Config"), "{}", {{"content-type", "application/json"}});
    INFO("error='" << r.error << "' data='" << r.data << "'");
    REQUIRE(r.closed);
    CHECK(r.close_error == 0);
    CHECK(r.get(":status") == "415");
    CHECK(r.get("content-type") == "text/plain; charset=utf-8");
    CHECK(r.data.starts_with("415 content-type 'application/json' is not gRPC: sparkgate expects application/grpc\n"));
    CHECK(r.data.find("sc://" + authority) != std::string::npos);
  }
  SUBCASE("an :authority that is not host:port is not echoed") {
    const RawH2Response r = raw_h2_request(gw.port(), "/", "", {{":method", "GET"}, {":authority", "user@example.org:443"}});
    REQUIRE(r.closed);
    CHECK(r.get(":status") == "405");
    CHECK(r.data.find("user@") == std::string::npos);
    CHECK(r.data.find("sc://HOST:PORT") != std::string::npos);
  }
  // The gateway still serves gRPC on the same listener.
  auto channel = make_channel(gw.address());
  CHECK(call(channel, "Config", {request_for("Config", "s-after-http")}).status.ok());
}

}  // namespace sparkgate::itest
