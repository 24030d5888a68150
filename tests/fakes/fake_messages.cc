#include "fake_messages.h"

#include <unistd.h>

#include <random>

#include "spark_view.pb.h"

namespace sparkgate::fake {
namespace {

namespace view = sparkgate::view;

constexpr uint32_t kPaddingFieldNumber = 1000;

size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

template <typename T>
bool parse_into(const std::string& bytes, T& msg) {
  return msg.ParseFromString(bytes);
}

}  // namespace

std::string make_uuidish() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd() ^
                      static_cast<uint64_t>(getpid()));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out.push_back('-');
    out.push_back(kHex[rng() & 0xf]);
  }
  return out;
}

std::optional<Shape> shape_of(std::string_view rpc) {
  if (rpc == "ExecutePlan" || rpc == "ReattachExecute") return Shape::kServerStreaming;
  if (rpc == "AddArtifacts") return Shape::kClientStreaming;
  if (rpc == "AnalyzePlan" || rpc == "Config" || rpc == "ArtifactStatus" ||
      rpc == "Interrupt" || rpc == "ReleaseExecute" || rpc == "ReleaseSession" ||
      rpc == "FetchErrorDetails" || rpc == "CloneSession" || rpc == "GetStatus") {
    return Shape::kUnary;
  }
  return std::nullopt;
}

void pad_to(std::string& msg, size_t target) {
  const uint64_t tag = (kPaddingFieldNumber << 3) | 2;
  const size_t overhead = varint_size(tag);
  if (target <= msg.size() + overhead + 1) return;
  size_t room = target - msg.size() - overhead;
  size_t pad = room - 1;
  while (pad > 0 && varint_size(pad) + pad > room) --pad;
  append_varint(msg, tag);
  append_varint(msg, pad);
  msg.append(pad, 'p');
}

std::string pattern_bytes(size_t n) {
  std::string data(n, '\0');
  for (size_t j = 0; j < n; ++j) data[j] = static_cast<char>(j * 7 + 1);
  return data;
}

bool inspect_request(std::string_view rpc, const std::string& bytes, RequestInfo& info) {
  auto simple = [&](auto msg) {
    if (!parse_into(bytes, msg)) return false;
    info.session_id = msg.session_id();
    return true;
  };
  if (rpc == "ExecutePlan") {
    view::ExecutePlanRequest m;
    if (!parse_into(bytes, m)) return false;
    info.session_id = m.session_id();
    info.operation_id = m.operation_id();
    return true;
  }
  if (rpc == "ReattachExecute") {
    view::ReattachExecuteRequest m;
    if (!parse_into(bytes, m)) return false;
    info.session_id = m.session_id();
    info.operation_id = m.operation_id();
    return true;
  }
  if (rpc == "ReleaseExecute") {
    view::ReleaseExecuteRequest m;
    if (!parse_into(bytes, m)) return false;
    info.session_id = m.session_id();
    info.operation_id = m.operation_id();
    return true;
  }
  if (rpc == "CloneSession") {
    view::CloneSessionRequest m;
    if (!parse_into(bytes, m)) return false;
    info.session_id = m.session_id();
    info.new_session_id = m.new_session_id();
    return true;
  }
  if (rpc == "AnalyzePlan") return simple(view::AnalyzePlanRequest{});
  if (rpc == "Config") return simple(view::ConfigRequest{});
  if (rpc == "AddArtifacts") return simple(view::AddArtifactsRequest{});
  if (rpc == "ArtifactStatus") return simple(view::ArtifactStatusesRequest{});
  if (rpc == "Interrupt") return simple(view::InterruptRequest{});
  if (rpc == "ReleaseSession") return simple(view::ReleaseSessionRequest{});
  if (rpc == "FetchErrorDetails") return simple(view::FetchErrorDetailsRequest{});
  if (rpc == "GetStatus") return simple(view::GetStatusRequest{});
  return false;
}

std::string build_unary_response(std::string_view rpc, const RequestInfo& info,
                                 const std::string& server_side_session_id) {
  auto with_ids = [&](auto msg) {
    msg.set_session_id(info.session_id);
    msg.set_server_side_session_id(server_side_session_id);
    return msg;
  };
  if (rpc == "AnalyzePlan") return with_ids(view::AnalyzePlanResponse{}).SerializeAsString();
  if (rpc == "Config") return with_ids(view::ConfigResponse{}).SerializeAsString();
  if (rpc == "AddArtifacts") return with_ids(view::AddArtifactsResponse{}).SerializeAsString();
  if (rpc == "ArtifactStatus") {
    return with_ids(view::ArtifactStatusesResponse{}).SerializeAsString();
  }
  if (rpc == "Interrupt") return with_ids(view::InterruptResponse{}).SerializeAsString();
  if (rpc == "ReleaseExecute") {
    auto m = with_ids(view::ReleaseExecuteResponse{});
    m.set_operation_id(info.operation_id);
    return m.SerializeAsString();
  }
  if (rpc == "ReleaseSession") {
    return with_ids(view::ReleaseSessionResponse{}).SerializeAsString();
  }
  if (rpc == "FetchErrorDetails") {
    return with_ids(view::FetchErrorDetailsResponse{}).SerializeAsString();
  }
  if (rpc == "CloneSession") {
    auto m = with_ids(view::CloneSessionResponse{});
    m.set_new_session_id(info.new_session_id.empty() ? make_uuidish() : info.new_session_id);
    m.set_new_server_side_session_id(server_side_session_id);
    return m.SerializeAsString();
  }
  return with_ids(view::GetStatusResponse{}).SerializeAsString();
}

std::string to_hex(const unsigned char* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

}  // namespace sparkgate::fake
