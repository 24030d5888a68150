// Request decoding and response building for fake_spark_server, with the view protos
// (proto/spark_view.proto). Pure functions on bytes; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sparkgate::fake {

enum class Shape { kUnary, kClientStreaming, kServerStreaming };

// The call shape of a SparkConnectService method name ("ExecutePlan"); nullopt if the
// service has no such method.
std::optional<Shape> shape_of(std::string_view rpc);

// The parts of a request the fake needs to build its answer.
struct RequestInfo {
  std::string session_id;
  std::string operation_id;    // ExecutePlan (optional), Reattach, ReleaseExecute
  std::string new_session_id;  // CloneSession
};

// Decodes a request message of method `rpc` with its view into `info`. False if the
// bytes do not parse or `rpc` is unknown.
bool inspect_request(std::string_view rpc, const std::string& bytes, RequestInfo& info);

// The serialized response of a unary or client-streaming method `rpc`, carrying
// info.session_id and `server_side_session_id` in the fields Spark uses for that type.
std::string build_unary_response(std::string_view rpc, const RequestInfo& info,
                                 const std::string& server_side_session_id);

// Appends unknown length-delimited field 1000 so that the serialized message `msg` becomes
// `target` bytes long (or as close as the length varint allows); does nothing if `msg` is
// already that long.
void pad_to(std::string& msg, size_t target);

// n bytes where byte j is static_cast<char>(j * 7 + 1): the arrow_batch.data content.
std::string pattern_bytes(size_t n);

// A random uuid-shaped string (8-4-4-4-12 hex digits).
std::string make_uuidish();

// Lower-case hex of n bytes.
std::string to_hex(const unsigned char* data, size_t n);

}  // namespace sparkgate::fake
