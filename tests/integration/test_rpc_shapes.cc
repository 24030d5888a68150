// Every Spark Connect RPC shape through the gateway, byte-for-byte request relay,
// metadata and deadline propagation, and error trailers relayed untouched.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "harness.h"
#include "spark_view.pb.h"

namespace sparkgate::itest {
namespace {

namespace view = sparkgate::view;

// The session_id / server_side_session_id of a unary response, decoded with its view.
std::pair<std::string, std::string> unary_ids(const std::string& rpc, const std::string& bytes) {
  auto ids = [&](auto msg) -> std::pair<std::string, std::string> {
    if (!msg.ParseFromString(bytes)) return {"<unparsable>", ""};
    return {msg.session_id(), msg.server_side_session_id()};
  };
  if (rpc == "AnalyzePlan") return ids(view::AnalyzePlanResponse{});
  if (rpc == "Config") return ids(view::ConfigResponse{});
  if (rpc == "AddArtifacts") return ids(view::AddArtifactsResponse{});
  if (rpc == "ArtifactStatus") return ids(view::ArtifactStatusesResponse{});
  if (rpc == "Interrupt") return ids(view::InterruptResponse{});
  if (rpc == "ReleaseExecute") return ids(view::ReleaseExecuteResponse{});
  if (rpc == "ReleaseSession") return ids(view::ReleaseSessionResponse{});
  if (rpc == "FetchErrorDetails") return ids(view::FetchErrorDetailsResponse{});
  if (rpc == "CloneSession") return ids(view::CloneSessionResponse{});
  if (rpc == "GetStatus") return ids(view::GetStatusResponse{});
  return {"<not unary>", ""};
}

// A length-delimited field `field` holding `bytes`, in wire format.
std::string len_field(uint32_t field, const std::string& bytes) {
  std::string out;
  auto varint = [&out](uint64_t v) {
    for (; v >= 0x80; v >>= 7) out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    out.push_back(static_cast<char>(v));
  };
  varint((static_cast<uint64_t>(field) << 3) | 2);
  varint(bytes.size());
  return out + bytes;
}

const std::vector<std::string> kUnaryRpcs = {
    "AnalyzePlan",    "Config",         "ArtifactStatus",    "Interrupt",    "ReleaseExecute",
    "ReleaseSession", "FetchErrorDetails", "CloneSession",   "GetStatus"};

// Binary metadata value with NUL and high bytes, to prove -bin headers survive.
const std::string kBinaryValue = std::string("\x00\x01\xfe\xff", 4) + "bin";

CallOptions echo_options(const std::string& tag) {
  CallOptions options;
  options.metadata = {{"x-echo-trace", "trace-" + tag}, {"x-echo-blob-bin", kBinaryValue}};
  options.deadline = 30s;
  return options;
}

void check_echoes(const CallResult& r, const std::string& rpc, const std::string& sent_sha,
                  const std::string& messages) {
  CHECK_MESSAGE(r.trailer("x-fake-method") == rpc, r.describe());
  CHECK(r.trailer("x-fake-request-sha256") == sent_sha);
  CHECK(r.trailer("x-fake-request-messages") == messages);
  CHECK(r.header("x-echo-trace") == "trace-" + rpc);
  CHECK(r.header("x-echo-blob-bin") == kBinaryValue);
  CHECK_MESSAGE(r.trailer("x-fake-saw-timeout") == "1", "grpc-timeout did not reach the backend");
}

}  // namespace

TEST_CASE("all 12 RPCs pass through with their bytes, metadata and deadline") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  std::string server_side_session_id;

  SUBCASE("unary RPCs") {
    for (const auto& rpc : kUnaryRpcs) {
      CAPTURE(rpc);
      const std::string session = "sess-" + rpc;
      const std::string req = request_for(rpc, session);
      const CallResult r = call(channel, rpc, {req}, echo_options(rpc));
      REQUIRE_MESSAGE(r.status.ok(), r.describe());
      REQUIRE(r.responses.size() == 1);
      const auto [sid, ssid] = unary_ids(rpc, r.responses[0]);
      CHECK(sid == session);
      CHECK(!ssid.empty());
      if (server_side_session_id.empty()) server_side_session_id = ssid;
      CHECK(ssid == server_side_session_id);
      check_echoes(r, rpc, sha256_hex(req), "1");
    }
  }

  SUBCASE("server streaming: ExecutePlan and ReattachExecute") {
    for (const std::string rpc : {"ExecutePlan", "ReattachExecute"}) {
      CAPTURE(rpc);
      const std::string session = "sess-" + rpc;
      const std::string req = request_for(rpc, session);
      CallOptions options = echo_options(rpc);
      options.metadata.emplace_back("x-fake-messages", "7");
      options.metadata.emplace_back("x-fake-message-bytes", "1000");
      const CallResult r = call(channel, rpc, {req}, options);
      REQUIRE_MESSAGE(r.status.ok(), r.describe());
      REQUIRE(r.responses.size() == 7);
      for (size_t i = 0; i < r.responses.size(); ++i) {
        view::ExecutePlanResponse msg;
        REQUIRE(msg.ParseFromString(r.responses[i]));
        CHECK(msg.session_id() == session);
        CHECK(msg.operation_id() == "op-" + session);
        CHECK(msg.arrow_batch().data() == fake_pattern(1000));
        CHECK(msg.arrow_batch().row_count() == static_cast<int64_t>(i));
        CHECK(msg.has_result_complete() == (i + 1 == r.responses.size()));
      }
      check_echoes(r, rpc, sha256_hex(req), "1");
    }
  }

  SUBCASE("client streaming: AddArtifacts with several chunks") {
    const std::string rpc = "AddArtifacts";
    const std::string session = "sess-artifacts";
    std::vector<std::string> chunks;
    std::string all;
    // The first chunk carries the envelope; the rest are chunk-like messages of awkward
    // sizes (tiny, odd, larger than one HTTP/2 window) with the data in field 3.
    chunks.push_back(request_for(rpc, session));
    for (size_t size : {size_t{1}, size_t{1023}, size_t{300 * 1024}, size_t{3 << 20}, size_t{10}}) {
      view::AddArtifactsRequest chunk;
      chunk.set_session_id(session);
      chunks.push_back(chunk.SerializeAsString() + len_field(3, random_bytes(size, size)));
    }
    chunks.push_back("");  // an empty message is legal gRPC
    for (const auto& c : chunks) all += c;
    const CallResult r = call(channel, rpc, chunks, echo_options(rpc));
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    REQUIRE(r.responses.size() == 1);
    const auto [sid, ssid] = unary_ids(rpc, r.responses[0]);
    CHECK(sid == session);
    CHECK(!ssid.empty());
    CHECK(r.trailer("x-fake-request-bytes") == std::to_string(all.size()));
    check_echoes(r, rpc, sha256_hex(all), std::to_string(chunks.size()));
  }

  SUBCASE("no client deadline: the backend sees no grpc-timeout") {
    const CallResult r = call(channel, "Config", {request_for("Config", "sess-nodeadline")});
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    CHECK(!r.has_trailer("x-fake-saw-timeout"));
  }

  SUBCASE("unary response padded to 5 MiB") {
    CallOptions options;
    options.metadata = {{"x-fake-message-bytes", std::to_string(5 << 20)}};
    const CallResult r = call(channel, "AnalyzePlan", {request_for("AnalyzePlan", "s-pad")}, options);
    REQUIRE_MESSAGE(r.status.ok(), r.describe());
    REQUIRE(r.responses.size() == 1);
    CHECK(r.responses[0].size() == static_cast<size_t>(5 << 20));
    CHECK(unary_ids("AnalyzePlan", r.responses[0]).first == "s-pad");
  }

  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

TEST_CASE("error status, message and grpc-status-details-bin are relayed untouched") {
  FakeServer fake;
  Gateway gw(one_backend(fake.address()));
  auto channel = make_channel(gw.address());
  // Binary details (a google.rpc.Status-like blob with NUL/high bytes) and a message that
  // needs percent-encoding on the wire.
  const std::string details = std::string("\x08\x0d\x12\x05oops!\x1a\x00\xff\x80", 12) +
                              random_bytes(3000, 7);
  const std::string message = "[INVALID_HANDLE.SESSION_NOT_FOUND] 100% gone: caf\xc3\xa9";

  auto error_options = [&](int messages) {
    CallOptions options;
    options.metadata = {{"x-fake-status", "13"},
                        {"x-fake-message-bin", message},
                        {"x-fake-details-bin", details},
                        {"x-fake-messages", std::to_string(messages)}};
    return options;
  };
  auto check_error = [&](const CallResult& r) {
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::INTERNAL, r.describe());
    CHECK(r.status.error_message() == message);
    CHECK(r.status.error_details() == details);
    REQUIRE(r.has_trailer("grpc-status-details-bin"));
    CHECK(r.trailer("grpc-status-details-bin") == details);
    // The backend's other trailers arrive alongside.
    CHECK(!r.trailer("x-fake-request-sha256").empty());
  };

  SUBCASE("trailers-only error on a unary RPC") {
    const CallResult r = call(channel, "Config", {request_for("Config", "s1")}, error_options(0));
    check_error(r);
    CHECK(r.responses.empty());
  }
  SUBCASE("trailers-only error on a streaming RPC") {
    const CallResult r =
        call(channel, "ExecutePlan", {request_for("ExecutePlan", "s2")}, error_options(0));
    check_error(r);
    CHECK(r.responses.empty());
  }
  SUBCASE("error after streamed messages") {
    const CallResult r =
        call(channel, "ExecutePlan", {request_for("ExecutePlan", "s3")}, error_options(3));
    check_error(r);
    CHECK(r.responses.size() == 3);
  }
  SUBCASE("status without details") {
    CallOptions options;
    options.metadata = {{"x-fake-status", "9"}, {"x-fake-message", "not now"}};
    const CallResult r = call(channel, "AnalyzePlan", {request_for("AnalyzePlan", "s4")}, options);
    CHECK_MESSAGE(r.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION, r.describe());
    CHECK(r.status.error_message() == "not now");
    CHECK(!r.has_trailer("grpc-status-details-bin"));
  }

  // The gateway keeps serving after relaying errors.
  const CallResult ok = call(channel, "Config", {request_for("Config", "after")});
  CHECK_MESSAGE(ok.status.ok(), ok.describe());
  CHECK_MESSAGE(gw.running(), gw.stderr_text());
}

}  // namespace sparkgate::itest
