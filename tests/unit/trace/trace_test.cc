// trace/: traceparent parsing and formatting, ids, the sampling decision, the span queue
// (bounded, drops counted), the per-RPC spans, and the OTLP encoding decoded back field
// by field with opentelemetry-proto's field numbers and wire types.
#include <doctest/doctest.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "trace/otlp_encode.h"
#include "trace/rpc_trace.h"
#include "trace/span.h"
#include "trace/span_queue.h"

using namespace sparkgate::trace;

namespace {

// A protobuf message decoded without a schema: field number → its values (the raw bytes
// of a length-delimited field, or the integer of a varint/fixed field), with the wire
// type each came with.
struct Decoded {
  std::multimap<int, std::string> bytes;
  std::multimap<int, uint64_t> ints;
  std::map<int, int> wire_type;
  std::vector<std::string> all(int field) const {
    std::vector<std::string> out;
    for (auto [a, b] = bytes.equal_range(field); a != b; ++a) out.push_back(a->second);
    return out;
  }
  std::string one(int field) const {
    auto v = all(field);
    REQUIRE(v.size() == 1);
    return v[0];
  }
  uint64_t num(int field) const {
    auto it = ints.find(field);
    REQUIRE(it != ints.end());
    return it->second;
  }
};

Decoded decode(const std::string& data) {
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(data.data()), static_cast<int>(data.size()));
  Decoded d;
  while (uint32_t tag = in.ReadTag()) {
    const int field = static_cast<int>(WireFormatLite::GetTagFieldNumber(tag));
    const int type = WireFormatLite::GetTagWireType(tag);
    d.wire_type[field] = type;
    switch (type) {
      case WireFormatLite::WIRETYPE_VARINT: {
        uint64_t v = 0;
        REQUIRE(in.ReadVarint64(&v));
        d.ints.emplace(field, v);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64: {
        uint64_t v = 0;
        REQUIRE(in.ReadLittleEndian64(&v));
        d.ints.emplace(field, v);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED32: {
        uint32_t v = 0;
        REQUIRE(in.ReadLittleEndian32(&v));
        d.ints.emplace(field, v);
        break;
      }
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint32_t n = 0;
        REQUIRE(in.ReadVarint32(&n));
        std::string s;
        REQUIRE(in.ReadString(&s, static_cast<int>(n)));
        d.bytes.emplace(field, s);
        break;
      }
      default:
        FAIL("unexpected wire type " << type);
    }
  }
  return d;
}

// KeyValue list (key = 1, value = 2 → AnyValue: string 1, bool 2, int 3) → key → value text.
std::map<std::string, std::string> attributes(const std::vector<std::string>& kvs) {
  std::map<std::string, std::string> out;
  for (const auto& kv : kvs) {
    auto d = decode(kv);
    auto value = decode(d.one(2));
    if (!value.all(1).empty()) out[d.one(1)] = value.one(1);
    else if (value.ints.count(3)) out[d.one(1)] = std::to_string(static_cast<int64_t>(value.num(3)));
    else if (value.ints.count(2)) out[d.one(1)] = value.num(2) ? "true" : "false";
  }
  return out;
}

std::string raw(const uint8_t* p, size_t n) { return std::string(reinterpret_cast<const char*>(p), n); }

}  // namespace

TEST_CASE("traceparent: parse and format round-trip, invalid forms refused") {
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto c = parse_traceparent(tp);
  REQUIRE(c);
  CHECK(c->sampled());
  CHECK(to_hex(c->trace_id.data(), 16) == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(to_hex(c->span_id.data(), 8) == "00f067aa0ba902b7");
  CHECK(format_traceparent(*c) == tp);
  CHECK_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")->sampled());
  // A later version may carry more after a '-'.
  CHECK(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                          "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) {
    INFO(bad);
    CHECK_FALSE(parse_traceparent(bad));
  }
}

TEST_CASE("ids are non-zero and distinct") {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    auto t = new_trace_id();
    auto s = new_span_id();
    CHECK(seen.insert(to_hex(t.data(), 16)).second);
    CHECK(seen.insert(to_hex(s.data(), 8)).second);
  }
}

TEST_CASE("sampling: a valid parent's flag wins; otherwise the ratio decides") {
  SpanContext sampled{new_trace_id(), new_span_id(), 1};
  SpanContext unsampled{new_trace_id(), new_span_id(), 0};
  CHECK(sample(&sampled, sampled.trace_id, 0.0));
  CHECK_FALSE(sample(&unsampled, unsampled.trace_id, 1.0));
  int yes = 0;
  for (int i = 0; i < 20000; ++i) {
    auto id = new_trace_id();
    CHECK(sample(nullptr, id, 1.0));
    CHECK_FALSE(sample(nullptr, id, 0.0));
    yes += sample(nullptr, id, 0.25);
  }
  // 25% of 20000 = 5000, well within 6 sigma (~370).
  CHECK(yes > 4600);
  CHECK(yes < 5400);
  // The same trace id decides the same way every time (every hop agrees).
  auto id = new_trace_id();
  bool first = sample(nullptr, id, 0.5);
  for (int i = 0; i < 10; ++i) CHECK(sample(nullptr, id, 0.5) == first);
}

TEST_CASE("span queue: bounded, drops counted, pops in order, batch-ready once per batch") {
  prometheus::Registry registry;
  auto& dropped = prometheus::BuildCounter().Name("dropped").Register(registry).Add({});
  SpanQueue q(3, &dropped);
  int ready = 0;
  q.configure(3, 2);
  q.set_on_batch_ready([&] { ++ready; });
  for (int i = 0; i < 5; ++i) {
    Span s;
    s.name = "s" + std::to_string(i);
    CHECK(q.submit(std::move(s)) == (i < 3));
  }
  CHECK(dropped.Value() == 2);
  CHECK(ready == 1);
  CHECK(q.size() == 3);
  std::vector<Span> out;
  CHECK(q.pop(out, 2) == 2);
  CHECK(out[0].name == "s0");
  CHECK(out[1].name == "s1");
  Span s;
  s.name = "s5";
  CHECK(q.submit(std::move(s)));
  CHECK(ready == 2);
  CHECK(q.pop(out, 10) == 2);
  CHECK(out[2].name == "s2");
  CHECK(out[3].name == "s5");
  CHECK(q.size() == 0);
  // Shrinking keeps what was queued but refuses more.
  for (int i = 0; i < 3; ++i) q.submit(Span{});
  q.configure(1, 1);
  CHECK(q.size() == 3);
  CHECK_FALSE(q.submit(Span{}));
  CHECK(q.pop(out, 10) == 3);
  CHECK(q.submit(Span{}));
  CHECK(q.capacity() == 1);
}

TEST_CASE("an RPC's spans: server child of the client's parent, client child of server, waits") {
  prometheus::Registry registry;
  auto& dropped = prometheus::BuildCounter().Name("dropped").Register(registry).Add({});
  SpanQueue q(100, &dropped);
  auto parent = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  RpcTrace t(&*parent, parent->trace_id);
  const SpanContext forwarded = t.client_context();
  CHECK(forwarded.trace_id == parent->trace_id);
  CHECK(forwarded.sampled());
  t.wait_started("quotas");
  t.wait_ended();
  t.client_started();
  t.wait_started("upstream connection");  // ended by finish
  RpcOutcome o;
  o.method = "ExecutePlan";
  o.grpc_code = 14;
  o.status_message = "UNAVAILABLE";
  o.session_id = "sess-1";
  o.operation_id = "op-1";
  o.user = "alice";
  o.cluster = "etl";
  o.backend = "etl/10.0.0.5:15002";
  o.peer = "[::1]:5555";
  o.backend_address = "10.0.0.5:15002";
  t.finish(o, q);
  std::vector<Span> spans;
  REQUIRE(q.pop(spans, 10) == 4);
  const Span* server = nullptr;
  const Span* client = nullptr;
  std::vector<const Span*> waits;
  for (const auto& s : spans) {
    if (s.kind == SpanKind::kServer) server = &s;
    else if (s.kind == SpanKind::kClient) client = &s;
    else waits.push_back(&s);
  }
  REQUIRE(server);
  REQUIRE(client);
  REQUIRE(waits.size() == 2);
  CHECK(server->name == "spark.connect.SparkConnectService/ExecutePlan");
  CHECK(server->has_parent);
  CHECK(server->parent_span_id == parent->span_id);
  CHECK(client->span_id == forwarded.span_id);
  CHECK(client->parent_span_id == server->span_id);
  CHECK(waits[0]->name == "sparkgate wait: quotas");
  CHECK(waits[1]->name == "sparkgate wait: upstream connection");
  CHECK(waits[1]->end_unix_nano >= waits[1]->start_unix_nano);
  for (const auto* w : waits) CHECK(w->parent_span_id == server->span_id);
  CHECK(server->error);
  CHECK(client->error);
  CHECK(server->find("rpc.grpc.status_code")->number == 14);
  CHECK(server->find("client.address")->text == "::1");
  CHECK(server->find("client.port")->number == 5555);
  CHECK(server->find("enduser.id")->text == "alice");
  CHECK(server->find("spark.operation_id")->text == "op-1");
  CHECK(client->find("server.address")->text == "10.0.0.5");
  CHECK(client->find("server.port")->number == 15002);
  CHECK(server->end_unix_nano >= server->start_unix_nano);
}

TEST_CASE("an RPC refused before routing has no CLIENT span and an OK one no error") {
  SpanQueue q(10, nullptr);
  RpcTrace t(nullptr, new_trace_id());
  RpcOutcome o;
  o.method = "Config";
  o.grpc_code = 0;
  t.finish(o, q);
  std::vector<Span> spans;
  REQUIRE(q.pop(spans, 10) == 1);
  CHECK(spans[0].kind == SpanKind::kServer);
  CHECK_FALSE(spans[0].has_parent);
  CHECK_FALSE(spans[0].error);
  CHECK(spans[0].find("spark.operation_id") == nullptr);
}

TEST_CASE("OTLP encoding decodes with opentelemetry-proto's field numbers") {
  Span s;
  s.trace_id = new_trace_id();
  s.span_id = new_span_id();
  s.parent_span_id = new_span_id();
  s.has_parent = true;
  s.name = "spark.connect.SparkConnectService/AnalyzePlan";
  s.kind = SpanKind::kServer;
  s.start_unix_nano = 1700000000000000001ull;
  s.end_unix_nano = 1700000000500000002ull;
  s.set("rpc.system", std::string("grpc"));
  s.set("rpc.grpc.status_code", int64_t{3});
  s.set_bool("sparkgate.test", true);
  s.events.push_back({1700000000100000000ull, "sparkgate reply: INVALID_ARGUMENT"});
  s.error = true;
  s.status_message = "INVALID_ARGUMENT";
  Span root;
  root.trace_id = s.trace_id;
  root.span_id = new_span_id();
  root.kind = SpanKind::kClient;
  root.name = "c";
  ResourceInfo res;
  res.service_name = "gw-test";
  res.service_version = "1.2.3";
  const std::string body = encode_export_request({s, root}, res);

  // ExportTraceServiceRequest.resource_spans = 1
  auto req = decode(body);
  auto rs = decode(req.one(1));
  // ResourceSpans.resource = 1 → Resource.attributes = 1
  auto resource_attrs = attributes(decode(rs.one(1)).all(1));
  CHECK(resource_attrs["service.name"] == "gw-test");
  CHECK(resource_attrs["service.version"] == "1.2.3");
  // ResourceSpans.scope_spans = 2 → ScopeSpans.scope = 1 (name = 1), spans = 2
  auto ss = decode(rs.one(2));
  CHECK(decode(ss.one(1)).one(1) == "sparkgate");
  auto spans = ss.all(2);
  REQUIRE(spans.size() == 2);
  auto sp = decode(spans[0]);
  CHECK(sp.one(1) == raw(s.trace_id.data(), 16));        // trace_id = 1 (bytes)
  CHECK(sp.one(2) == raw(s.span_id.data(), 8));          // span_id = 2
  CHECK(sp.one(4) == raw(s.parent_span_id.data(), 8));   // parent_span_id = 4
  CHECK(sp.one(5) == s.name);                            // name = 5
  CHECK(sp.num(6) == 2);                                 // kind = 6: SPAN_KIND_SERVER
  using google::protobuf::internal::WireFormatLite;
  CHECK(sp.wire_type[7] == WireFormatLite::WIRETYPE_FIXED64);  // start_time_unix_nano fixed64
  CHECK(sp.num(7) == s.start_unix_nano);
  CHECK(sp.num(8) == s.end_unix_nano);
  CHECK(sp.wire_type[16] == WireFormatLite::WIRETYPE_FIXED32);  // flags = 16 fixed32
  CHECK(sp.num(16) == 1);
  auto attrs = attributes(sp.all(9));                    // attributes = 9
  CHECK(attrs["rpc.system"] == "grpc");
  CHECK(attrs["rpc.grpc.status_code"] == "3");
  CHECK(attrs["sparkgate.test"] == "true");
  auto ev = decode(sp.one(11));                          // events = 11
  CHECK(ev.num(1) == 1700000000100000000ull);            // time_unix_nano = 1 (fixed64)
  CHECK(ev.wire_type[1] == WireFormatLite::WIRETYPE_FIXED64);
  CHECK(ev.one(2) == "sparkgate reply: INVALID_ARGUMENT");
  auto status = decode(sp.one(15));                      // status = 15
  CHECK(status.num(3) == 2);                             // code = 3: STATUS_CODE_ERROR
  CHECK(status.one(2) == "INVALID_ARGUMENT");            // message = 2
  auto sp2 = decode(spans[1]);
  CHECK(sp2.all(4).empty());                             // a root: no parent_span_id
  CHECK(sp2.num(6) == 3);                                // SPAN_KIND_CLIENT
  CHECK(sp2.all(15).empty());                            // status unset
}

TEST_CASE("the partial_success of an export response") {
  // ExportTraceServiceResponse{partial_success(1){rejected_spans(1)=7, error_message(2)="x"}}
  const std::string body("\x0a\x05\x08\x07\x12\x01x", 7);
  std::string message;
  CHECK(rejected_spans(body, message) == 7);
  CHECK(message == "x");
  CHECK(rejected_spans("", message) == 0);
  CHECK(rejected_spans("\xff\xff", message) == 0);
}

TEST_CASE("split_host_port") {
  std::string_view host;
  int64_t port = 0;
  split_host_port("10.1.2.3:80", host, port);
  CHECK(host == "10.1.2.3");
  CHECK(port == 80);
  split_host_port("[fe80::1]:443", host, port);
  CHECK(host == "fe80::1");
  CHECK(port == 443);
  split_host_port("fe80::1", host, port);
  CHECK(host == "fe80::1");
  CHECK(port == 0);
}
