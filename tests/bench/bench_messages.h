// Spark Connect messages for the benchmark: realistic request envelopes for the load
// generator, and the backend's envelope scan and responses. Built with the view protos
// (proto/spark_view.proto) plus hand-written wire bytes for the fields the views leave
// out (the plan, request options), so that fields appear in field-number order the way
// the Spark clients serialize them.
//
// Pure functions on bytes; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace sparkgate::bench {

// The routing envelope of one request: what a PySpark client puts in every message.
struct Envelope {
  std::string session_id;  // a UUID
  std::string user_id;
  std::string client_type;
};

// The client_type PySpark 4.x sends.
inline constexpr std::string_view kPythonClientType =
    "_SPARK_CONNECT_PYTHON spark/4.0.0 os/linux python/3.11.2";

// A UUID (version 4 layout) from `rng`.
std::string make_uuid(std::mt19937_64& rng);

// ConfigRequest { session_id, user_context, operation = get(keys), client_type }.
std::string config_request(const Envelope& env);
// ExecutePlanRequest { session_id, user_context, plan (a small range relation),
// client_type, request_options (reattachable), operation_id }.
std::string execute_plan_request(const Envelope& env, const std::string& operation_id);
// AnalyzePlanRequest { session_id, user_context, client_type, schema(plan) }.
std::string analyze_plan_request(const Envelope& env);
// ReleaseSessionRequest { session_id, user_context, client_type }.
std::string release_session_request(const Envelope& env);

// Field 1 (session_id, length-delimited) of a request or of a Config/ExecutePlan/
// AnalyzePlan/ReleaseSession response, read with a tag scan that stops at the first
// occurrence; nullopt if `bytes` (which may be a prefix of the message) does not hold it.
std::optional<std::string> scan_field1(std::string_view bytes);

// Serialized unary responses carrying `session_id` and `server_side_session_id` in the
// fields Spark uses for that response type. `rpc` is the method name ("Config"); an
// unknown name gets a GetStatusResponse-shaped answer (fields 1 / 2).
std::string unary_response(std::string_view rpc, const std::string& session_id,
                           const std::string& server_side_session_id);

// The bytes around the Arrow payload of one ExecutePlanResponse, in Spark's field order:
//   head = session_id(1) + arrow_batch(2) tag, length, row_count(1), data(2) tag + length
//   (payload: `data_bytes` bytes, sent separately without a copy)
//   tail = operation_id(12) + response_id(13) + [result_complete(14)] +
//          server_side_session_id(15)
struct ExecuteResponseFrame {
  std::string head;
  std::string tail;
};
ExecuteResponseFrame execute_response_frame(const std::string& session_id,
                                            const std::string& server_side_session_id,
                                            const std::string& operation_id,
                                            const std::string& response_id, int64_t row_count,
                                            size_t data_bytes, bool last);

}  // namespace sparkgate::bench
