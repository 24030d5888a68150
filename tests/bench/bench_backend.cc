// bench_backend: a lean fake Spark Connect server for the benchmarks (tests/bench/).
// Unlike tests/fakes/fake_spark_server it hashes nothing and builds each streamed
// ExecutePlanResponse around one shared Arrow payload, which grpc writes without a copy,
// so that the backend costs as little as possible next to the proxy under test.
//
// Usage: bench_backend [--port P] [--host 127.0.0.N]
// Listens with h2c on 127.0.0.1:P (P = 0, the default: the kernel picks), prints
// "READY <port>" on stdout once serving, and exits 0 on SIGTERM/SIGINT.
//
// Every method of spark.connect.SparkConnectService:
//   unary methods       answer at once after the first request message, echoing its
//                       session_id with a fixed server_side_session_id (Config: fields
//                       1 / 4, and so on as Spark does);
//   ExecutePlan, ReattachExecute
//                       stream x-bench-messages ExecutePlanResponse messages (request
//                       metadata; default 1), each with an arrow_batch of
//                       x-bench-message-bytes bytes (default 16); the last one carries
//                       result_complete;
//   AddArtifacts        reads and discards every chunk, then answers.
// Any other method: UNIMPLEMENTED.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "bench_messages.h"

namespace {

using namespace sparkgate::bench;

constexpr std::string_view kServicePrefix = "/spark.connect.SparkConnectService/";
// The envelope scan reads at most this much of the first request message.
constexpr size_t kScanBytes = 4096;

enum class Shape { kUnary, kClientStreaming, kServerStreaming, kUnknown };

Shape shape_of(std::string_view rpc) {
  if (rpc == "ExecutePlan" || rpc == "ReattachExecute") return Shape::kServerStreaming;
  if (rpc == "AddArtifacts") return Shape::kClientStreaming;
  if (rpc == "Config" || rpc == "AnalyzePlan" || rpc == "ArtifactStatus" || rpc == "Interrupt" ||
      rpc == "ReleaseExecute" || rpc == "ReleaseSession" || rpc == "FetchErrorDetails" ||
      rpc == "CloneSession" || rpc == "GetStatus") {
    return Shape::kUnary;
  }
  return Shape::kUnknown;
}

std::string g_server_side_session_id;
std::atomic<uint64_t> g_operation_counter{0};

// Arrow payloads by size, built once and never freed, so grpc can send them as static
// slices from any number of calls at once.
class PayloadCache {
 public:
  const std::string& get(size_t bytes) {
    std::lock_guard lock(mu_);
    auto& slot = payloads_[bytes];
    if (!slot) {
      slot = std::make_unique<std::string>(bytes, '\0');
      for (size_t j = 0; j < bytes; ++j) (*slot)[j] = static_cast<char>(j * 7 + 1);
    }
    return *slot;
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::unique_ptr<std::string>> payloads_;
};

PayloadCache g_payloads;

long long metadata_number(const grpc::GenericCallbackServerContext* ctx, const char* key,
                          long long fallback) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return fallback;
  char* end = nullptr;
  const std::string text(it->second.data(), it->second.size());
  const long long value = std::strtoll(text.c_str(), &end, 10);
  return (end != nullptr && *end == '\0' && value >= 0) ? value : fallback;
}

// One RPC: read the first request message (all of them for AddArtifacts), then write
// the answer; each write is started from the previous one's OnWriteDone.
class BenchCall final : public grpc::ServerGenericBidiReactor {
 public:
  explicit BenchCall(grpc::GenericCallbackServerContext* ctx) : ctx_(ctx) {
    const std::string& method = ctx_->method();
    if (method.rfind(kServicePrefix, 0) == 0) rpc_ = method.substr(kServicePrefix.size());
    shape_ = shape_of(rpc_);
    if (shape_ == Shape::kUnknown) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "bench_backend: unknown method " + method));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // Half-close: only AddArtifacts (or a unary call without a message) gets here.
      respond();
      return;
    }
    if (messages_++ == 0) scan_envelope();
    if (shape_ == Shape::kClientStreaming) {
      request_.Clear();
      StartRead(&request_);
      return;
    }
    respond();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "bench_backend: write failed"));
      return;
    }
    send_next();
  }

  void OnDone() override { delete this; }

 private:
  void scan_envelope() {
    std::vector<grpc::Slice> slices;
    if (!request_.Dump(&slices).ok()) return;
    std::string prefix;
    for (const auto& s : slices) {
      const size_t take = std::min(s.size(), kScanBytes - prefix.size());
      prefix.append(reinterpret_cast<const char*>(s.begin()), take);
      if (prefix.size() == kScanBytes) break;
    }
    if (auto id = scan_field1(prefix)) session_id_ = std::move(*id);
  }

  void respond() {
    if (messages_ == 0 || session_id_.empty()) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "bench_backend: no request message with a session_id"));
      return;
    }
    if (shape_ != Shape::kServerStreaming) {
      grpc::Slice slice(unary_response(rpc_, session_id_, g_server_side_session_id));
      response_ = grpc::ByteBuffer(&slice, 1);
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    total_ = metadata_number(ctx_, "x-bench-messages", 1);
    payload_ = &g_payloads.get(static_cast<size_t>(metadata_number(ctx_, "x-bench-message-bytes", 16)));
    operation_id_ = "op-" + std::to_string(g_operation_counter.fetch_add(1));
    send_next();
  }

  void send_next() {
    if (sent_ == total_) {
      Finish(grpc::Status::OK);
      return;
    }
    const bool last = sent_ + 1 == total_;
    ExecuteResponseFrame frame =
        execute_response_frame(session_id_, g_server_side_session_id, operation_id_,
                               operation_id_ + "/" + std::to_string(sent_), sent_, payload_->size(), last);
    const grpc::Slice slices[3] = {
        grpc::Slice(frame.head),
        grpc::Slice(payload_->data(), payload_->size(), grpc::Slice::STATIC_SLICE),
        grpc::Slice(frame.tail),
    };
    response_ = grpc::ByteBuffer(slices, 3);
    ++sent_;
    if (last) {
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      StartWrite(&response_);
    }
  }

  grpc::GenericCallbackServerContext* const ctx_;
  std::string rpc_;
  Shape shape_ = Shape::kUnknown;
  grpc::ByteBuffer request_;
  uint64_t messages_ = 0;
  std::string session_id_;
  grpc::ByteBuffer response_;
  // ExecutePlan only.
  long long total_ = 0;
  long long sent_ = 0;
  const std::string* payload_ = nullptr;  // owned by g_payloads, never freed
  std::string operation_id_;
};

class BenchService final : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new BenchCall(ctx);
  }
};

[[noreturn]] void usage(const char* argv0) {
  std::cerr << "usage: " << argv0 << " [--port P] [--host 127.0.0.N]\n";
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const std::string value = argv[++i];
    if (arg == "--port") {
      port = std::atoi(value.c_str());
    } else if (arg == "--host" && value.rfind("127.", 0) == 0) {
      host = value;  // loopback only
    } else {
      usage(argv[0]);
    }
  }
  if (port < 0 || port > 65535) usage(argv[0]);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::mt19937_64 rng(std::random_device{}());
  g_server_side_session_id = "bench-" + make_uuid(rng);

  BenchService service;
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(host + ":" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &selected_port);
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || selected_port == 0) {
    std::cerr << "bench_backend: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::cout << "READY " << selected_port << std::endl;

  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  std::fflush(stdout);
  _exit(0);  // grpc's background threads may still be winding down
}
