#include "bench_messages.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>

#include "spark_view.pb.h"

namespace sparkgate::bench {
namespace {

namespace view = sparkgate::view;
namespace pbio = google::protobuf::io;

constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;

// Hand-written wire bytes for the fields the view protos do not declare.
class Wire {
 public:
  Wire& bytes(uint32_t field, std::string_view value) {
    pbio::StringOutputStream stream(&out_);
    pbio::CodedOutputStream coded(&stream);
    coded.WriteTag((field << 3) | kLengthDelimited);
    coded.WriteVarint64(value.size());
    coded.WriteRaw(value.data(), static_cast<int>(value.size()));
    return *this;
  }
  Wire& varint(uint32_t field, uint64_t value) {
    pbio::StringOutputStream stream(&out_);
    pbio::CodedOutputStream coded(&stream);
    coded.WriteTag((field << 3) | kVarint);
    coded.WriteVarint64(value);
    return *this;
  }
  // Only a tag and a length: the value follows separately.
  Wire& length_prefix(uint32_t field, uint64_t length) {
    pbio::StringOutputStream stream(&out_);
    pbio::CodedOutputStream coded(&stream);
    coded.WriteTag((field << 3) | kLengthDelimited);
    coded.WriteVarint64(length);
    return *this;
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Fields 1 and 2, which every request starts with.
template <typename Request>
std::string envelope_prefix(const Envelope& env) {
  Request msg;
  msg.set_session_id(env.session_id);
  msg.mutable_user_context()->set_user_id(env.user_id);
  msg.mutable_user_context()->set_user_name(env.user_id);
  return msg.SerializeAsString();
}

// Plan { root = Relation { common { plan_id }, sql { query } } }. Field numbers as in
// Spark's relations.proto; neither the gateway nor the backend decodes it.
std::string small_plan() {
  std::string common = Wire().varint(2, 7).take();
  std::string sql = Wire().bytes(1, "SELECT id, id * 2 AS twice FROM range(1000)").take();
  std::string relation = Wire().bytes(1, common).bytes(10, sql).take();
  return Wire().bytes(1, relation).take();
}

uint64_t varint_size(uint64_t v) {
  uint64_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

}  // namespace

std::string make_uuid(std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t hi = rng();
  const uint64_t lo = rng();
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out.push_back('-');
    uint64_t nibble = i < 16 ? (hi >> (4 * i)) & 0xf : (lo >> (4 * (i - 16))) & 0xf;
    if (i == 12) nibble = 4;                       // version 4
    if (i == 16) nibble = 8 | (nibble & 0x3);      // variant 10xx
    out.push_back(kHex[nibble]);
  }
  return out;
}

std::string config_request(const Envelope& env) {
  // operation (3) = Operation { get (2) = Get { keys (1) } }
  std::string get = Wire().bytes(1, "spark.sql.session.timeZone").bytes(1, "spark.sql.ansi.enabled").take();
  std::string operation = Wire().bytes(2, get).take();
  view::ConfigRequest tail;
  tail.set_client_type(std::string(env.client_type));
  return envelope_prefix<view::ConfigRequest>(env) + Wire().bytes(3, operation).take() +
         tail.SerializeAsString();
}

std::string execute_plan_request(const Envelope& env, const std::string& operation_id) {
  view::ExecutePlanRequest client_type;
  client_type.set_client_type(env.client_type);
  // request_options (5) = RequestOption { reattach_options (1) { reattachable (1) } }
  std::string reattach = Wire().varint(1, 1).take();
  std::string option = Wire().bytes(1, reattach).take();
  view::ExecutePlanRequest op;
  op.set_operation_id(operation_id);
  return envelope_prefix<view::ExecutePlanRequest>(env) + Wire().bytes(3, small_plan()).take() +
         client_type.SerializeAsString() + Wire().bytes(5, option).take() + op.SerializeAsString();
}

std::string analyze_plan_request(const Envelope& env) {
  view::AnalyzePlanRequest client_type;
  client_type.set_client_type(env.client_type);
  // schema (4) = Schema { plan (1) }
  std::string schema = Wire().bytes(1, small_plan()).take();
  return envelope_prefix<view::AnalyzePlanRequest>(env) + client_type.SerializeAsString() +
         Wire().bytes(4, schema).take();
}

std::string release_session_request(const Envelope& env) {
  view::ReleaseSessionRequest tail;
  tail.set_client_type(env.client_type);
  return envelope_prefix<view::ReleaseSessionRequest>(env) + tail.SerializeAsString();
}

std::optional<std::string> scan_field1(std::string_view bytes) {
  pbio::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                            static_cast<int>(bytes.size()));
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return std::nullopt;
    if (tag == ((1u << 3) | kLengthDelimited)) {
      std::string value;
      uint32_t length = 0;
      if (!in.ReadVarint32(&length) || !in.ReadString(&value, static_cast<int>(length))) {
        return std::nullopt;
      }
      return value;
    }
    if (!google::protobuf::internal::WireFormatLite::SkipField(&in, tag)) return std::nullopt;
  }
}

std::string unary_response(std::string_view rpc, const std::string& session_id,
                           const std::string& server_side_session_id) {
  auto with_ids = [&](auto msg) {
    msg.set_session_id(session_id);
    msg.set_server_side_session_id(server_side_session_id);
    return msg.SerializeAsString();
  };
  if (rpc == "Config") return with_ids(view::ConfigResponse{});
  if (rpc == "AnalyzePlan") return with_ids(view::AnalyzePlanResponse{});
  if (rpc == "ReleaseSession") return with_ids(view::ReleaseSessionResponse{});
  if (rpc == "AddArtifacts") return with_ids(view::AddArtifactsResponse{});
  if (rpc == "Interrupt") return with_ids(view::InterruptResponse{});
  if (rpc == "ReleaseExecute") return with_ids(view::ReleaseExecuteResponse{});
  return with_ids(view::GetStatusResponse{});
}

ExecuteResponseFrame execute_response_frame(const std::string& session_id,
                                            const std::string& server_side_session_id,
                                            const std::string& operation_id,
                                            const std::string& response_id, int64_t row_count,
                                            size_t data_bytes, bool last) {
  // ArrowBatch { row_count (1), data (2) }
  const uint64_t batch_length = 1 + varint_size(static_cast<uint64_t>(row_count)) + 1 +
                                varint_size(data_bytes) + data_bytes;
  ExecuteResponseFrame frame;
  frame.head = Wire()
                   .bytes(1, session_id)
                   .length_prefix(2, batch_length)
                   .varint(1, static_cast<uint64_t>(row_count))
                   .length_prefix(2, data_bytes)
                   .take();
  Wire tail;
  tail.bytes(12, operation_id).bytes(13, response_id);
  if (last) tail.bytes(14, {});
  tail.bytes(15, server_side_session_id);
  frame.tail = tail.take();
  return frame;
}

}  // namespace sparkgate::bench
