#include "grpc_load.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "bench_messages.h"

namespace sparkgate::bench {
namespace {

using Clock = std::chrono::steady_clock;

// grpc keeps a pointer to the method name for the whole call: these live forever.
const std::string kConfig = "/spark.connect.SparkConnectService/Config";
const std::string kAnalyzePlan = "/spark.connect.SparkConnectService/AnalyzePlan";
const std::string kExecutePlan = "/spark.connect.SparkConnectService/ExecutePlan";
const std::string kReleaseSession = "/spark.connect.SparkConnectService/ReleaseSession";

// Churn sessions run ExecutePlan with this many responses of this size.
constexpr long long kChurnMessages = 2;
constexpr long long kChurnMessageBytes = 1024;
// How long a run waits for its RPCs to finish after the window has closed.
constexpr auto kDrainTimeout = std::chrono::seconds(60);

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// True if the response message starts with field 1 = `session_id`.
bool echoes(const grpc::ByteBuffer& response, const std::string& session_id) {
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return false;
  std::string prefix;
  for (const auto& s : slices) {
    prefix.append(reinterpret_cast<const char*>(s.begin()), std::min<size_t>(s.size(), 256 - prefix.size()));
    if (prefix.size() == 256) break;
  }
  auto id = scan_field1(prefix);
  return id && *id == session_id;
}

Envelope envelope_for(int index, int users, std::mt19937_64& rng) {
  return Envelope{make_uuid(rng), "bench-user-" + std::to_string(index % std::max(users, 1)),
                  std::string(kPythonClientType)};
}

// The channels of one run, each its own connection.
class Channels {
 public:
  Channels(const std::string& target, int count) {
    for (int i = 0; i < std::max(count, 1); ++i) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(-1);
      args.SetMaxSendMessageSize(-1);
      args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
      // A private subchannel pool and a distinct argument: one connection per channel.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("sparkgate.bench.channel", i);
      channels_.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channels_.back()));
    }
  }

  // False if some channel is not connected within `timeout_s`.
  bool wait_connected(double timeout_s) {
    const auto deadline = std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::system_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    for (auto& channel : channels_) {
      if (!channel->WaitForConnected(deadline)) return false;
    }
    return true;
  }

  grpc::GenericStub& stub(size_t index) { return *stubs_[index % stubs_.size()]; }
  size_t size() const { return stubs_.size(); }

 private:
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
};

// Errors from any thread.
class Errors {
 public:
  void add(const std::string& what) {
    std::lock_guard lock(mu_);
    if (count_++ == 0) first_ = what;
  }
  void add(const grpc::Status& status, const std::string& rpc) {
    add(rpc + ": grpc-status " + std::to_string(status.error_code()) + " " + status.error_message());
  }
  void copy_to(LoadResult& result) {
    std::lock_guard lock(mu_);
    result.errors = count_;
    result.first_error = first_;
  }

 private:
  std::mutex mu_;
  uint64_t count_ = 0;
  std::string first_;
};

using UnaryDone = std::function<void(const grpc::Status&, const grpc::ByteBuffer&)>;

// One unary call; frees itself after `done` returns.
struct UnaryCall {
  grpc::ClientContext ctx;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
  UnaryDone done;
};

void start_unary(grpc::GenericStub& stub, const std::string& method, grpc::ByteBuffer request,
                 UnaryDone done) {
  auto* call = new UnaryCall;
  call->request = std::move(request);
  call->done = std::move(done);
  stub.UnaryCall(&call->ctx, method, grpc::StubOptions(), &call->request, &call->response,
                 [call](grpc::Status status) {
                   call->done(status, call->response);
                   delete call;
                 });
}

// One ExecutePlan call reading every response; frees itself after `done` returns.
class StreamCall final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // messages, bytes, and whether the first response echoed the session_id.
  using Done = std::function<void(const grpc::Status&, uint64_t, uint64_t, bool)>;

  static void start(grpc::GenericStub& stub, const std::string& request, const std::string& session_id,
                    long long messages, long long message_bytes, Done done) {
    new StreamCall(stub, request, session_id, messages, message_bytes, std::move(done));
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (messages_ == 0) echoed_ = echoes(response_, session_id_);
    bytes_ += response_.Length();
    ++messages_;
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    done_(status, messages_, bytes_, echoed_);
    delete this;
  }

 private:
  StreamCall(grpc::GenericStub& stub, const std::string& request, const std::string& session_id,
             long long messages, long long message_bytes, Done done)
      : request_(to_buffer(request)), session_id_(session_id), done_(std::move(done)) {
    ctx_.AddMetadata("x-bench-messages", std::to_string(messages));
    ctx_.AddMetadata("x-bench-message-bytes", std::to_string(message_bytes));
    stub.PrepareBidiStreamingCall(&ctx_, kExecutePlan, grpc::StubOptions(), this);
    StartWriteLast(&request_, grpc::WriteOptions());
    StartRead(&response_);
    StartCall();
  }

  grpc::ClientContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::string session_id_;
  Done done_;
  uint64_t messages_ = 0;
  uint64_t bytes_ = 0;
  bool echoed_ = false;
};

// Counts down the callers of a run; the run's thread waits for zero.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void count_down() {
    std::lock_guard lock(mu_);
    if (--count_ == 0) cv_.notify_all();
  }
  bool wait_for(Clock::duration timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return count_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

void sample(const LoadOptions& options, std::optional<ProcSample>& proxy, std::optional<ProcSample>& backend) {
  proxy = sample_process(options.proxy_pid, options.proxy_alloc_file);
  backend = sample_process(options.backend_pid);
}

// One Config RPC on every channel, so that connections exist before a window opens.
std::optional<std::string> warm_up(Channels& channels, int users) {
  if (!channels.wait_connected(10)) return "cannot connect within 10 s";
  auto errors = std::make_shared<Errors>();
  auto latch = std::make_shared<Latch>(static_cast<int>(channels.size()));
  std::mt19937_64 rng(std::random_device{}());
  for (size_t i = 0; i < channels.size(); ++i) {
    const Envelope env = envelope_for(static_cast<int>(i), users, rng);
    start_unary(channels.stub(i), kConfig, to_buffer(config_request(env)),
                [errors, latch, id = env.session_id](const grpc::Status& status, const grpc::ByteBuffer& resp) {
                  if (!status.ok()) {
                    errors->add(status, "Config");
                  } else if (!echoes(resp, id)) {
                    errors->add("Config: the response does not echo the session_id");
                  }
                  latch->count_down();
                });
  }
  if (!latch->wait_for(std::chrono::seconds(10))) return "warm-up Config RPCs did not finish within 10 s";
  LoadResult r;
  errors->copy_to(r);
  if (r.errors > 0) return r.first_error;
  return std::nullopt;
}

// The request messages the unary loops cycle through, one per session.
struct SessionRequests {
  std::vector<std::string> session_ids;
  std::vector<grpc::ByteBuffer> requests;
};

SessionRequests session_requests(const LoadOptions& options) {
  SessionRequests out;
  std::mt19937_64 rng(std::random_device{}());
  for (int i = 0; i < std::max(options.sessions, 1); ++i) {
    const Envelope env = envelope_for(i, options.users, rng);
    out.session_ids.push_back(env.session_id);
    out.requests.push_back(to_buffer(options.rpc == "AnalyzePlan" ? analyze_plan_request(env) : config_request(env)));
  }
  return out;
}

const std::string& unary_method(const std::string& rpc) { return rpc == "AnalyzePlan" ? kAnalyzePlan : kConfig; }

LoadResult failed(const std::string& why) {
  LoadResult r;
  r.errors = 1;
  r.first_error = why;
  return r;
}

// A run's last reference must not be dropped by a completion callback: that would destroy
// its grpc channels on one of grpc's own threads, which grpc 1.51 answers with a double
// free of the channel's callback completion queue. Waits until this thread holds the only
// reference; if callbacks still hold it after 5 s, keeps the run alive for good (the
// process exits right after a run).
template <typename Run>
void release_here(std::shared_ptr<Run>& run) {
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (run.use_count() > 1 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (run.use_count() > 1) new std::shared_ptr<Run>(run);  // deliberately never freed
  run.reset();
}

}  // namespace

std::optional<std::string> probe(const std::string& target, double timeout_s) {
  const auto deadline = Clock::now() + seconds(timeout_s);
  std::string last = "no attempt";
  while (true) {
    Channels channels(target, 1);
    if (channels.wait_connected(std::min(timeout_s, 1.0))) {
      auto error = warm_up(channels, 1);
      if (!error) return std::nullopt;
      last = *error;
    } else {
      last = "cannot connect to " + target;
    }
    if (Clock::now() >= deadline) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

LoadResult run_closed_loop(const LoadOptions& options) {
  struct Run {
    explicit Run(const LoadOptions& o)
        : options(o), channels(o.target, o.channels), sessions(session_requests(o)), latencies(o.concurrency),
          latch(o.concurrency) {}
    LoadOptions options;
    Channels channels;
    SessionRequests sessions;
    Errors errors;
    std::atomic<uint64_t> next_session{0};
    Clock::time_point window_start, window_end;
    std::vector<std::vector<double>> latencies;  // per caller: its calls are sequential
    Latch latch;
    std::function<void(int)> issue;
  };
  auto run = std::make_shared<Run>(options);
  if (auto error = warm_up(run->channels, options.users)) return failed(*error);
  const std::string& method = unary_method(options.rpc);
  std::weak_ptr<Run> weak = run;
  run->issue = [weak, m = &method](int caller) {
    auto run = weak.lock();
    if (!run) return;
    const uint64_t n = run->next_session.fetch_add(1) % run->sessions.requests.size();
    const auto start = Clock::now();
    start_unary(run->channels.stub(caller), *m, run->sessions.requests[n],
                [run, caller, n, start](const grpc::Status& status, const grpc::ByteBuffer& resp) {
                  const auto end = Clock::now();
                  if (!status.ok()) {
                    run->errors.add(status, run->options.rpc);
                  } else if (!echoes(resp, run->sessions.session_ids[n])) {
                    run->errors.add(run->options.rpc + ": the response does not echo the session_id");
                  }
                  if (end >= run->window_start && end <= run->window_end) {
                    run->latencies[caller].push_back(micros(end - start));
                  }
                  if (end > run->window_end) {
                    run->latch.count_down();
                    return;
                  }
                  run->issue(caller);
                });
  };
  const auto now = Clock::now();
  run->window_start = now + seconds(options.warmup_s);
  run->window_end = run->window_start + seconds(options.duration_s);
  LoadResult result;
  for (int i = 0; i < options.concurrency; ++i) run->issue(i);
  std::this_thread::sleep_until(run->window_start);
  sample(options, result.proxy_before, result.backend_before);
  std::this_thread::sleep_until(run->window_end);
  sample(options, result.proxy_after, result.backend_after);
  if (!run->latch.wait_for(kDrainTimeout)) run->errors.add("RPCs still in flight 60 s after the window closed");
  for (auto& l : run->latencies) result.latencies_us.insert(result.latencies_us.end(), l.begin(), l.end());
  result.rpcs = result.latencies_us.size();
  result.seconds = options.duration_s;
  run->errors.copy_to(result);
  release_here(run);
  return result;
}

LoadResult run_open_loop(const LoadOptions& options) {
  struct Run {
    explicit Run(const LoadOptions& o) : channels(o.target, o.channels), sessions(session_requests(o)) {}
    Channels channels;
    SessionRequests sessions;
    Errors errors;
    std::mutex mu;
    std::vector<double> latencies;
    std::atomic<long long> outstanding{0};
    Clock::time_point window_start, window_end;
  };
  auto run = std::make_shared<Run>(options);
  if (auto error = warm_up(run->channels, options.users)) return failed(*error);
  if (options.rate <= 0) return failed("open loop needs --rate > 0");
  const std::string& method = unary_method(options.rpc);
  const std::string rpc = options.rpc;
  const auto start = Clock::now();
  run->window_start = start + seconds(options.warmup_s);
  run->window_end = run->window_start + seconds(options.duration_s);
  LoadResult result;
  bool sampled_start = false;
  for (uint64_t i = 0;; ++i) {
    const auto scheduled = start + seconds(static_cast<double>(i) / options.rate);
    if (scheduled >= run->window_end) break;
    std::this_thread::sleep_until(scheduled);
    const bool in_window = scheduled >= run->window_start;
    if (in_window && !sampled_start) {
      sample(options, result.proxy_before, result.backend_before);
      sampled_start = true;
    }
    if (run->outstanding.load() >= options.max_outstanding) {
      if (in_window) ++result.dropped;
      continue;
    }
    ++run->outstanding;
    const uint64_t n = i % run->sessions.requests.size();
    start_unary(run->channels.stub(i), method, run->sessions.requests[n],
                [run, n, scheduled, in_window, rpc](const grpc::Status& status, const grpc::ByteBuffer& resp) {
                  const auto end = Clock::now();
                  if (!status.ok()) {
                    run->errors.add(status, rpc);
                  } else if (!echoes(resp, run->sessions.session_ids[n])) {
                    run->errors.add(rpc + ": the response does not echo the session_id");
                  }
                  if (in_window) {
                    std::lock_guard lock(run->mu);
                    run->latencies.push_back(micros(end - scheduled));
                  }
                  --run->outstanding;
                });
  }
  std::this_thread::sleep_until(run->window_end);
  sample(options, result.proxy_after, result.backend_after);
  const auto drain_deadline = Clock::now() + kDrainTimeout;
  while (run->outstanding.load() > 0 && Clock::now() < drain_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (run->outstanding.load() > 0) run->errors.add("RPCs still in flight 60 s after the window closed");
  {
    std::lock_guard lock(run->mu);
    result.latencies_us = run->latencies;
  }
  result.rpcs = result.latencies_us.size();
  result.seconds = options.duration_s;
  run->errors.copy_to(result);
  release_here(run);
  return result;
}

LoadResult run_streams(const LoadOptions& options) {
  struct Run {
    explicit Run(const LoadOptions& o) : channels(o.target, o.channels), latch(o.streams) {}
    Channels channels;
    Errors errors;
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> messages{0};
    Latch latch;
    std::mutex mu;
    std::vector<double> durations_us;
  };
  auto run = std::make_shared<Run>(options);
  if (auto error = warm_up(run->channels, options.users)) return failed(*error);
  std::mt19937_64 rng(std::random_device{}());
  LoadResult result;
  sample(options, result.proxy_before, result.backend_before);
  const auto start = Clock::now();
  const long long expected = options.messages;
  for (int i = 0; i < options.streams; ++i) {
    const Envelope env = envelope_for(i, options.users, rng);
    StreamCall::start(run->channels.stub(i), execute_plan_request(env, make_uuid(rng)), env.session_id,
                      options.messages, options.message_bytes,
                      [run, start, expected](const grpc::Status& status, uint64_t messages, uint64_t bytes, bool echoed) {
                        const auto end = Clock::now();
                        if (!status.ok()) {
                          run->errors.add(status, "ExecutePlan");
                        } else if (static_cast<long long>(messages) != expected) {
                          run->errors.add("ExecutePlan: " + std::to_string(messages) + " responses, expected " +
                                          std::to_string(expected));
                        } else if (expected > 0 && !echoed) {
                          run->errors.add("ExecutePlan: the response does not echo the session_id");
                        }
                        run->bytes += bytes;
                        run->messages += messages;
                        {
                          std::lock_guard lock(run->mu);
                          run->durations_us.push_back(micros(end - start));
                        }
                        run->latch.count_down();
                      });
  }
  if (!run->latch.wait_for(seconds(std::max(options.duration_s, 1.0)) + kDrainTimeout * 10)) {
    run->errors.add("ExecutePlan streams did not finish");
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  sample(options, result.proxy_after, result.backend_after);
  result.bytes = run->bytes;
  result.messages = run->messages;
  result.rpcs = static_cast<uint64_t>(options.streams);
  {
    std::lock_guard lock(run->mu);
    result.latencies_us = run->durations_us;
  }
  run->errors.copy_to(result);
  release_here(run);
  return result;
}

LoadResult run_churn(const LoadOptions& options) {
  struct Caller {
    std::mt19937_64 rng;
    Envelope env;
    Clock::time_point started;
    std::vector<double> latencies;
  };
  struct Run {
    explicit Run(const LoadOptions& o) : options(o), channels(o.target, o.channels), latch(o.concurrency) {}
    LoadOptions options;
    Channels channels;
    Errors errors;
    std::atomic<long long> claimed{0};
    std::atomic<uint64_t> rpcs{0};
    std::atomic<uint64_t> sessions{0};
    std::vector<Caller> callers;
    Latch latch;
    std::function<void(int, int)> step;
  };
  auto run = std::make_shared<Run>(options);
  for (int i = 0; i < options.concurrency; ++i) {
    run->callers.push_back(Caller{std::mt19937_64(std::random_device{}() + static_cast<uint64_t>(i)), {}, {}, {}});
  }
  if (auto error = warm_up(run->channels, options.users)) return failed(*error);
  std::weak_ptr<Run> weak = run;
  // step(caller, n): n = 0 starts a new session, then Config, ExecutePlan, AnalyzePlan,
  // ReleaseSession; n = 4 records the finished session.
  run->step = [weak](int caller_index, int n) {
    auto run = weak.lock();
    if (!run) return;
    Caller& caller = run->callers[caller_index];
    auto next = [run, caller_index, n](const grpc::Status& status, const std::string& rpc, bool ok) {
      run->rpcs++;
      if (!status.ok()) {
        run->errors.add(status, rpc);
      } else if (!ok) {
        run->errors.add(rpc + ": wrong response (session_id not echoed or too few messages)");
      }
      run->step(caller_index, n + 1);
    };
    // The caller's env is read when the answer arrives: case 0 replaces it first.
    auto unary_next = [run, next, caller_index](const std::string& rpc) {
      return [run, next, caller_index, rpc](const grpc::Status& status, const grpc::ByteBuffer& resp) {
        next(status, rpc, !status.ok() || echoes(resp, run->callers[caller_index].env.session_id));
      };
    };
    grpc::GenericStub& stub = run->channels.stub(caller_index);
    switch (n) {
      case 0: {
        if (caller.env.session_id.size() > 0) {
          caller.latencies.push_back(micros(Clock::now() - caller.started));
          run->sessions++;
        }
        if (run->claimed.fetch_add(1) >= run->options.churn_sessions) {
          run->latch.count_down();
          return;
        }
        caller.env = envelope_for(static_cast<int>(caller.rng() % 1000000), run->options.users, caller.rng);
        caller.started = Clock::now();
        start_unary(stub, kConfig, to_buffer(config_request(caller.env)), unary_next("Config"));
        return;
      }
      case 1:
        StreamCall::start(stub, execute_plan_request(caller.env, make_uuid(caller.rng)), caller.env.session_id,
                          kChurnMessages, kChurnMessageBytes,
                          [next](const grpc::Status& status, uint64_t messages, uint64_t, bool echoed) {
                            next(status, "ExecutePlan",
                                 !status.ok() || (echoed && static_cast<long long>(messages) == kChurnMessages));
                          });
        return;
      case 2:
        start_unary(stub, kAnalyzePlan, to_buffer(analyze_plan_request(caller.env)), unary_next("AnalyzePlan"));
        return;
      case 3:
        start_unary(stub, kReleaseSession, to_buffer(release_session_request(caller.env)),
                    unary_next("ReleaseSession"));
        return;
      default:
        run->step(caller_index, 0);
        return;
    }
  };
  LoadResult result;
  sample(options, result.proxy_before, result.backend_before);
  const auto start = Clock::now();
  for (int i = 0; i < options.concurrency; ++i) run->step(i, 0);
  if (!run->latch.wait_for(seconds(options.duration_s) + kDrainTimeout * 10)) {
    run->errors.add("churn did not finish");
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  sample(options, result.proxy_after, result.backend_after);
  result.rpcs = run->rpcs;
  result.sessions = run->sessions;
  for (auto& c : run->callers) result.latencies_us.insert(result.latencies_us.end(), c.latencies.begin(), c.latencies.end());
  run->errors.copy_to(result);
  release_here(run);
  return result;
}

}  // namespace sparkgate::bench
