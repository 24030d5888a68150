#include "fake_collector.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace sparkgate::itest {

FakeCollector::FakeCollector() {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0)
    throw std::runtime_error("fake collector: cannot listen");
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { serve(); });
}

FakeCollector::~FakeCollector() {
  stop_ = true;
  thread_.join();
  for (auto& t : handlers_) t.join();
  ::close(listen_fd_);
}

void FakeCollector::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    handlers_.emplace_back([this, fd] { handle(fd); });
  }
}

void FakeCollector::handle(int fd) {
  std::string data;
  char buf[65536];
  size_t header_end = std::string::npos;
  size_t want = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!stop_ && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos && (header_end = data.find("\r\n\r\n")) != std::string::npos) {
      std::string lower = data.substr(0, header_end);
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      auto cl = lower.find("content-length:");
      want = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 15));
    }
    if (header_end != std::string::npos && data.size() >= header_end + 4 + want) break;
  }
  if (header_end == std::string::npos) {
    ::close(fd);
    return;
  }
  CollectedRequest r;
  size_t line_end = data.find("\r\n");
  std::string first = data.substr(0, line_end);
  r.method = first.substr(0, first.find(' '));
  r.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
  size_t pos = line_end + 2;
  while (pos < header_end) {
    size_t e = data.find("\r\n", pos);
    std::string line = data.substr(pos, e - pos);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers[name] = value;
    }
    pos = e + 2;
  }
  r.body = data.substr(header_end + 4, want);
  const auto delay = std::chrono::milliseconds(delay_ms_.load());
  const int status = status_.load();
  {
    std::lock_guard lock(mu_);
    requests_.push_back(std::move(r));
  }
  cv_.notify_all();
  auto until = std::chrono::steady_clock::now() + delay;
  while (!stop_ && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (status > 0) {
    std::string body = status == 200 ? std::string() : std::string("collector says no");
    std::string res = "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/x-protobuf\r\n" +
                      "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    (void)!::write(fd, res.data(), res.size());
  }
  ::close(fd);
}

std::vector<CollectedRequest> FakeCollector::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

size_t FakeCollector::request_count() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

std::vector<otlp::Span> FakeCollector::spans() const {
  std::vector<otlp::Span> out;
  for (const auto& r : requests()) {
    otlp::ExportTraceServiceRequest req;
    if (!req.ParseFromString(r.body)) continue;
    for (const auto& rs : req.resource_spans())
      for (const auto& ss : rs.scope_spans())
        for (const auto& s : ss.spans()) out.push_back(s);
  }
  return out;
}

bool FakeCollector::wait_spans(size_t n, std::chrono::milliseconds limit) const {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (spans().size() >= n) return true;
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  return spans().size() >= n;
}

std::string attribute(const otlp::Span& span, const std::string& key) {
  for (const auto& kv : span.attributes()) {
    if (kv.key() != key) continue;
    if (kv.value().has_string_value()) return kv.value().string_value();
    if (kv.value().has_int_value()) return std::to_string(kv.value().int_value());
    if (kv.value().has_bool_value()) return kv.value().bool_value() ? "true" : "false";
  }
  return "";
}

std::string hex(const std::string& bytes) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) {
    s.push_back(k[c >> 4]);
    s.push_back(k[c & 15]);
  }
  return s;
}

}  // namespace sparkgate::itest
