#include "trace/rpc_trace.h"

#include <charconv>

namespace sparkgate::trace {

namespace {

constexpr std::string_view kService = "spark.connect.SparkConnectService";

void set_if(Span& s, std::string_view key, std::string_view value) {
  if (!value.empty()) s.set(key, std::string(value));
}

}  // namespace

void split_host_port(std::string_view text, std::string_view& host, int64_t& port) {
  host = text;
  port = 0;
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return;
  std::string_view h = text.substr(0, colon), p = text.substr(colon + 1);
  if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  else if (h.find(':') != std::string_view::npos) return;  // a bare IPv6 address without a port
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || ptr != p.data() + p.size()) return;
  host = h;
  port = value;
}

RpcTrace::RpcTrace(const SpanContext* parent, const TraceId& trace_id) {
  server_.trace_id = trace_id;
  server_.span_id = new_span_id();
  if (parent) {
    server_.parent_span_id = parent->span_id;
    server_.has_parent = true;
  }
  server_.kind = SpanKind::kServer;
  server_.start_unix_nano = unix_nanos_now();
  server_.attributes.reserve(14);
  client_.trace_id = trace_id;
  client_.span_id = new_span_id();
  client_.parent_span_id = server_.span_id;
  client_.has_parent = true;
  client_.kind = SpanKind::kClient;
}

void RpcTrace::wait_started(std::string_view what) {
  wait_ended();
  wait_.emplace();
  Span& w = *wait_;
  w.trace_id = server_.trace_id;
  w.span_id = new_span_id();
  w.parent_span_id = server_.span_id;
  w.has_parent = true;
  w.kind = SpanKind::kInternal;
  w.name.reserve(16 + what.size());
  w.name.append("sparkgate wait: ").append(what);
  w.start_unix_nano = unix_nanos_now();
}

void RpcTrace::wait_ended() {
  if (!wait_) return;
  wait_->end_unix_nano = unix_nanos_now();
  waits_.push_back(std::move(*wait_));
  wait_.reset();
}

void RpcTrace::client_started() {
  if (client_started_) return;
  client_started_ = true;
  client_.start_unix_nano = unix_nanos_now();
}

void RpcTrace::client_replaced(std::string_view why) {
  std::string name = "backend unreachable, session placed elsewhere: ";
  name.append(why.substr(0, 200));
  client_.events.push_back({unix_nanos_now(), std::move(name)});
}

void RpcTrace::event(std::string name) { server_.events.push_back({unix_nanos_now(), std::move(name)}); }

void RpcTrace::finish(const RpcOutcome& o, SpanQueue& queue) {
  wait_ended();
  const uint64_t now = unix_nanos_now();
  std::string name;
  if (!o.method.empty()) {
    name.reserve(kService.size() + 1 + o.method.size());
    name.append(kService).append("/").append(o.method);
  } else {
    // Not a Spark RPC (refused by the request check): the path, bounded.
    std::string_view p = o.path.substr(0, 128);
    if (!p.empty() && p.front() == '/') p.remove_prefix(1);
    name = p.empty() ? std::string("sparkgate refused request") : std::string(p);
  }
  const bool error = o.grpc_code != 0;
  std::string status;
  if (error) {
    status = o.status_message.substr(0, 512);
  }

  Span& s = server_;
  s.name = name;
  s.end_unix_nano = now;
  s.set("rpc.system", std::string("grpc"));
  if (!o.method.empty()) {
    s.set("rpc.service", std::string(kService));
    s.set("rpc.method", std::string(o.method));
  }
  s.set("rpc.grpc.status_code", static_cast<int64_t>(o.grpc_code));
  set_if(s, "spark.session_id", o.session_id);
  set_if(s, "spark.operation_id", o.operation_id);
  set_if(s, "enduser.id", o.user);
  set_if(s, "sparkgate.cluster", o.cluster);
  set_if(s, "sparkgate.backend", o.backend);
  set_if(s, "sparkgate.request_id", o.request_id);
  if (!o.peer.empty()) {
    std::string_view host;
    int64_t port = 0;
    split_host_port(o.peer, host, port);
    s.set("client.address", std::string(host));
    if (port) s.set("client.port", port);
  }
  s.error = error;
  s.status_message = status;

  if (client_started_) {
    Span& c = client_;
    c.name = name;
    c.end_unix_nano = now;
    c.set("rpc.system", std::string("grpc"));
    if (!o.method.empty()) {
      c.set("rpc.service", std::string(kService));
      c.set("rpc.method", std::string(o.method));
    }
    c.set("rpc.grpc.status_code", static_cast<int64_t>(o.grpc_code));
    if (!o.backend_address.empty()) {
      std::string_view host;
      int64_t port = 0;
      split_host_port(o.backend_address, host, port);
      c.set("server.address", std::string(host));
      if (port) c.set("server.port", port);
    }
    set_if(c, "sparkgate.backend", o.backend);
    c.error = error;
    c.status_message = status;
    queue.submit(std::move(c));
  }
  for (auto& w : waits_) queue.submit(std::move(w));
  waits_.clear();
  queue.submit(std::move(server_));
}

}  // namespace sparkgate::trace
