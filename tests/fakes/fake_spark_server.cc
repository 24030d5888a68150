// fake_spark_server: a scriptable stand-in for a Spark Connect server, used by the
// integration tests (tests/integration/) as the backend behind the real gateway.
//
// It serves every method under /spark.connect.SparkConnectService/ through
// grpc::CallbackGenericService, so it handles raw bytes and needs only the view protos
// (proto/spark_view.proto) to build responses. Unknown methods get UNIMPLEMENTED,
// including /grpc.health.v1.Health/Check unless --health is given (like Spark).
//
// Usage:
//   fake_spark_server --port P [--max-concurrent-streams N] [--goaway-grace-ms MS]
//                     [--tls-cert FILE --tls-key FILE] [--health SERVING|NOT_SERVING]
//                     [--host 127.0.0.N]
// Listens on 127.0.0.1:P (or --host, another loopback address; P = 0: the kernel picks) with h2c, or with TLS (ALPN h2) when
// --tls-cert and --tls-key (PEM) are given; prints "READY <port>" on stdout once
// serving, and exits 0 on SIGTERM/SIGINT (in-flight calls get 200 ms). Message sizes are
// unlimited.
//
// --health STATUS: answer /grpc.health.v1.Health/Check (any request) with grpc-status 0
// and a HealthCheckResponse whose status (field 1) is 1 for SERVING or 2 for NOT_SERVING.
// These answers do not count in the x-fake-stats counters.
//
// Every call reads all request messages until the client half-closes, then answers.
// Every response carries the request's session_id and this process's fixed
// server_side_session_id in the fields Spark uses for that response type.
//
// Request metadata that scripts the answer (all optional):
//   x-fake-messages: N        streaming responses to send (default 1); for unary methods
//                             the number of responses sent with a non-OK x-fake-status
//                             (default 0, i.e. a trailers-only error)
//   x-fake-message-bytes: S   ExecutePlan/ReattachExecute: arrow_batch.data size (default
//                             16). Unary: pad the response to S bytes with unknown field
//                             1000. Data byte j is static_cast<char>(j * 7 + 1).
//   x-fake-stall-ms: T        stall T ms before the first response ...
//   x-fake-stall-after: K     ... or, if given, after K streamed responses
//   x-fake-reset-after: K     after K responses, cancel the stream (RST_STREAM)
//   x-fake-exit-after: K      after K responses, _exit(3) the process
//   x-fake-goaway: 1          after this call completes, shut the server down gracefully
//                             (GOAWAY; in-flight calls get --goaway-grace-ms, default
//                             5000) and exit 0
//   x-fake-status: CODE       finish with this grpc status code, with message
//   x-fake-message: TEXT      and message (x-fake-message-bin: raw bytes, if not ASCII)
//   x-fake-details-bin: BYTES and details (grpc-status-details-bin)
//   x-fake-stats: 1           (GetStatus) answer with the process counters in trailers:
//                             x-fake-sent-bytes, x-fake-sent-messages, x-fake-cancelled
//
// Metadata sent back:
//   initial:  every request header whose name starts with "x-echo-", unchanged
//   trailing: x-fake-method, x-fake-request-bytes, x-fake-request-messages,
//             x-fake-request-sha256 (hex, over all request message bytes concatenated),
//             x-fake-saw-timeout: 1 (only if the call had a deadline),
//             x-fake-authorization: the request's authorization header (only if present;
//             lets tests check which credential reached the backend),
//             x-fake-x-request-id, x-fake-traceparent: those request headers (if present)
#include <grpcpp/alarm.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>

#include "fake_messages.h"
#include "spark_view.pb.h"

namespace {

using namespace sparkgate::fake;
namespace view = sparkgate::view;

constexpr std::string_view kServicePrefix = "/spark.connect.SparkConnectService/";
constexpr std::string_view kHealthCheckMethod = "/grpc.health.v1.Health/Check";
// In-flight calls get this long to finish after SIGTERM/SIGINT.
constexpr int kStopGraceMs = 200;

struct Counters {
  std::atomic<uint64_t> sent_bytes{0};
  std::atomic<uint64_t> sent_messages{0};
  std::atomic<uint64_t> cancelled{0};
};

// The process-wide shutdown request: set by the signal thread or by an x-fake-goaway
// call, waited on by main().
struct ShutdownLatch {
  std::mutex mu;
  std::condition_variable cv;
  bool requested = false;
  bool graceful = false;  // GOAWAY with the full grace period, else a quick stop

  void request(bool with_grace) {
    std::lock_guard lock(mu);
    if (!requested) {
      requested = true;
      graceful = with_grace;
    }
    cv.notify_all();
  }
};

Counters g_counters;
ShutdownLatch g_shutdown;
std::string g_server_side_session_id;
// HealthCheckResponse.status to answer Health/Check with; 0: answer UNIMPLEMENTED.
int g_health_status = 0;

grpc::ByteBuffer to_byte_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// One RPC. Flow: read every request message → (optional stall) → write responses one at
// a time, the next StartWrite only from OnWriteDone → Finish. Only OnCancel and the stall
// alarm run concurrently with that chain; they share state through mu_ and atomics.
class FakeCall final : public grpc::ServerGenericBidiReactor {
 public:
  explicit FakeCall(grpc::GenericCallbackServerContext* ctx) : ctx_(ctx) {
    sha_ = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
    const std::string& method = ctx_->method();
    if (method.rfind(kServicePrefix, 0) == 0) rpc_ = method.substr(kServicePrefix.size());
    if (method == kHealthCheckMethod && g_health_status != 0) {
      health_ = true;
      rpc_ = "Health/Check";
      count_stats_ = false;
      StartRead(&request_);
      return;
    }
    const auto shape = shape_of(rpc_);
    if (!shape) {
      finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "fake_spark_server: unknown method " + method));
      return;
    }
    shape_ = *shape;
    read_options();
    StartRead(&request_);
  }

  ~FakeCall() override { EVP_MD_CTX_free(sha_); }

  void OnReadDone(bool ok) override {
    if (ok) {
      std::vector<grpc::Slice> slices;
      if (request_.Dump(&slices).ok()) {
        const bool keep = request_messages_ == 0;
        for (const auto& s : slices) {
          EVP_DigestUpdate(sha_, s.begin(), s.size());
          if (keep) first_request_.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      request_bytes_ += request_.Length();
      ++request_messages_;
      request_.Clear();
      StartRead(&request_);
      return;
    }
    // Half-close (or cancellation): the request side is complete.
    begin_response();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      finish(grpc::Status(grpc::StatusCode::CANCELLED, "fake_spark_server: write failed"));
      return;
    }
    if (count_stats_) {
      g_counters.sent_bytes.fetch_add(last_write_bytes_);
      g_counters.sent_messages.fetch_add(1);
    }
    ++sent_;
    send_next();
  }

  void OnCancel() override {
    grpc::Alarm* alarm = nullptr;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      if (!self_cancelled_) g_counters.cancelled.fetch_add(1);
      if (stall_pending_) alarm = stall_alarm_.get();
    }
    // The reactor outlives this callback (grpc holds OnDone until OnCancel returns) and
    // stall_alarm_ is never reset before the destructor, so the pointer stays valid.
    if (alarm != nullptr) alarm->Cancel();
  }

  void OnDone() override {
    const bool goaway = goaway_;
    delete this;
    if (goaway) g_shutdown.request(/*with_grace=*/true);
  }

 private:
  static std::optional<long long> number(const grpc::GenericCallbackServerContext* ctx,
                                         const char* key) {
    const auto& md = ctx->client_metadata();
    auto it = md.find(key);
    if (it == md.end()) return std::nullopt;
    try {
      return std::stoll(std::string(it->second.data(), it->second.size()));
    } catch (...) {
      return std::nullopt;
    }
  }

  static std::string text(const grpc::GenericCallbackServerContext* ctx, const char* key) {
    const auto& md = ctx->client_metadata();
    auto it = md.find(key);
    if (it == md.end()) return {};
    return std::string(it->second.data(), it->second.size());
  }

  void read_options() {
    messages_ = number(ctx_, "x-fake-messages");
    message_bytes_ = number(ctx_, "x-fake-message-bytes");
    stall_ms_ = number(ctx_, "x-fake-stall-ms").value_or(0);
    stall_after_ = number(ctx_, "x-fake-stall-after").value_or(0);
    reset_after_ = number(ctx_, "x-fake-reset-after");
    exit_after_ = number(ctx_, "x-fake-exit-after");
    goaway_ = number(ctx_, "x-fake-goaway").value_or(0) != 0;
    stats_ = rpc_ == "GetStatus" && number(ctx_, "x-fake-stats").value_or(0) != 0;
    count_stats_ = !stats_;
    if (auto code = number(ctx_, "x-fake-status")) {
      const bool raw = ctx_->client_metadata().count("x-fake-message-bin") > 0;
      status_ = grpc::Status(static_cast<grpc::StatusCode>(*code),
                             text(ctx_, raw ? "x-fake-message-bin" : "x-fake-message"),
                             text(ctx_, "x-fake-details-bin"));
    }
    for (const auto& [key, value] : ctx_->client_metadata()) {
      std::string_view k(key.data(), key.size());
      if (k.rfind("x-echo-", 0) == 0) {
        ctx_->AddInitialMetadata(std::string(k), std::string(value.data(), value.size()));
      }
      if (k == "authorization") {
        ctx_->AddTrailingMetadata("x-fake-authorization", std::string(value.data(), value.size()));
      }
      if (k == "x-request-id" || k == "traceparent") {
        ctx_->AddTrailingMetadata("x-fake-" + std::string(k), std::string(value.data(), value.size()));
      }
    }
  }

  void begin_response() {
    if (cancelled()) {
      finish(grpc::Status(grpc::StatusCode::CANCELLED, "fake_spark_server: cancelled"));
      return;
    }
    if (health_) {
      // HealthCheckResponse { ServingStatus status = 1; }
      total_ = 1;
      send_next();
      return;
    }
    if (!inspect_request(rpc_, first_request_, info_) && request_messages_ > 0) {
      finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "fake_spark_server: cannot parse " + rpc_ + " request"));
      return;
    }
    if (shape_ == Shape::kServerStreaming) {
      total_ = messages_.value_or(1);
      if (info_.operation_id.empty()) info_.operation_id = make_uuidish();
      arrow_data_ = pattern_bytes(static_cast<size_t>(message_bytes_.value_or(16)));
    } else {
      total_ = status_.ok() ? 1 : messages_.value_or(0);
      stall_after_ = 0;
    }
    if (stall_after_ == 0) {
      if (stall_ms_ > 0 && arm_stall()) return;
    }
    send_next();
  }

  // Arms the stall alarm; false if the call is already cancelled (nothing armed).
  bool arm_stall() {
    std::lock_guard lock(mu_);
    if (cancelled_) return false;
    stall_pending_ = true;
    stall_alarm_ = std::make_unique<grpc::Alarm>();
    stall_alarm_->Set(std::chrono::system_clock::now() + std::chrono::milliseconds(stall_ms_),
                      [this](bool) {
                        {
                          std::lock_guard inner(mu_);
                          stall_pending_ = false;
                        }
                        stalled_ = true;
                        send_next();
                      });
    return true;
  }

  bool cancelled() {
    std::lock_guard lock(mu_);
    return cancelled_;
  }

  std::string build_response(long long index) {
    if (health_) return std::string{'\x08', static_cast<char>(g_health_status)};
    if (shape_ != Shape::kServerStreaming) {
      std::string msg = build_unary_response(rpc_, info_, g_server_side_session_id);
      if (message_bytes_) pad_to(msg, static_cast<size_t>(*message_bytes_));
      return msg;
    }
    view::ExecutePlanResponse msg;
    msg.set_session_id(info_.session_id);
    msg.set_server_side_session_id(g_server_side_session_id);
    msg.set_operation_id(info_.operation_id);
    msg.set_response_id(info_.operation_id + "/" + std::to_string(index));
    msg.mutable_arrow_batch()->set_row_count(index);
    msg.mutable_arrow_batch()->set_data(arrow_data_);
    if (index + 1 == total_) msg.mutable_result_complete();
    return msg.SerializeAsString();
  }

  void send_next() {
    if (cancelled()) {
      finish(grpc::Status(grpc::StatusCode::CANCELLED, "fake_spark_server: cancelled"));
      return;
    }
    if (exit_after_ && sent_ == *exit_after_) {
      // Give the transport a moment to flush what was already written, then die the
      // way a crashing backend does: no GOAWAY, no trailers.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::fflush(stdout);
      _exit(3);
    }
    if (reset_after_ && sent_ == *reset_after_) {
      {
        std::lock_guard lock(mu_);
        self_cancelled_ = true;
      }
      ctx_->TryCancel();
      finish(grpc::Status::CANCELLED);
      return;
    }
    if (!stalled_ && stall_ms_ > 0 && stall_after_ > 0 && sent_ == stall_after_) {
      if (arm_stall()) return;
    }
    if (sent_ >= total_) {
      finish(status_);
      return;
    }
    response_ = to_byte_buffer(build_response(sent_));
    last_write_bytes_ = response_.Length();
    StartWrite(&response_);
  }

  void finish(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    if (stats_) {
      ctx_->AddTrailingMetadata("x-fake-sent-bytes", std::to_string(g_counters.sent_bytes));
      ctx_->AddTrailingMetadata("x-fake-sent-messages",
                                std::to_string(g_counters.sent_messages));
      ctx_->AddTrailingMetadata("x-fake-cancelled", std::to_string(g_counters.cancelled));
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_DigestFinal_ex(sha_, digest, &digest_len);
    ctx_->AddTrailingMetadata("x-fake-method", rpc_);
    ctx_->AddTrailingMetadata("x-fake-request-bytes", std::to_string(request_bytes_));
    ctx_->AddTrailingMetadata("x-fake-request-messages", std::to_string(request_messages_));
    ctx_->AddTrailingMetadata("x-fake-request-sha256", to_hex(digest, digest_len));
    if (ctx_->deadline() != std::chrono::system_clock::time_point::max()) {
      ctx_->AddTrailingMetadata("x-fake-saw-timeout", "1");
    }
    Finish(std::move(status));
  }

  grpc::GenericCallbackServerContext* const ctx_;
  std::string rpc_;
  Shape shape_ = Shape::kUnary;
  EVP_MD_CTX* sha_ = nullptr;

  // Options from request metadata.
  std::optional<long long> messages_;
  std::optional<long long> message_bytes_;
  long long stall_ms_ = 0;
  long long stall_after_ = 0;
  std::optional<long long> reset_after_;
  std::optional<long long> exit_after_;
  bool goaway_ = false;
  bool stats_ = false;
  bool count_stats_ = true;
  bool health_ = false;  // a grpc.health.v1.Health/Check call answered by --health
  grpc::Status status_ = grpc::Status::OK;

  // Request side (touched only by the read chain).
  grpc::ByteBuffer request_;
  std::string first_request_;
  uint64_t request_bytes_ = 0;
  uint64_t request_messages_ = 0;
  RequestInfo info_;

  // Response side (touched only by the write chain, which the stall alarm continues).
  grpc::ByteBuffer response_;
  std::string arrow_data_;
  long long total_ = 0;
  long long sent_ = 0;
  size_t last_write_bytes_ = 0;
  bool stalled_ = false;
  bool finished_ = false;

  // Shared with OnCancel.
  std::mutex mu_;
  bool cancelled_ = false;
  bool self_cancelled_ = false;
  bool stall_pending_ = false;
  std::unique_ptr<grpc::Alarm> stall_alarm_;
};

class FakeService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new FakeCall(ctx);
  }
};

[[noreturn]] void usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " --port P [--max-concurrent-streams N] [--goaway-grace-ms MS]"
               " [--tls-cert FILE --tls-key FILE] [--health SERVING|NOT_SERVING] [--host 127.0.0.N]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port = -1;
  int max_concurrent_streams = 0;
  int goaway_grace_ms = 5000;
  std::string tls_cert;
  std::string tls_key;
  std::string host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const std::string text = argv[++i];
    const int value = std::atoi(text.c_str());
    if (arg == "--tls-cert") {
      tls_cert = text;
    } else if (arg == "--tls-key") {
      tls_key = text;
    } else if (arg == "--health") {
      if (text == "SERVING") {
        g_health_status = 1;
      } else if (text == "NOT_SERVING") {
        g_health_status = 2;
      } else {
        usage(argv[0]);
      }
    } else if (arg == "--host") {
      // Loopback only: tests never listen beyond this machine.
      if (text.rfind("127.", 0) != 0) usage(argv[0]);
      host = text;
    } else if (arg == "--port") {
      port = value;
    } else if (arg == "--max-concurrent-streams") {
      max_concurrent_streams = value;
    } else if (arg == "--goaway-grace-ms") {
      goaway_grace_ms = value;
    } else {
      usage(argv[0]);
    }
  }
  if (port < 0 || port > 65535) usage(argv[0]);
  if (tls_cert.empty() != tls_key.empty()) usage(argv[0]);
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!tls_cert.empty()) {
    const auto slurp = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      if (!in) {
        std::cerr << "fake_spark_server: cannot read " << path << "\n";
        std::exit(1);
      }
      std::ostringstream text;
      text << in.rdbuf();
      return text.str();
    };
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({slurp(tls_key), slurp(tls_cert)});
    credentials = grpc::SslServerCredentials(ssl);
  }

  // Block the termination signals before grpc starts its threads, so that only the
  // sigwait thread below ever sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    g_shutdown.request(/*with_grace=*/false);
  }).detach();

  g_server_side_session_id = "fake-" + make_uuidish();

  FakeService service;
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(host + ":" + std::to_string(port), credentials, &selected_port);
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  if (max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, max_concurrent_streams);
  }
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected_port == 0) {
    std::cerr << "fake_spark_server: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::cout << "READY " << selected_port << std::endl;

  bool graceful = false;
  {
    std::unique_lock lock(g_shutdown.mu);
    g_shutdown.cv.wait(lock, [] { return g_shutdown.requested; });
    graceful = g_shutdown.graceful;
  }
  // Shutdown sends GOAWAY, lets in-flight calls run until the deadline, then cancels them.
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(graceful ? goaway_grace_ms : kStopGraceMs));
  std::fflush(stdout);
  // Skip static destructors: grpc's background threads may still be winding down.
  _exit(0);
}
