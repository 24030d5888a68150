#include "fleet.h"

#include <signal.h>

#include <stdexcept>
#include <thread>

#include "spark/response_scanner.h"
#include "spark/rpc.h"

namespace sparkgate::soak {

using namespace std::chrono_literals;

namespace {

// In-flight calls get this long after an x-fake-goaway call before the fake exits.
constexpr int kGoawayGraceMs = 1000;

}  // namespace

const char* restart_mode_name(RestartMode mode) {
  switch (mode) {
    case RestartMode::kTerm: return "SIGTERM";
    case RestartMode::kKill: return "SIGKILL";
    case RestartMode::kGoaway: return "GOAWAY";
  }
  return "?";
}

std::string server_side_session_id(std::string_view rpc, const std::string& response) {
  const auto* info = spark::find_rpc_by_path(itest::method_path(rpc));
  if (info == nullptr) return "";
  spark::ResponseScanner scan(*info, response.size());
  scan.feed({reinterpret_cast<const uint8_t*>(response.data()), response.size()});
  return scan.failed() ? std::string() : std::string(scan.server_side_session_id());
}

Fleet::Fleet(size_t n) : slots_(n) {
  for (size_t i = 0; i < n; ++i) start(i);
}

void Fleet::start(size_t i) {
  Slot& slot = slots_[i];
  const std::vector<std::string> args{"--goaway-grace-ms", std::to_string(kGoawayGraceMs)};
  // The old process's port may take a moment to be free again.
  const auto until = Clock::now() + 15s;
  for (;;) {
    try {
      slot.server = std::make_unique<itest::FakeServer>(args, slot.port);
      break;
    } catch (const std::runtime_error&) {
      if (slot.port == 0 || Clock::now() >= until) throw;
      std::this_thread::sleep_for(200ms);
    }
  }
  if (slot.port == 0) {  // first start; clients read the address without a lock from now on
    slot.port = slot.server->port();
    slot.address = slot.server->address();
  }
  const std::string ssid = ask_ssid(i);
  if (ssid.empty()) throw std::runtime_error("backend " + slot.address + " did not answer with a session id");
  std::lock_guard lock(mu_);
  ssid_to_backend_[ssid] = i;
}

std::string Fleet::ask_ssid(size_t i) const {
  itest::CallOptions options;
  options.op_timeout = 10s;
  auto r = itest::call(itest::make_channel(slots_[i].address), "Config",
                       {itest::request_for("Config", "soak-probe")}, options);
  if (!r.status.ok() || r.responses.empty()) return "";
  return server_side_session_id("Config", r.responses.front());
}

std::set<uint16_t> Fleet::ports() const {
  std::set<uint16_t> out;
  for (const auto& s : slots_) out.insert(s.port);
  return out;
}

std::optional<size_t> Fleet::backend_of_ssid(const std::string& ssid) const {
  std::lock_guard lock(mu_);
  auto it = ssid_to_backend_.find(ssid);
  if (it == ssid_to_backend_.end()) return std::nullopt;
  return it->second;
}

std::optional<size_t> Fleet::backend_named_in(std::string_view message) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string& a = slots_[i].address;
    // "127.0.0.1:4000" must not match inside "127.0.0.1:40001".
    for (size_t at = message.find(a); at != std::string_view::npos; at = message.find(a, at + 1)) {
      const size_t after = at + a.size();
      if (after == message.size() || message[after] < '0' || message[after] > '9') return i;
    }
  }
  return std::nullopt;
}

RestartRecord Fleet::restart(size_t i, RestartMode mode, std::chrono::milliseconds down) {
  Slot& slot = slots_[i];
  RestartRecord record{i, mode, Clock::now(), Clock::time_point::max()};
  {
    std::lock_guard lock(mu_);
    restarts_.push_back(record);
  }
  itest::Child& child = slot.server->process();
  switch (mode) {
    case RestartMode::kTerm:
      child.stop(3s);
      break;
    case RestartMode::kKill:
      ::kill(child.pid(), SIGKILL);
      child.wait_exit(5s);
      break;
    case RestartMode::kGoaway: {
      itest::CallOptions options;
      options.metadata = {{"x-fake-goaway", "1"}};
      options.op_timeout = 10s;
      itest::call(itest::make_channel(slot.address), "GetStatus",
                  {itest::request_for("GetStatus", "soak-goaway")}, options);
      if (!child.wait_exit(std::chrono::milliseconds(kGoawayGraceMs) + 5s)) child.stop(0ms);
      break;
    }
  }
  slot.server.reset();
  std::this_thread::sleep_for(down);
  start(i);
  record.up_at = Clock::now();
  std::lock_guard lock(mu_);
  restarts_.back() = record;
  return record;
}

bool Fleet::restart_overlaps(size_t i, Clock::time_point start, Clock::time_point end, Clock::duration settle) const {
  std::lock_guard lock(mu_);
  for (const auto& r : restarts_) {
    if (r.backend != i) continue;
    const Clock::time_point until = r.up_at == Clock::time_point::max() ? r.up_at : r.up_at + settle;
    if (start <= until && end >= r.down_at) return true;
  }
  return false;
}

bool Fleet::any_restart_overlaps(Clock::time_point start, Clock::time_point end, Clock::duration settle) const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (restart_overlaps(i, start, end, settle)) return true;
  }
  return false;
}

bool Fleet::restarted_before(size_t i, Clock::time_point t) const {
  std::lock_guard lock(mu_);
  for (const auto& r : restarts_) {
    if (r.backend == i && r.down_at < t) return true;
  }
  return false;
}

std::vector<RestartRecord> Fleet::restarts() const {
  std::lock_guard lock(mu_);
  return restarts_;
}

}  // namespace sparkgate::soak
