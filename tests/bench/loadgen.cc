// loadgen: the benchmark's load generator (tests/bench/). One run of one load shape
// against one target; prints one JSON object on stdout and exits 0, or 1 if any RPC
// failed (the JSON then says why), 2 on a usage error.
//
//   loadgen --mode probe   --target H:P [--duration S]
//   loadgen --mode closed  --target H:P --concurrency C --channels K [--rpc Config|AnalyzePlan]
//                          [--warmup S] [--duration S] [--sessions N] [--users N]
//   loadgen --mode open    --target H:P --rate R --channels K [--warmup S] [--duration S] ...
//   loadgen --mode stream  --target H:P --streams S --channels K --messages N --message-bytes B
//   loadgen --mode churn   --target H:P --concurrency C --channels K --churn-sessions N
//   loadgen --mode idle    --target H:P --connections N [--baseline N] [--in-flight N]
//                          [--settle S] [--hold S]
// Every mode takes --proxy-pid and --backend-pid: the processes whose CPU time (and
// memory) is sampled at the edges of the measurement window.
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <iostream>
#include <numeric>

#include "grpc_load.h"
#include "idle_connections.h"

namespace {

using namespace sparkgate::bench;
namespace json = boost::json;

json::object latency_summary(std::vector<double> values) {
  json::object out;
  if (values.empty()) return out;
  std::sort(values.begin(), values.end());
  auto at = [&](double q) {
    const size_t index = std::min(values.size() - 1, static_cast<size_t>(q * static_cast<double>(values.size())));
    return values[index];
  };
  out["mean"] = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  out["p50"] = at(0.50);
  out["p90"] = at(0.90);
  out["p99"] = at(0.99);
  out["p999"] = at(0.999);
  out["max"] = values.back();
  out["count"] = values.size();
  return out;
}

json::value process_delta(const std::optional<ProcSample>& before, const std::optional<ProcSample>& after) {
  if (!before || !after) return nullptr;
  json::object out{{"cpu_s", after->cpu_s - before->cpu_s},
                   {"rss_kib", after->rss_kib},
                   {"hwm_kib", after->hwm_kib}};
  if (before->allocations && after->allocations) {
    out["allocations"] = *after->allocations - *before->allocations;
    out["frees"] = *after->frees - *before->frees;
    out["alloc_bytes"] = *after->alloc_bytes - *before->alloc_bytes;
  }
  return out;
}

json::object load_json(const LoadResult& r) {
  json::object out;
  out["rpcs"] = r.rpcs;
  out["errors"] = r.errors;
  out["first_error"] = r.first_error;
  out["seconds"] = r.seconds;
  out["rps"] = r.seconds > 0 ? static_cast<double>(r.rpcs) / r.seconds : 0.0;
  out["proxy"] = process_delta(r.proxy_before, r.proxy_after);
  out["backend"] = process_delta(r.backend_before, r.backend_after);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sparkgate benchmark load generator"};
  std::string mode;
  LoadOptions load;
  IdleOptions idle;
  app.add_option("--mode", mode, "probe, closed, open, stream, churn or idle")
      ->required()
      ->check(CLI::IsMember({"probe", "closed", "open", "stream", "churn", "idle"}));
  app.add_option("--target", load.target, "host:port")->required();
  app.add_option("--channels", load.channels, "HTTP/2 connections (grpc channels)")->check(CLI::Range(1, 10000));
  app.add_option("--concurrency", load.concurrency, "closed loop: RPCs in flight; churn: sessions in flight")
      ->check(CLI::Range(1, 100000));
  app.add_option("--rate", load.rate, "open loop: RPCs per second");
  app.add_option("--warmup", load.warmup_s, "seconds before the window");
  app.add_option("--duration", load.duration_s, "window seconds (probe: how long to retry)");
  app.add_option("--rpc", load.rpc, "unary RPC of the closed/open loop")->check(CLI::IsMember({"Config", "AnalyzePlan"}));
  app.add_option("--sessions", load.sessions, "session ids the unary loops cycle through")->check(CLI::Range(1, 10000000));
  app.add_option("--users", load.users, "user ids")->check(CLI::Range(1, 10000000));
  app.add_option("--streams", load.streams, "stream: ExecutePlan calls at once")->check(CLI::Range(1, 10000));
  app.add_option("--messages", load.messages, "stream: responses per call")->check(CLI::Range(0LL, 1LL << 40));
  app.add_option("--message-bytes", load.message_bytes, "stream: arrow_batch bytes")->check(CLI::Range(0LL, 1LL << 30));
  app.add_option("--churn-sessions", load.churn_sessions, "churn: sessions")->check(CLI::Range(1LL, 1LL << 40));
  app.add_option("--max-outstanding", load.max_outstanding, "open loop: in-flight cap");
  app.add_option("--connections", idle.connections, "idle: connections")->check(CLI::Range(1, 1000000));
  app.add_option("--baseline", idle.baseline, "idle: connections at the first sample");
  app.add_option("--in-flight", idle.in_flight, "idle: connections set up at once")->check(CLI::Range(1, 100000));
  app.add_option("--settle", idle.settle_s, "idle: seconds before each sample");
  app.add_option("--hold", idle.hold_s, "idle: seconds to hold after the last sample");
  app.add_option("--proxy-pid", load.proxy_pid, "process to sample");
  app.add_option("--backend-pid", load.backend_pid, "second process to sample");
  app.add_option("--proxy-alloc-file", load.proxy_alloc_file,
                 "the proxy's ALLOC_COUNTER_FILE (alloc_counter.so): heap allocations in the window");
  CLI11_PARSE(app, argc, argv);

  json::object out{{"mode", mode}, {"target", load.target}};
  bool ok = true;
  if (mode == "probe") {
    auto error = probe(load.target, load.duration_s);
    ok = !error;
    out["errors"] = ok ? 0 : 1;
    out["first_error"] = error.value_or("");
  } else if (mode == "idle") {
    const auto colon = load.target.rfind(':');
    if (colon == std::string::npos) {
      std::cerr << "loadgen: --target must be host:port\n";
      return 2;
    }
    idle.host = load.target.substr(0, colon);
    idle.port = std::stoi(load.target.substr(colon + 1));
    idle.proxy_pid = load.proxy_pid;
    idle.users = load.users;
    const IdleResult r = run_idle_connections(idle);
    ok = r.errors == 0;
    out["connections"] = idle.connections;
    out["baseline_connections"] = std::min(idle.baseline, idle.connections);
    out["completed"] = r.completed;
    out["errors"] = r.errors;
    out["first_error"] = r.first_error;
    out["setup_s"] = r.setup_s;
    if (r.at_baseline && r.at_full) {
      const int extra = idle.connections - std::min(idle.baseline, idle.connections);
      const double delta_kib = static_cast<double>(r.at_full->rss_kib) - static_cast<double>(r.at_baseline->rss_kib);
      out["proxy"] = json::object{{"rss_baseline_kib", r.at_baseline->rss_kib},
                                  {"rss_kib", r.at_full->rss_kib},
                                  {"hwm_kib", r.at_full->hwm_kib},
                                  {"cpu_s", r.at_full->cpu_s - r.at_baseline->cpu_s},
                                  {"rss_per_connection_kib", extra > 0 ? delta_kib / extra : 0.0}};
    }
  } else {
    LoadResult r;
    if (mode == "closed") r = run_closed_loop(load);
    if (mode == "open") r = run_open_loop(load);
    if (mode == "stream") r = run_streams(load);
    if (mode == "churn") r = run_churn(load);
    ok = r.errors == 0;
    json::object body = load_json(r);
    for (auto& [key, value] : body) out[key] = value;
    if (mode == "closed" || mode == "open") {
      out["latency_us"] = latency_summary(r.latencies_us);
      out["dropped"] = r.dropped;
    }
    if (mode == "stream") {
      out["bytes"] = r.bytes;
      out["messages"] = r.messages;
      out["gbps"] = r.seconds > 0 ? static_cast<double>(r.bytes) / r.seconds / 1e9 : 0.0;
      out["stream_seconds"] = latency_summary(r.latencies_us);
    }
    if (mode == "churn") {
      out["sessions"] = r.sessions;
      out["sessions_per_s"] = r.seconds > 0 ? static_cast<double>(r.sessions) / r.seconds : 0.0;
      out["session_latency_us"] = latency_summary(r.latencies_us);
    }
  }
  out["ok"] = ok;
  std::cout << json::serialize(out) << std::endl;
  std::fflush(stdout);
  // grpc's threads may still be winding down; static destructors would race them.
  _exit(ok ? 0 : 1);
}
