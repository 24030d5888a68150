// The spans of one traced RPC, as the proxy builds them:
//   SERVER  spark.connect.SparkConnectService/<Rpc>   (child of the client's traceparent)
//     INTERNAL "sparkgate wait: <what>"                (each time the pipeline waits)
//     CLIENT   spark.connect.SparkConnectService/<Rpc> (the call to the backend; its
//                                                       context is the traceparent the
//                                                       backend receives)
// Created only for an RPC that is sampled (trace::sample) while tracing is on; an RPC
// that is not traced has no RpcTrace at all. finish() hands every span to the queue.
//
// Threading: one RPC's worker thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "trace/span.h"
#include "trace/span_queue.h"

namespace sparkgate::trace {

// What the finished RPC tells its spans (views valid during finish()).
struct RpcOutcome {
  std::string_view method;        // "ExecutePlan"; "" when the path was not a Spark RPC
  std::string_view path;          // the request's :path, for a span name when method is ""
  int grpc_code = 2;
  std::string_view status_message;  // the gateway's own reply message, or ""
  std::string_view session_id, operation_id, user, cluster, backend, request_id;
  std::string_view peer;          // the client's "ip:port" / "[v6]:port"
  std::string_view backend_address;  // "host:port" of the backend called, or ""
};

class RpcTrace {
 public:
  // `parent`: the client's valid traceparent, or null (a new trace, `trace_id`).
  RpcTrace(const SpanContext* parent, const TraceId& trace_id);

  // The traceparent the backend receives: this trace, the CLIENT span's id, sampled.
  SpanContext client_context() const { return {server_.trace_id, client_.span_id, 1}; }

  // The pipeline started to wait for `what` ("quotas", "routing", "upstream connection",
  // ...) / stopped waiting. A wait still open at finish() ends there.
  void wait_started(std::string_view what);
  void wait_ended();
  // The call to the backend starts (the backend is chosen) / starts again after the
  // first backend was unreachable and the session was placed elsewhere.
  void client_started();
  void client_replaced(std::string_view why);
  // An event on the SERVER span, now.
  void event(std::string name);

  // Ends every span now with the RPC's outcome and submits them to `queue` (which counts
  // drops). Call once.
  void finish(const RpcOutcome& outcome, SpanQueue& queue);

 private:
  Span server_;
  Span client_;  // its ids are fixed at construction; sent only once client_started()
  bool client_started_ = false;
  std::optional<Span> wait_;
  std::vector<Span> waits_;  // ended waits, submitted with the rest
};

// "ip:port" / "[v6]:port" → address and port (port 0 when absent).
void split_host_port(std::string_view text, std::string_view& host, int64_t& port);

}  // namespace sparkgate::trace
