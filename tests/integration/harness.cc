#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "spark_view.pb.h"

namespace sparkgate::itest {

namespace view = sparkgate::view;
namespace fs = std::filesystem;

namespace {

std::string env_or_throw(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    throw std::runtime_error(std::string(name) + " is not set (see tests/integration/meson.build)");
  }
  return value;
}

std::string tail(const std::string& text, size_t n = 4000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

bool tcp_accepts(uint16_t port) { return tcp_connect_errno(port) == 0; }

void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void append_len_field(std::string& out, uint32_t field, std::string_view bytes) {
  append_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  append_varint(out, bytes.size());
  out.append(bytes);
}

template <typename T>
T with_envelope(const std::string& session_id) {
  T msg;
  msg.set_session_id(session_id);
  msg.mutable_user_context()->set_user_id("alice");
  msg.set_client_type("sparkgate-itest");
  return msg;
}

std::string to_string(grpc::string_ref ref) { return std::string(ref.data(), ref.size()); }

Metadata copy_metadata(const std::multimap<grpc::string_ref, grpc::string_ref>& md) {
  Metadata out;
  for (const auto& [k, v] : md) out.emplace(to_string(k), to_string(v));
  return out;
}

}  // namespace

std::string fake_bin() { return env_or_throw("FAKE_SPARK_BIN"); }
std::string gateway_bin() { return env_or_throw("SPARKGATE_BIN"); }
bool direct_mode() {
  const char* value = std::getenv("SPARKGATE_BIN");
  return value != nullptr && std::string_view(value) == "direct";
}

bool asan_build() {
  const char* value = std::getenv("SPARKGATE_ITEST_ASAN");
  return value != nullptr && std::string_view(value) == "1";
}

uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    throw std::runtime_error("cannot get a free port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// ---- TempDir ----

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "sparkgate-itest-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
  const fs::path file = path_ / name;
  std::ofstream out(file, std::ios::binary);
  out << text;
  return file.string();
}

// ---- Child ----

Child::Child(const std::vector<std::string>& argv, const std::string& stdout_path,
             const std::string& stderr_path, int* stdout_fd)
    : argv0_(argv.empty() ? std::string() : argv[0]), stderr_path_(stderr_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipe_fds[2] = {-1, -1};
  if (stdout_fd != nullptr && pipe2(pipe_fds, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2 failed");
  }
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // Only async-signal-safe calls from here on: the parent has grpc threads.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (stdout_fd != nullptr) {
      dup2(pipe_fds[1], STDOUT_FILENO);
    } else {
      int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out >= 0) dup2(out, STDOUT_FILENO);
    }
    if ((stdout_fd != nullptr && stderr_path.empty()) || (stdout_fd == nullptr && stderr_path == stdout_path)) {
      dup2(STDOUT_FILENO, STDERR_FILENO);
    } else {
      int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) dup2(err, STDERR_FILENO);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  if (stdout_fd != nullptr) {
    close(pipe_fds[1]);
    *stdout_fd = pipe_fds[0];
  }
}

Child::~Child() {
  stop();
  const char* dir = std::getenv("SPARKGATE_ITEST_SANITIZER_DIR");
  if (dir == nullptr || *dir == '\0') return;
  const std::string text = read_file(stderr_path_);
  // UBSan's "file:line:col: runtime error: ...", or an ASan/LSan report that reached stderr.
  for (const char* marker : {": runtime error: ", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer"}) {
    if (text.find(marker) == std::string::npos) continue;
    std::ofstream out(fs::path(dir) / ("stderr." + std::to_string(pid_)), std::ios::binary);
    out << argv0_ << " (pid " << pid_ << "), stderr:\n" << text;
    return;
  }
}

std::chrono::milliseconds default_stop_grace() { return asan_build() ? 10000ms : 3000ms; }

bool Child::running() {
  if (status_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = status;
    return false;
  }
  return r == 0;
}

bool Child::wait_exit(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool Child::stop(std::chrono::milliseconds grace) {
  if (!running()) return true;
  kill(pid_, SIGTERM);
  if (wait_exit(grace)) return true;
  if (asan_build()) {
    std::fprintf(stderr, "harness: %s (pid %d) still ran %lld ms after SIGTERM; killed, so its "
                 "LeakSanitizer check did not run\n", argv0_.c_str(), static_cast<int>(pid_),
                 static_cast<long long>(grace.count()));
  }
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  status_ = status;
  return false;
}

// ---- FakeServer ----

FakeServer::FakeServer(const std::vector<std::string>& extra_args, uint16_t port) {
  std::vector<std::string> argv = {fake_bin(), "--port", std::to_string(port)};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  child_ = std::make_unique<Child>(argv, "", (dir_.path() / "fake.err").string(), &stdout_fd_);
  std::string line;
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd pfd{stdout_fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[256];
    const ssize_t n = ::read(stdout_fd_, buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  if (line.rfind("READY ", 0) != 0) {
    throw std::runtime_error("fake_spark_server did not start: stdout='" + line +
                             "' stderr=" + tail(stderr_text()));
  }
  port_ = static_cast<uint16_t>(std::stoi(line.substr(6)));
}

FakeServer::~FakeServer() {
  child_->stop();
  if (stdout_fd_ >= 0) close(stdout_fd_);
}

std::string FakeServer::stderr_text() const { return read_file(dir_.path() / "fake.err"); }

// ---- Gateway ----

GatewayOptions one_backend(const std::string& address) {
  GatewayOptions options;
  options.backends.push_back(address);
  return options;
}

std::string gateway_config_yaml(const GatewayOptions& options, uint16_t port,
                                uint16_t admin_port) {
  std::ostringstream y;
  y << "listeners:\n  - address: 127.0.0.1:" << port << "\n";
  if (options.tls) {
    y << "    tls:\n      cert: " << options.tls->cert << "\n      key: " << options.tls->key
      << "\n";
    if (!options.tls_client_ca.empty()) y << "      client_ca: " << options.tls_client_ca << "\n";
    if (options.tls_require_client_cert) {
      y << "      require_client_cert: " << (*options.tls_require_client_cert ? "true" : "false") << "\n";
    }
  }
  if (!options.clusters_yaml.empty()) {
    y << options.clusters_yaml;
    if (options.clusters_yaml.back() != '\n') y << "\n";
  } else {
    y << "clusters:\n  - name: local\n    backends:\n";
    for (const auto& b : options.backends) y << "      - address: " << b << "\n";
    y << "routes:\n  - cluster: local\n";
  }
  y << "admin:\n  address: 127.0.0.1:" << admin_port << "\n";
  if (!options.admin_token_file.empty()) y << "  token_file: " << options.admin_token_file << "\n";
  if (options.max_message_bytes) {
    y << "limits:\n  max_message_bytes: " << *options.max_message_bytes << "\n";
  }
  if (options.drain_timeout) y << "drain:\n  timeout: " << *options.drain_timeout << "\n";
  y << options.extra_yaml;
  return y.str();
}

Gateway::Gateway(GatewayOptions options) : options_(std::move(options)) {
  if (direct_mode()) return;
  port_ = free_port();
  admin_port_ = free_port();
  while (admin_port_ == port_) admin_port_ = free_port();
  config_path_ = dir_.write("sparkgate.yaml", gateway_config_yaml(options_, port_, admin_port_));
  std::vector<std::string> argv{gateway_bin(), "--config", config_path_, "--workers",
                                std::to_string(options_.workers), "--log-level", options_.log_level};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  child_ = std::make_unique<Child>(argv, (dir_.path() / "gateway.out").string(),
                                   (dir_.path() / (options_.merge_output ? "gateway.out" : "gateway.err")).string(),
                                   nullptr);
  const auto until = std::chrono::steady_clock::now() + 15s;
  // The admin listener starts after the workers' acceptors listen: wait for both, so that
  // a test's first admin request does not race the gateway's start-up.
  while (!tcp_accepts(port_) || !tcp_accepts(admin_port_)) {
    if (!child_->running()) {
      throw std::runtime_error("sparkgate exited during startup (status " +
                               std::to_string(child_->exit_status().value_or(-1)) +
                               "); stderr:\n" + tail(stderr_text()));
    }
    if (std::chrono::steady_clock::now() >= until) {
      throw std::runtime_error("sparkgate did not listen on 127.0.0.1:" +
                               std::to_string(port_) + " within 15 s; stderr:\n" +
                               tail(stderr_text()));
    }
    std::this_thread::sleep_for(20ms);
  }
}

void Gateway::rewrite_config(const std::string& clusters_yaml, const std::string& extra_yaml, bool signal) {
  options_.clusters_yaml = clusters_yaml;
  options_.extra_yaml = extra_yaml;
  // Write a new file and rename it over the old one, as a config management tool would,
  // so that the gateway never reads a half-written file.
  dir_.write("sparkgate.yaml.new", gateway_config_yaml(options_, port_, admin_port_));
  std::filesystem::rename(dir_.path() / "sparkgate.yaml.new", config_path_);
  if (signal && child_) ::kill(child_->pid(), SIGHUP);
}

Gateway::~Gateway() {
  if (child_) child_->stop();
}

std::string Gateway::address() const {
  if (direct_mode()) return options_.backends.at(0);
  return "127.0.0.1:" + std::to_string(port_);
}

bool Gateway::running() { return !child_ || child_->running(); }

std::string Gateway::stdout_text() const {
  if (direct_mode()) return "";
  return read_file(dir_.path() / "gateway.out");
}

std::string Gateway::stderr_text() const {
  if (!child_) return "";
  return read_file(dir_.path() / "gateway.err") + read_file(dir_.path() / "gateway.out");
}

std::optional<int> Gateway::terminate(std::chrono::milliseconds grace) {
  if (!child_) return std::nullopt;
  if (!child_->stop(grace)) return std::nullopt;
  return child_->exit_status();
}

pid_t Gateway::pid() const { return child_ ? child_->pid() : -1; }

long Gateway::vm_hwm_kib() const {
  if (!child_) return -1;
  std::ifstream in("/proc/" + std::to_string(child_->pid()) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// ---- gRPC client ----

namespace {

grpc::ChannelArguments channel_args(bool bdp_probe) {
  grpc::ChannelArguments args;
  if (!bdp_probe) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return args;
}

}  // namespace

std::shared_ptr<grpc::Channel> make_channel(const std::string& address, bool bdp_probe) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   channel_args(bdp_probe));
}

std::shared_ptr<grpc::Channel> make_tls_channel(const std::string& address,
                                                const std::string& root_certs,
                                                const std::string& target_name) {
  grpc::ChannelArguments args = channel_args(true);
  args.SetSslTargetNameOverride(target_name);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = root_certs;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

std::shared_ptr<grpc::Channel> make_mtls_channel(const std::string& address,
                                                 const std::string& root_certs,
                                                 const std::string& target_name,
                                                 const std::string& cert_pem,
                                                 const std::string& key_pem) {
  grpc::ChannelArguments args = channel_args(true);
  args.SetSslTargetNameOverride(target_name);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = root_certs;
  ssl.pem_cert_chain = cert_pem;
  ssl.pem_private_key = key_pem;
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(ssl), args);
}

std::string method_path(std::string_view rpc) {
  return "/spark.connect.SparkConnectService/" + std::string(rpc);
}

std::string CallResult::trailer(const std::string& key) const {
  auto it = trailing_metadata.find(key);
  return it == trailing_metadata.end() ? "" : it->second;
}

std::string CallResult::header(const std::string& key) const {
  auto it = initial_metadata.find(key);
  return it == initial_metadata.end() ? "" : it->second;
}

std::string CallResult::describe() const {
  std::ostringstream s;
  s << "status=" << status.error_code() << " message='" << status.error_message()
    << "' responses=" << responses.size() << (hung ? " HUNG" : "");
  return s.str();
}

StreamingCall::StreamingCall(const std::shared_ptr<grpc::Channel>& channel,
                             const std::string& method, const CallOptions& options)
    : stub_(channel), op_timeout_(options.op_timeout) {
  for (const auto& [k, v] : options.metadata) context_.AddMetadata(k, v);
  if (options.deadline) {
    context_.set_deadline(std::chrono::system_clock::now() + *options.deadline);
  }
  call_ = stub_.PrepareCall(&context_, method, &cq_);
  call_->StartCall(this);
  started_ = wait(this);
}

StreamingCall::~StreamingCall() {
  cq_.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
  }
}

bool StreamingCall::wait(void* tag) {
  void* got = nullptr;
  bool ok = false;
  const auto deadline = std::chrono::system_clock::now() + op_timeout_;
  const auto r = cq_.AsyncNext(&got, &ok, deadline);
  if (r == grpc::CompletionQueue::GOT_EVENT) return got == tag && ok;
  if (r == grpc::CompletionQueue::SHUTDOWN) return false;
  // Timed out: cancel, then collect the operation that is still pending (a cancelled
  // call completes every pending operation promptly).
  hung_ = true;
  context_.TryCancel();
  cq_.Next(&got, &ok);
  return false;
}

bool StreamingCall::write(const std::string& message) {
  if (!started_) return false;
  grpc::Slice slice(message);
  grpc::ByteBuffer buf(&slice, 1);
  call_->Write(buf, this);
  return wait(this);
}

bool StreamingCall::writes_done() {
  if (!started_) return false;
  call_->WritesDone(this);
  return wait(this);
}

std::optional<std::string> StreamingCall::read() {
  if (!started_) return std::nullopt;
  grpc::ByteBuffer buf;
  call_->Read(&buf, this);
  if (!wait(this)) return std::nullopt;
  std::vector<grpc::Slice> slices;
  std::string out;
  out.reserve(buf.Length());
  if (!buf.Dump(&slices).ok()) return std::nullopt;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

CallResult StreamingCall::finish() {
  CallResult result;
  call_->Finish(&result.status, this);
  wait(this);
  result.hung = hung_;
  result.initial_metadata = copy_metadata(context_.GetServerInitialMetadata());
  result.trailing_metadata = copy_metadata(context_.GetServerTrailingMetadata());
  return result;
}

CallResult call(const std::shared_ptr<grpc::Channel>& channel, std::string_view rpc,
                const std::vector<std::string>& requests, const CallOptions& options) {
  StreamingCall c(channel, method_path(rpc), options);
  bool ok = true;
  for (const auto& r : requests) {
    if (!(ok = c.write(r))) break;
  }
  if (ok) c.writes_done();
  std::vector<std::string> responses;
  while (auto msg = c.read()) responses.push_back(std::move(*msg));
  CallResult result = c.finish();
  result.responses = std::move(responses);
  return result;
}

int established_connections_to(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  char want[16];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  int count = 0;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (remote == want && state == "01") ++count;
  }
  return count;
}

FakeStats fake_stats(const FakeServer& fake) {
  auto channel = make_channel(fake.address());
  CallOptions options;
  options.metadata = {{"x-fake-stats", "1"}};
  options.op_timeout = 10s;
  const CallResult r = call(channel, "GetStatus", {request_for("GetStatus", "stats")}, options);
  if (!r.status.ok()) throw std::runtime_error("fake stats call failed: " + r.describe());
  FakeStats stats;
  stats.sent_bytes = std::stoull(r.trailer("x-fake-sent-bytes"));
  stats.sent_messages = std::stoull(r.trailer("x-fake-sent-messages"));
  stats.cancelled = std::stoull(r.trailer("x-fake-cancelled"));
  return stats;
}

// ---- data ----

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string fake_pattern(size_t n) {
  std::string data(n, '\0');
  for (size_t j = 0; j < n; ++j) data[j] = static_cast<char>(j * 7 + 1);
  return data;
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(out.data() + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<char>(rng());
  return out;
}

std::string execute_plan_request(const std::string& session_id, const std::string& operation_id,
                                 size_t plan_bytes) {
  view::ExecutePlanRequest head;
  head.set_session_id(session_id);
  head.mutable_user_context()->set_user_id("alice");
  std::string out = head.SerializeAsString();
  if (plan_bytes > 0) {
    // Plan { <unknown field 1000: bytes> }, like a large local relation would be.
    std::string plan;
    append_len_field(plan, 1000, random_bytes(plan_bytes, plan_bytes));
    append_len_field(out, 3, plan);
  }
  view::ExecutePlanRequest rest;
  rest.set_client_type("sparkgate-itest");
  if (!operation_id.empty()) rest.set_operation_id(operation_id);
  out += rest.SerializeAsString();
  return out;
}

std::string reattach_request(const std::string& session_id, const std::string& operation_id) {
  auto msg = with_envelope<view::ReattachExecuteRequest>(session_id);
  msg.set_operation_id(operation_id);
  return msg.SerializeAsString();
}

std::string request_for(std::string_view rpc, const std::string& session_id) {
  if (rpc == "ExecutePlan") return execute_plan_request(session_id, "op-" + session_id);
  if (rpc == "ReattachExecute") return reattach_request(session_id, "op-" + session_id);
  if (rpc == "AnalyzePlan") {
    return with_envelope<view::AnalyzePlanRequest>(session_id).SerializeAsString();
  }
  if (rpc == "Config") return with_envelope<view::ConfigRequest>(session_id).SerializeAsString();
  if (rpc == "AddArtifacts") {
    return with_envelope<view::AddArtifactsRequest>(session_id).SerializeAsString();
  }
  if (rpc == "ArtifactStatus") {
    return with_envelope<view::ArtifactStatusesRequest>(session_id).SerializeAsString();
  }
  if (rpc == "Interrupt") {
    auto m = with_envelope<view::InterruptRequest>(session_id);
    m.set_operation_id("op-" + session_id);
    return m.SerializeAsString();
  }
  if (rpc == "ReleaseExecute") {
    auto m = with_envelope<view::ReleaseExecuteRequest>(session_id);
    m.set_operation_id("op-" + session_id);
    return m.SerializeAsString();
  }
  if (rpc == "ReleaseSession") {
    return with_envelope<view::ReleaseSessionRequest>(session_id).SerializeAsString();
  }
  if (rpc == "FetchErrorDetails") {
    auto m = with_envelope<view::FetchErrorDetailsRequest>(session_id);
    m.set_error_id("err-1");
    return m.SerializeAsString();
  }
  if (rpc == "CloneSession") {
    auto m = with_envelope<view::CloneSessionRequest>(session_id);
    m.set_new_session_id("clone-of-" + session_id);
    return m.SerializeAsString();
  }
  if (rpc == "GetStatus") {
    return with_envelope<view::GetStatusRequest>(session_id).SerializeAsString();
  }
  throw std::invalid_argument("unknown rpc " + std::string(rpc));
}

std::string pb_len_field(uint32_t field, std::string_view bytes) {
  std::string out;
  append_len_field(out, field, bytes);
  return out;
}

std::string pb_varint_field(uint32_t field, uint64_t value) {
  std::string out;
  append_varint(out, static_cast<uint64_t>(field) << 3);
  append_varint(out, value);
  return out;
}

std::string with_user(const std::string& request, const std::string& user) {
  const std::string alice = pb_len_field(2, pb_len_field(1, "alice"));
  const size_t at = request.find(alice);
  if (at == std::string::npos) throw std::invalid_argument("the request has no user_context for alice");
  // A top-level field: its length may change without touching any other byte.
  std::string out = request;
  out.replace(at, alice.size(), pb_len_field(2, pb_len_field(1, user)));
  return out;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run_to_exit(const TempDir& dir, const std::string& tag, const std::vector<std::string>& argv) {
  const std::string err = (dir.path() / (tag + ".err")).string();
  Child child(argv, (dir.path() / (tag + ".out")).string(), err, nullptr);
  RunResult result;
  if (!child.wait_exit(10s)) {
    child.stop(100ms);
    result.stderr_text = "<did not exit within 10 s>";
    return result;
  }
  const int status = *child.exit_status();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.stderr_text = read_file(err);
  return result;
}

int line_of(const std::string& text, const std::string& marker) {
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(marker) != std::string::npos) return n;
  }
  return -1;
}

int tcp_connect_errno(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int result = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0 : errno;
  close(fd);
  return result;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

// ---- admin HTTP ----

// GET http://127.0.0.1:port<path> over a plain socket (HTTP/1.1, Connection: close).
HttpAnswer http_get(uint16_t port, const std::string& path) { return http_request(port, "GET", path); }

HttpAnswer http_request(uint16_t port, const std::string& method, const std::string& path,
                        const std::vector<std::string>& headers) {
  HttpAnswer out;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.error = "socket() failed";
    return out;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    out.error = std::string("connect: ") + strerror(errno);
    close(fd);
    return out;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  request += "\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    out.error = "send failed";
    close(fd);
    return out;
  }
  std::string response;
  const auto until = std::chrono::steady_clock::now() + 3s;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd pfd{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      out.error = "timed out";
      break;
    }
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  if (response.rfind("HTTP/1.", 0) == 0 && response.size() >= 12) {
    out.status = std::atoi(response.substr(9, 3).c_str());
  } else if (out.error.empty()) {
    out.error = "no HTTP status line in '" + response + "'";
  }
  const size_t body = response.find("\r\n\r\n");
  if (body != std::string::npos) out.body = response.substr(body + 4);
  return out;
}

// ---- TLS material ----

// The openssl CLI, found on PATH (Child uses execv, which does not search).
std::string openssl_bin() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    const std::string candidate = (d.empty() ? "." : d) + "/openssl";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error("the openssl CLI is not on PATH (Debian package 'openssl')");
}

void openssl(const TempDir& dir, const std::string& tag, std::vector<std::string> args) {
  args.insert(args.begin(), openssl_bin());
  const RunResult r = run_to_exit(dir, "openssl-" + tag, args);
  if (r.exit_code != 0) {
    throw std::runtime_error("openssl " + tag + " failed (exit " + std::to_string(r.exit_code) +
                             "): " + r.stderr_text);
  }
}

// A throwaway CA, a server certificate it signed for DNS:localhost and IP:127.0.0.1, and
// an unrelated key that matches no certificate. All P-256, valid for a day.
TestPki::TestPki() {
    const auto file = [&](const char* name) { return (dir.path() / name).string(); };
    ca_cert = file("ca.pem");
    server_cert = file("server.pem");
    server_key = file("server.key");
    other_key = file("other.key");
    other_ca_cert = file("other-ca.pem");
    const std::vector<std::string> ec_key = {"-newkey", "ec", "-pkeyopt",
                                             "ec_paramgen_curve:prime256v1", "-nodes"};
    std::vector<std::string> ca_args = {"req", "-x509", "-days", "1", "-subj",
                                        "/CN=sparkgate-itest-ca", "-keyout", file("ca.key"),
                                        "-out", ca_cert, "-addext",
                                        "basicConstraints=critical,CA:TRUE", "-addext",
                                        "keyUsage=critical,keyCertSign,cRLSign"};
    ca_args.insert(ca_args.begin() + 1, ec_key.begin(), ec_key.end());
    openssl(dir, "ca", ca_args);
    std::vector<std::string> other_ca_args = {"req", "-x509", "-days", "1", "-subj", "/CN=sparkgate-itest-other-ca",
                                              "-keyout", file("other-ca.key"), "-out", other_ca_cert};
    other_ca_args.insert(other_ca_args.begin() + 1, ec_key.begin(), ec_key.end());
    openssl(dir, "other-ca", other_ca_args);

    std::vector<std::string> csr_args = {"req", "-new", "-subj", "/CN=localhost", "-keyout",
                                         server_key, "-out", file("server.csr")};
    csr_args.insert(csr_args.begin() + 1, ec_key.begin(), ec_key.end());
    openssl(dir, "csr", csr_args);

    const std::string ext = dir.write("server.ext",
                                      "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                      "basicConstraints=CA:FALSE\n"
                                      "keyUsage=critical,digitalSignature\n"
                                      "extendedKeyUsage=serverAuth\n");
    openssl(dir, "sign",
            {"x509", "-req", "-days", "1", "-in", file("server.csr"), "-CA", ca_cert, "-CAkey",
             file("ca.key"), "-set_serial", "2", "-extfile", ext, "-out", server_cert});

    openssl(dir, "other-key", {"genpkey", "-algorithm", "EC", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-out", other_key});
    ca_pem = read_file(ca_cert);
    if (ca_pem.find("BEGIN CERTIFICATE") == std::string::npos) {
      throw std::runtime_error("openssl wrote no CA certificate to " + ca_cert);
    }
}

ClientCert issue_client_cert(const TestPki& pki, const std::string& tag, const std::string& subject,
                             const std::string& san, bool from_other_ca) {
  const auto file = [&](const std::string& name) { return (pki.dir.path() / name).string(); };
  ClientCert out;
  out.cert = file("client-" + tag + ".pem");
  out.key = file("client-" + tag + ".key");
  openssl(pki.dir, "client-csr-" + tag,
          {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-subj", subject, "-keyout", out.key, "-out", file("client-" + tag + ".csr")});
  std::string ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\n";
  if (!san.empty()) ext += "subjectAltName=" + san + "\n";
  const std::string ext_file = pki.dir.write("client-" + tag + ".ext", ext);
  const std::string ca = from_other_ca ? pki.other_ca_cert : pki.ca_cert;
  const std::string ca_key = file(from_other_ca ? "other-ca.key" : "ca.key");
  openssl(pki.dir, "client-sign-" + tag,
          {"x509", "-req", "-days", "1", "-in", file("client-" + tag + ".csr"), "-CA", ca, "-CAkey",
           ca_key, "-CAcreateserial", "-extfile", ext_file, "-out", out.cert});
  out.cert_pem = read_file(out.cert);
  out.key_pem = read_file(out.key);
  if (out.cert_pem.find("BEGIN CERTIFICATE") == std::string::npos) {
    throw std::runtime_error("openssl wrote no client certificate to " + out.cert);
  }
  return out;
}

// ---- metrics ----

std::optional<double> metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::strtod(line.c_str() + series.size() + 1, nullptr);
    }
  }
  return std::nullopt;
}

std::optional<double> scrape_metric(uint16_t admin_port, const std::string& series) {
  const HttpAnswer a = http_get(admin_port, "/metrics");
  if (a.status != 200) return std::nullopt;
  return metric_value(a.body, series);
}

// ---- Redis ----

std::string redis_server_bin() {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::istringstream in(path);
    std::string dir;
    while (std::getline(in, dir, ':')) {
      if (!dir.empty()) dirs.push_back(dir);
    }
  }
  dirs.push_back("/usr/bin");
  for (const auto& dir : dirs) {
    const fs::path candidate = fs::path(dir) / "redis-server";
    if (access(candidate.c_str(), X_OK) == 0) return fs::absolute(candidate).string();
  }
  throw std::runtime_error(
      "redis-server not found on PATH or in /usr/bin: the Redis tests need it "
      "(apt-get install redis-server, or run deploy/install-deps.sh)");
}

bool redis_answers_ping(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string got;
  static constexpr std::string_view kPing = "*1\r\n$4\r\nPING\r\n";
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, kPing.data(), kPing.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(kPing.size())) {
    char buf[64];
    while (got.size() < 7) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return got.rfind("+PONG\r\n", 0) == 0;
}

RedisServer::RedisServer(uint16_t port) {
  const std::string bin = redis_server_bin();
  // A kernel-chosen port can be taken by someone else before redis binds it: retry.
  for (int attempt = 0;; ++attempt) {
    port_ = port != 0 ? port : free_port();
    child_ = std::make_unique<Child>(
        std::vector<std::string>{bin, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir",
                                 dir_.path().string()},
        (dir_.path() / "redis.out").string(), (dir_.path() / "redis.err").string(), nullptr);
    const auto until = std::chrono::steady_clock::now() + 10s;
    bool exited = false;
    while (!redis_answers_ping(port_)) {
      if (!child_->running()) {
        exited = true;
        break;
      }
      if (std::chrono::steady_clock::now() >= until) {
        child_->stop(100ms);
        throw std::runtime_error("redis-server did not answer PING on " + address() +
                                 " within 10 s; output:\n" + tail(output()));
      }
      std::this_thread::sleep_for(20ms);
    }
    if (!exited) return;
    if (port != 0 || attempt == 2) {
      throw std::runtime_error("redis-server (" + bin + ") exited during startup on " +
                               address() + "; output:\n" + tail(output()));
    }
  }
}

RedisServer::~RedisServer() {
  if (child_) child_->stop(2000ms);
}

void RedisServer::kill() {
  if (child_ && child_->running()) {
    ::kill(child_->pid(), SIGKILL);
    child_->wait_exit(5000ms);
  }
}

std::string RedisServer::output() const {
  return read_file(dir_.path() / "redis.out") + read_file(dir_.path() / "redis.err");
}

std::unique_ptr<RedisServer> start_redis(uint16_t port) {
  return std::make_unique<RedisServer>(port);
}

}  // namespace sparkgate::itest
