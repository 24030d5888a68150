// UpstreamRequest's relay against fake connections: bytes are forwarded untouched both
// ways, consumed only once forwarded, and every received byte is consumed exactly once
// whatever way the RPC ends.
#include "proxy/upstream_request.h"

#include <doctest/doctest.h>

#include "proxy_fakes.h"

using namespace sparkgate;
using namespace sparkgate::proxy;
using namespace sparkgate::proxy::testing;

namespace {

struct Relay {
  Relay() : up_req(down, events, 1 << 20, "Config") {}
  ~Relay() {
    up_req.downstream_closed();
    CHECK(up_req.all_consumed());
  }
  void request(const std::string& bytes) {
    up_req.receive_request(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  void response(const std::string& bytes) {
    up_req.on_response_data(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  // What the upstream connection pulls now.
  std::string pull_request(size_t max = 1 << 20, uint32_t* flags = nullptr) {
    return pull([&](size_t m, uint32_t* f) { return up_req.request_body_length(m, f); },
                [&](http2::WriteBuffer& o, size_t n) { return up_req.take_request_body(o, n); }, max, flags);
  }
  std::string pull_response(size_t max = 1 << 20, uint32_t* flags = nullptr) {
    return pull([&](size_t m, uint32_t* f) { return up_req.response_body_length(m, f); },
                [&](http2::WriteBuffer& o, size_t n) { return up_req.take_response_body(o, n); }, max, flags);
  }
  FakeStream down;
  FakeStream up;  // only its StreamPeer half is used
  FakeEvents events;
  UpstreamRequest up_req;
};

http2::HeaderMap response_headers() {
  http2::HeaderMap h;
  h.add(":status", "200");
  h.add("content-type", "application/grpc");
  return h;
}

http2::HeaderMap trailers(const char* status) {
  http2::HeaderMap t;
  t.add("grpc-status", status);
  return t;
}

}  // namespace

TEST_CASE("UpstreamRequest: request bytes are held until attached, then forwarded and consumed after forward") {
  Relay r;
  const std::string msg = request_message("s1", "alice", field(3, std::string(3000, 'p')));
  r.request(msg.substr(0, 100));
  CHECK(r.up_req.request_queued() == 100);
  CHECK(r.down.consumed == 0);  // nothing left yet: the window stays closed
  r.up_req.attach(r.up, "b:1");
  r.request(msg.substr(100));
  r.up_req.resume_upstream();
  CHECK(r.up.resumes == 1);
  std::string got = r.pull_request(1000);
  CHECK(got == msg.substr(0, 1000));
  CHECK(r.down.consumed == 1000);  // exactly what left
  r.up_req.end_request();
  uint32_t flags = 0;
  got += r.pull_request(1 << 20, &flags);
  CHECK(got == msg);
  CHECK((flags & NGHTTP2_DATA_FLAG_EOF) != 0);
  CHECK(r.down.consumed == msg.size());
  CHECK(r.up_req.request().consumed == r.up_req.request().received);
}

TEST_CASE("UpstreamRequest: an empty request queue defers until bytes or the end arrive") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  uint32_t flags = 0;
  CHECK(r.up_req.request_body_length(100, &flags) == NGHTTP2_ERR_DEFERRED);
  r.up_req.end_request();
  CHECK(r.up_req.request_body_length(100, &flags) == 0);
  CHECK((flags & NGHTTP2_DATA_FLAG_EOF) != 0);
}

TEST_CASE("UpstreamRequest: the response is relayed untouched and consumed on the backend once the client took it") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  r.up_req.on_response_headers(response_headers(), false);
  CHECK(r.events.answered == 1);
  REQUIRE(r.down.headers.size() == 1);
  CHECK(r.down.headers_with_body[0]);
  const std::string body = grpcwire::encode_prefix(4) + "abcd" + grpcwire::encode_prefix(2) + "ef";
  r.response(body.substr(0, 7));
  r.response(body.substr(7));
  CHECK(r.up.consumed == 0);
  CHECK(r.down.resumes == 2);
  CHECK(r.pull_response(5) == body.substr(0, 5));
  CHECK(r.up.consumed == 5);
  r.up_req.on_response_trailers(trailers("0"));
  uint32_t flags = 0;
  CHECK(r.pull_response(1 << 20, &flags) == body.substr(5));
  CHECK((flags & NGHTTP2_DATA_FLAG_EOF) != 0);
  CHECK((flags & NGHTTP2_DATA_FLAG_NO_END_STREAM) != 0);
  REQUIRE(r.down.trailers.size() == 1);
  CHECK(*r.down.trailers[0].find("grpc-status") == "0");
  CHECK(r.up_req.status() == grpcwire::StatusCode::kOk);
  CHECK(r.up.consumed == body.size());
  CHECK(r.up_req.bytes_out() == body.size());
  r.up_req.on_upstream_closed(0, "");
  CHECK(r.events.failed.empty());
}

TEST_CASE("UpstreamRequest: a client that goes away returns every byte either way, exactly once") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  r.request(std::string(700, 'q'));
  CHECK(r.pull_request(200).size() == 200);
  r.up_req.on_response_headers(response_headers(), false);
  r.response(grpcwire::encode_prefix(1000) + std::string(500, 'r'));
  CHECK(r.pull_response(100).size() == 100);
  r.up_req.downstream_closed();
  CHECK(r.down.consumed == 700);
  CHECK(r.up.consumed == 505);
  REQUIRE(r.up.resets.size() == 1);
  CHECK(r.up.resets[0] == NGHTTP2_CANCEL);
  CHECK(r.up_req.all_consumed());
  // Late upstream bytes go straight back.
  r.response(std::string(50, 'r'));
  CHECK(r.up.consumed == 555);
  CHECK(r.up_req.all_consumed());
}

TEST_CASE("UpstreamRequest: a local reply before response headers is trailers-only and drops the request") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  r.request(std::string(300, 'q'));
  r.up_req.reply(grpcwire::StatusCode::kResourceExhausted, "quota 100%");
  CHECK(r.down.consumed == 300);
  REQUIRE(r.down.headers.size() == 1);
  CHECK_FALSE(r.down.headers_with_body[0]);
  CHECK(r.down.header(0, ":status") == "200");
  CHECK(r.down.header(0, "grpc-status") == "8");
  CHECK(r.down.header(0, "grpc-message") == "quota 100%25");
  CHECK(r.up.resets == std::vector<uint32_t>{NGHTTP2_CANCEL});
  CHECK(r.up_req.status() == grpcwire::StatusCode::kResourceExhausted);
  CHECK_FALSE(r.up_req.accepting_request());
  uint32_t flags = 0;
  CHECK(r.up_req.request_body_length(100, &flags) == NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE);
  // A second reply changes nothing.
  r.up_req.reply(grpcwire::StatusCode::kUnavailable, "late");
  CHECK(r.down.headers.size() == 1);
  r.up_req.drop_request(40);
  CHECK(r.down.consumed == 340);
}

TEST_CASE("UpstreamRequest: a local reply mid-response ends with trailers and drops a torn message") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  r.up_req.on_response_headers(response_headers(), false);
  const std::string whole = grpcwire::encode_prefix(3) + "abc";
  r.response(whole + grpcwire::encode_prefix(10) + "01234");  // the second message is torn
  r.up_req.reply(grpcwire::StatusCode::kUnavailable, "backend gone");
  CHECK(r.up.consumed == whole.size() + 10);  // everything queued, consumed once
  uint32_t flags = 0;
  CHECK(r.pull_response(1 << 20, &flags).empty());
  CHECK((flags & NGHTTP2_DATA_FLAG_EOF) != 0);
  REQUIRE(r.down.trailers.size() == 1);
  CHECK(*r.down.trailers[0].find("grpc-status") == "14");
  CHECK(*r.down.trailers[0].find("grpc-message") == "backend gone");
  CHECK(r.up_req.bytes_out() == 0);
}

TEST_CASE("UpstreamRequest: the user_context rewrite's added bytes are forwarded but never consumed") {
  Relay r;
  r.request(std::string(20, 'a'));
  std::string head = r.up_req.take_request_head();
  CHECK(head.size() == 20);
  r.up_req.put_request_head(head + "+7bytes", 7);
  r.up_req.attach(r.up, "b:1");
  CHECK(r.pull_request().size() == 27);
  CHECK(r.down.consumed == 20);
  // A rewrite that shrinks the head consumes the removed bytes at once.
  r.request(std::string(10, 'b'));
  head = r.up_req.take_request_head();
  r.up_req.put_request_head(head.substr(0, 6), -4);
  CHECK(r.down.consumed == 24);
  CHECK(r.pull_request().size() == 6);
  CHECK(r.down.consumed == 30);
}

TEST_CASE("UpstreamRequest: upstream failures become UNAVAILABLE naming the backend; REFUSED_STREAM is passed on") {
  SUBCASE("reset") {
    Relay r;
    r.up_req.attach(r.up, "b:1");
    r.up_req.on_upstream_closed(NGHTTP2_INTERNAL_ERROR, "");
    REQUIRE(r.events.failed.size() == 1);
    CHECK(r.events.failed[0].code == grpcwire::StatusCode::kUnavailable);
    CHECK(r.events.failed[0].message.find("backend b:1 reset the stream") == 0);
    CHECK(r.events.failures.empty());
  }
  SUBCASE("connection lost") {
    Relay r;
    r.up_req.attach(r.up, "b:1");
    r.up_req.on_upstream_closed(NGHTTP2_CANCEL, "connection reset by peer");
    REQUIRE(r.events.failures.size() == 1);
    REQUIRE(r.events.failed.size() == 1);
    CHECK(r.events.failed[0].message == "backend b:1 closed the connection (connection reset by peer) during Config");
  }
  SUBCASE("refused") {
    Relay r;
    r.up_req.attach(r.up, "b:1");
    r.up_req.on_upstream_closed(NGHTTP2_REFUSED_STREAM, "");
    CHECK(r.events.failed.empty());
    CHECK(r.down.resets == std::vector<uint32_t>{NGHTTP2_REFUSED_STREAM});
    CHECK(r.up_req.replied());
    CHECK_FALSE(r.up_req.status());
  }
  SUBCASE("after the response ended nothing is reported") {
    Relay r;
    r.up_req.attach(r.up, "b:1");
    r.up_req.on_response_headers(response_headers(), false);
    r.up_req.on_response_trailers(trailers("14"));
    CHECK(r.events.failures == std::vector<std::string>{"the backend answered UNAVAILABLE"});
    r.up_req.on_upstream_closed(NGHTTP2_CANCEL, "");
    CHECK(r.events.failed.empty());
  }
}

TEST_CASE("UpstreamRequest: a response message over the limit is dropped and reported") {
  FakeStream down, up;
  FakeEvents events;
  UpstreamRequest req(down, events, 1 << 20, "Config");
  req.set_max_response_bytes(10);
  req.attach(up, "b:1");
  req.on_response_headers(response_headers(), false);
  const std::string big = grpcwire::encode_prefix(11) + "0123456789A";
  req.on_response_data(reinterpret_cast<const uint8_t*>(big.data()), big.size());
  CHECK(events.too_large == 1);
  CHECK(up.consumed == big.size());
  CHECK(req.response_framer().last_header().length == 11);
  req.downstream_closed();
  CHECK(req.all_consumed());
}

TEST_CASE("UpstreamRequest: idle upstream is the backend's fault only when the client waits for it") {
  Relay r;
  r.up_req.attach(r.up, "b:1");
  // The client is still sending its request: not the backend's silence.
  CHECK_FALSE(r.up_req.on_upstream_idle(std::chrono::milliseconds(1000)));
  r.up_req.end_request();
  CHECK(r.up_req.on_upstream_idle(std::chrono::milliseconds(1500)));
  REQUIRE(r.events.failed.size() == 1);
  CHECK(r.events.failed[0].message == "backend b:1 sent nothing for 1500 ms during Config (upstream.idle_timeout)");
}

TEST_CASE("UpstreamRequest: a reply with a message (health check) queues the gateway's own bytes") {
  Relay r;
  const uint8_t payload[] = {0x08, 0x01};
  r.up_req.reply_message(payload, sizeof payload);
  REQUIRE(r.down.headers.size() == 1);
  CHECK(r.down.headers_with_body[0]);
  uint32_t flags = 0;
  CHECK(r.pull_response(1 << 20, &flags) == grpcwire::encode_prefix(2) + "\x08\x01");
  REQUIRE(r.down.trailers.size() == 1);
  CHECK(*r.down.trailers[0].find("grpc-status") == "0");
  CHECK_FALSE(r.down.trailers[0].find("grpc-message"));
  CHECK(r.up.consumed == 0);  // nothing came from a backend
}

TEST_CASE("UpstreamRequest: bytes dropped before any upstream exists are consumed at once") {
  Relay r;
  r.up_req.drop_request(123);
  CHECK(r.down.consumed == 123);
  CHECK(r.up_req.request().received == 123);
  CHECK(r.up_req.all_consumed());
}
