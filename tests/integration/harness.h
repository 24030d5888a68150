// Integration-test harness: starts the fake Spark Connect backend
// (tests/fakes/fake_spark_server) and the real sparkgate binary as child processes on
// kernel-chosen ports, and talks gRPC to them with grpc++'s generic (raw bytes) API.
//
// Binaries come from the environment: SPARKGATE_BIN and FAKE_SPARK_BIN (meson's test()
// sets both). SPARKGATE_BIN=direct skips the gateway and points every client at the first
// backend instead; that validates the fake and the harness on their own (gateway-specific
// tests then fail, as they should).
//
// Every object here owns what it starts: destroying a FakeServer or Gateway stops its
// process (SIGTERM, then SIGKILL after a grace period) and reaps it. All functions are
// for the test thread unless stated otherwise; call() and StreamingCall may be used from
// any thread, one call per thread at a time.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sparkgate::itest {

using namespace std::chrono_literals;

// Path of the fake backend / gateway binaries; throws std::runtime_error if unset.
std::string fake_bin();
std::string gateway_bin();
// True if SPARKGATE_BIN=direct (no gateway; clients talk to the backend).
bool direct_mode();
// True if SPARKGATE_ITEST_ASAN=1: the binaries are the AddressSanitizer build (the asan
// suite of tests/run.sh sets it). Only bounds that ASan itself breaks look at it: the
// peak RSS of a process that keeps freed memory in ASan's quarantine.
bool asan_build();

// A port on 127.0.0.1 that the kernel reported free a moment ago.
uint16_t free_port();

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // Writes `text` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

// How long Child::stop waits after SIGTERM by default: 3 s, 10 s with asan_build(),
// where exit runs LeakSanitizer's check (a process killed after the grace never has it).
std::chrono::milliseconds default_stop_grace();

// A child process started with fork/exec. It dies with the test process (PDEATHSIG).
//
// With SPARKGATE_ITEST_SANITIZER_DIR set (the asan suite of tests/run.sh), the destructor
// copies the child's stderr into that directory as stderr.<pid> if it holds a sanitizer
// report: g++'s UBSan runtime writes its reports to stderr whatever UBSAN_OPTIONS's
// log_path says, and the original is usually in a TempDir that is about to be removed.
class Child {
 public:
  // stdout_fd: if non-null, receives the read end of a pipe connected to the child's
  // stdout (the caller owns it); otherwise stdout goes to stdout_path. stderr goes to
  // stderr_path; when that is stdout_path (or "" with a pipe), stderr is a dup of stdout:
  // one open file (or pipe) for both, as `>log 2>&1` makes it. Throws std::runtime_error
  // if fork fails.
  Child(const std::vector<std::string>& argv, const std::string& stdout_path,
        const std::string& stderr_path, int* stdout_fd);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // False once the process has exited (reaps it; exit_status() then has the status).
  bool running();
  // The raw waitpid status, once the process has exited.
  std::optional<int> exit_status() const { return status_; }
  // Waits up to `timeout` for the process to exit on its own.
  bool wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, wait `grace`, then SIGKILL; always reaps. Returns true if it exited within
  // the grace period.
  bool stop(std::chrono::milliseconds grace = default_stop_grace());

 private:
  std::string argv0_;
  std::string stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// The fake backend. Starting it waits for its "READY <port>" line (throws on failure).
class FakeServer {
 public:
  // port 0: let the kernel choose. extra_args are appended to the command line.
  explicit FakeServer(const std::vector<std::string>& extra_args = {}, uint16_t port = 0);
  ~FakeServer();

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Child& process() { return *child_; }
  std::string stderr_text() const;

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  int stdout_fd_ = -1;
  uint16_t port_ = 0;
};

// PEM files for a TLS listener (written as `tls: {cert: ..., key: ...}`).
struct ListenerTls {
  std::string cert;
  std::string key;
};

struct GatewayOptions {
  std::vector<std::string> backends;  // "127.0.0.1:PORT" each, all in cluster "local"
  std::optional<uint64_t> max_message_bytes;
  std::optional<ListenerTls> tls;  // unset: the listener speaks h2c
  std::optional<std::string> drain_timeout;  // drain.timeout, e.g. "10s"
  int workers = 2;
  std::string log_level = "info";
  // If set, replaces the generated `clusters:` and `routes:` sections (the text must
  // contain both); `backends` is then only used in direct mode.
  std::string clusters_yaml;
  // Appended to the generated config as is (top-level sections such as `sessions:`).
  std::string extra_yaml;
  std::vector<std::string> extra_args;  // appended to the gateway's command line
  // stdout and stderr into one file (gateway.out), as `>log 2>&1` does; stdout_text()
  // and stderr_text() then both return it.
  bool merge_output = false;
  std::string admin_token_file;  // admin.token_file, if set
  // mTLS on the listener (only with `tls`): written as tls.client_ca and
  // tls.require_client_cert when set; empty / unset leaves them out of the config.
  std::string tls_client_ca;
  std::optional<bool> tls_require_client_cert;
};

// Options for a gateway in front of the single backend `address`.
GatewayOptions one_backend(const std::string& address);

// The real gateway binary with a generated config. Starting it waits until its listener
// and its admin listener accept TCP connections; throws std::runtime_error (with its stderr) if it exits or
// does not listen within 15 s.
class Gateway {
 public:
  explicit Gateway(GatewayOptions options);
  ~Gateway();

  // Where clients connect: the gateway listener, or the first backend in direct mode.
  std::string address() const;
  uint16_t port() const { return port_; }
  // The admin HTTP listener's port (0 in direct mode).
  uint16_t admin_port() const { return admin_port_; }
  const std::string& config_path() const { return config_path_; }
  // Rewrites the config file with new clusters/routes and extra sections (same listener
  // and admin ports) and, if `signal`, sends SIGHUP.
  void rewrite_config(const std::string& clusters_yaml, const std::string& extra_yaml, bool signal = true);
  // True while the process is alive (always true in direct mode).
  bool running();
  std::string stderr_text() const;
  // What it wrote to stdout so far (the JSON access log).
  std::string stdout_text() const;
  // Peak resident set size (VmHWM) in KiB, from /proc/PID/status; -1 if unavailable.
  long vm_hwm_kib() const;
  // The directory with its config, its stdout (gateway.out) and its stderr
  // (gateway.err); removed with the Gateway.
  const std::filesystem::path& dir() const { return dir_.path(); }
  pid_t pid() const;
  // Sends SIGTERM and waits up to `grace`; returns the raw wait status if the process
  // exited in time, else nullopt (it is then killed). Later calls return the same status.
  std::optional<int> terminate(std::chrono::milliseconds grace);

 private:
  GatewayOptions options_;
  TempDir dir_;
  std::string config_path_;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;
  std::unique_ptr<Child> child_;
};

// The gateway YAML for `options`, listening on `port` with the admin API on
// `admin_port`.
std::string gateway_config_yaml(const GatewayOptions& options, uint16_t port,
                                uint16_t admin_port);

// A new channel (and so a new TCP connection: subchannels are not shared) with
// unlimited message sizes and grpc's own retries disabled. bdp_probe = false pins the
// client's receive windows (grpc otherwise grows them on its own timers), so that what
// the client transport buffers is fixed while the application is not reading.
std::shared_ptr<grpc::Channel> make_channel(const std::string& address, bool bdp_probe = true);
// Like make_channel, but TLS: the server certificate must chain to the PEM `root_certs`
// and match `target_name` (the name checked instead of the address's host).
std::shared_ptr<grpc::Channel> make_tls_channel(const std::string& address,
                                                const std::string& root_certs,
                                                const std::string& target_name);

// Like make_tls_channel, and the client presents the certificate chain `cert_pem` with
// the private key `key_pem` (both PEM contents, not paths).
std::shared_ptr<grpc::Channel> make_mtls_channel(const std::string& address,
                                                 const std::string& root_certs,
                                                 const std::string& target_name,
                                                 const std::string& cert_pem,
                                                 const std::string& key_pem);

// "/spark.connect.SparkConnectService/<rpc>"
std::string method_path(std::string_view rpc);

struct CallOptions {
  std::vector<std::pair<std::string, std::string>> metadata;
  std::optional<std::chrono::milliseconds> deadline;  // sent as grpc-timeout
  // Longest wait for any single operation before the harness cancels the call and marks
  // it hung.
  std::chrono::milliseconds op_timeout = 120s;
};

using Metadata = std::multimap<std::string, std::string>;

struct CallResult {
  grpc::Status status;
  std::vector<std::string> responses;
  Metadata initial_metadata;
  Metadata trailing_metadata;
  bool hung = false;  // some operation exceeded op_timeout

  // The first value of `key` in the trailing metadata, or "" if absent.
  std::string trailer(const std::string& key) const;
  // The first value of `key` in the initial metadata, or "" if absent.
  std::string header(const std::string& key) const;
  bool has_trailer(const std::string& key) const { return trailing_metadata.count(key) > 0; }
  // A one-line summary for failure messages.
  std::string describe() const;
};

// A gRPC call driven step by step, synchronously, over the generic async API with its own
// completion queue. Used where a test must control the pace (slow reader, cancel).
class StreamingCall {
 public:
  StreamingCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                const CallOptions& options);
  ~StreamingCall();

  bool write(const std::string& message);
  bool writes_done();
  // The next response message, or nullopt at end of stream (or on failure).
  std::optional<std::string> read();
  // Cancels from the client side (RST_STREAM CANCEL).
  void cancel() { context_.TryCancel(); }
  // Ends the call and collects status and metadata. Call once, last.
  CallResult finish();
  bool hung() const { return hung_; }

 private:
  bool wait(void* tag);

  grpc::ClientContext context_;
  grpc::CompletionQueue cq_;
  grpc::GenericStub stub_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  std::chrono::milliseconds op_timeout_;
  bool started_ = false;
  bool hung_ = false;
  std::vector<std::string> responses_;
};

// Sends `requests` (then half-closes), reads every response, and returns the outcome.
CallResult call(const std::shared_ptr<grpc::Channel>& channel, std::string_view rpc,
                const std::vector<std::string>& requests, const CallOptions& options = {});

// Number of ESTABLISHED IPv4 TCP connections on this machine whose remote end is
// 127.0.0.1:port (from /proc/net/tcp), i.e. client connections to a local server.
int established_connections_to(uint16_t port);

// Process counters of the fake (asked directly, not through the gateway).
struct FakeStats {
  uint64_t sent_bytes = 0;
  uint64_t sent_messages = 0;
  uint64_t cancelled = 0;
};
FakeStats fake_stats(const FakeServer& fake);

std::string sha256_hex(std::string_view data);
// The fake's arrow_batch.data content of size n (byte j is j * 7 + 1).
std::string fake_pattern(size_t n);
// n bytes from a fixed-seed PRNG.
std::string random_bytes(size_t n, uint64_t seed = 42);

// Serialized requests from the view protos with session_id and user_context.user_id
// "alice" set. ExecutePlan: `plan_bytes` > 0 adds a Plan (field 3) of that size holding
// an unknown field, serialized between user_context and the later fields as a real client
// would; `operation_id` may be empty.
std::string execute_plan_request(const std::string& session_id,
                                 const std::string& operation_id = "",
                                 size_t plan_bytes = 0);
std::string reattach_request(const std::string& session_id, const std::string& operation_id);
// Any of the 12 RPC names; a minimal valid request for it.
std::string request_for(std::string_view rpc, const std::string& session_id);

// Protobuf wire format by hand, for tests that must control every byte of a request:
// a length-delimited field (tag, length, bytes) and a varint field.
std::string pb_len_field(uint32_t field, std::string_view bytes);
std::string pb_varint_field(uint32_t field, uint64_t value);
// `request` (as built by request_for / execute_plan_request, whose user_context is
// {user_id: "alice"}) with that user_context replaced by {user_id: `user`}. Throws
// std::invalid_argument if the request holds no such user_context.
std::string with_user(const std::string& request, const std::string& user);

// The whole file, or "" if it cannot be read.
std::string read_file(const std::filesystem::path& path);

struct RunResult {
  int exit_code = -1;  // 128 + signal if killed; -1 if it did not exit in time
  std::string stderr_text;
};

// Runs argv (argv[0] an absolute path) with stdout/stderr in dir/<tag>.out/.err and
// waits up to 10 s for it to exit.
RunResult run_to_exit(const TempDir& dir, const std::string& tag, const std::vector<std::string>& argv);

// 1-based number of the first line of `text` that contains `marker`, or -1.
int line_of(const std::string& text, const std::string& marker);

// 0 if a TCP connect to 127.0.0.1:port succeeds, else its errno (ECONNREFUSED, ...).
int tcp_connect_errno(uint16_t port);

// Polls `cond` every 10 ms until it holds or `limit` passes; its final value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit);

// ---- admin HTTP ----

struct HttpAnswer {
  int status = 0;     // 0: no status line (see error)
  std::string body;
  std::string error;  // connect/send failure or timeout
};

// GET http://127.0.0.1:port<path> over a plain socket (HTTP/1.1, Connection: close).
HttpAnswer http_get(uint16_t port, const std::string& path);
// The same with any method and extra header lines ("Authorization: Bearer x"); no body.
HttpAnswer http_request(uint16_t port, const std::string& method, const std::string& path,
                        const std::vector<std::string>& headers = {});

// ---- TLS material ----

// The openssl CLI, found on PATH (Child uses execv, which does not search).
std::string openssl_bin();
// Runs `openssl args...` in `dir`; throws with its stderr if it fails.
void openssl(const TempDir& dir, const std::string& tag, std::vector<std::string> args);

// A throwaway CA, a server certificate it signed for DNS:localhost and IP:127.0.0.1, an
// unrelated second CA (the "wrong" one) and a key that matches no certificate. All P-256,
// valid for a day, generated with the openssl CLI at construction.
struct TestPki {
  TestPki();
  TempDir dir;
  std::string ca_cert;        // path
  std::string other_ca_cert;  // path
  std::string server_cert;    // path
  std::string server_key;     // path
  std::string other_key;      // path
  std::string ca_pem;         // contents of ca_cert
  // Arguments that make the fake backend serve TLS with the server certificate.
  std::vector<std::string> fake_args() const { return {"--tls-cert", server_cert, "--tls-key", server_key}; }
};

// A client certificate (P-256 key, valid for a day, extendedKeyUsage clientAuth) issued
// with the openssl CLI into pki.dir. `subject` is in openssl's -subj form, e.g.
// "/CN=alice/OU=etl/O=acme"; `san` (optional) is a subjectAltName value such as
// "DNS:alice.test,email:alice@test". `from_other_ca` signs it with TestPki's unrelated
// second CA instead of the trusted one. `tag` names the files; use a new one per
// certificate. Throws std::runtime_error if openssl fails.
struct ClientCert {
  std::string cert;      // path
  std::string key;       // path
  std::string cert_pem;  // contents of cert
  std::string key_pem;   // contents of key
};
ClientCert issue_client_cert(const TestPki& pki, const std::string& tag, const std::string& subject,
                             const std::string& san = "", bool from_other_ca = false);

// ---- metrics ----

// The value of one series in a Prometheus text exposition, e.g.
// metric_value(body, "sparkgate_auth_failures_total{reason=\"missing\"}"); nullopt if
// the series is absent. `series` must be written exactly as the exposition writes it.
std::optional<double> metric_value(const std::string& exposition, const std::string& series);
// The same, read from GET /metrics on the admin port; nullopt also if the GET fails.
std::optional<double> scrape_metric(uint16_t admin_port, const std::string& series);

// ---- Redis ----

// Path of redis-server: the first one on PATH, else /usr/bin/redis-server. Throws
// std::runtime_error if there is none (install the Debian package redis-server, as
// deploy/install-deps.sh does).
std::string redis_server_bin();

// A redis-server child on 127.0.0.1 with persistence off (`--save "" --appendonly no`),
// its files in a TempDir. Destroying it kills the server.
class RedisServer {
 public:
  // port 0: a free port chosen by the kernel. Returns once the server answers PING;
  // throws std::runtime_error (with its output) if it cannot start within 10 s.
  explicit RedisServer(uint16_t port = 0);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // SIGKILL and reap: the server dies at once, without a clean shutdown.
  void kill();
  bool running() { return child_ && child_->running(); }
  std::string output() const;

 private:
  TempDir dir_;
  std::unique_ptr<Child> child_;
  uint16_t port_ = 0;
};

// Starts a RedisServer (see above) on `port`, or on a free port if 0.
std::unique_ptr<RedisServer> start_redis(uint16_t port = 0);

// True if a Redis server on 127.0.0.1:port answers PING with PONG within about 1 s.
bool redis_answers_ping(uint16_t port);

}  // namespace sparkgate::itest
