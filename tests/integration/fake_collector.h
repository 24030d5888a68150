// A fake OTLP/HTTP collector for the tracing tests: a thread that accepts HTTP/1.1 POSTs
// on 127.0.0.1 (a port from the kernel), records each request (path, headers, body), and
// answers as told: a status code, after a delay, or by closing the connection. Requests
// are parsed as ExportTraceServiceRequest with the gateway's OTLP view protos.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "otlp_trace_view.pb.h"

namespace sparkgate::itest {

struct CollectedRequest {
  std::string method, path;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

class FakeCollector {
 public:
  FakeCollector();
  ~FakeCollector();
  FakeCollector(const FakeCollector&) = delete;
  FakeCollector& operator=(const FakeCollector&) = delete;

  uint16_t port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // How later requests are answered.
  void answer(int status, std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    status_ = status;
    delay_ms_ = delay.count();
  }

  std::vector<CollectedRequest> requests() const;
  // Every span of every request received so far.
  std::vector<otlp::Span> spans() const;
  // Waits until at least `n` spans arrived (or `limit`); true if they did.
  bool wait_spans(size_t n, std::chrono::milliseconds limit) const;
  size_t request_count() const;

 private:
  void serve();
  void handle(int fd);

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> status_{200};
  std::atomic<int64_t> delay_ms_{0};
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<CollectedRequest> requests_;
  std::thread thread_;
  std::vector<std::thread> handlers_;
};

// The value of attribute `key` of `span` as text (strings as is, ints in decimal), or "".
std::string attribute(const otlp::Span& span, const std::string& key);
std::string hex(const std::string& bytes);

}  // namespace sparkgate::itest
