#include "proc_probe.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>

namespace sparkgate::itest {

namespace {

struct TcpEntry {
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  int state = 0;  // the kernel's TCP_* numbering: 1 ESTABLISHED, 10 LISTEN
};

constexpr int kEstablished = 1;
constexpr int kListen = 10;

// "0100007F:1F90" → 0x1F90. The address part is not needed: everything here is loopback.
uint16_t port_of(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::stoul(address.substr(colon + 1), nullptr, 16));
}

void read_tcp_table(const char* path, std::unordered_map<uint64_t, TcpEntry>& out) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout;
    uint64_t inode = 0;
    if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode)) {
      continue;
    }
    if (inode == 0) continue;  // TIME_WAIT: no socket (and no fd) any more
    out[inode] = TcpEntry{port_of(local), port_of(remote), static_cast<int>(std::stoul(state, nullptr, 16))};
  }
}

}  // namespace

std::optional<uint64_t> rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return std::nullopt;
}

std::optional<FdCensus> fd_census(pid_t pid, const std::set<uint16_t>& own_ports,
                                  const std::set<uint16_t>& backend_ports) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return std::nullopt;
  std::unordered_map<uint64_t, TcpEntry> tcp;
  read_tcp_table("/proc/net/tcp", tcp);
  read_tcp_table("/proc/net/tcp6", tcp);
  FdCensus census;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[256];
    const std::string link = dir + "/" + e->d_name;
    const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n < 0) continue;  // closed since readdir
    ++census.total;
    const std::string_view t(target, static_cast<size_t>(n));
    if (t.rfind("socket:[", 0) != 0) {
      ++census.non_sockets;
      continue;
    }
    const uint64_t inode = std::stoull(std::string(t.substr(8, t.size() - 9)));
    const auto it = tcp.find(inode);
    if (it == tcp.end()) {
      ++census.other_sockets;
      continue;
    }
    const TcpEntry& s = it->second;
    if (s.state == kListen) {
      ++census.listening;
    } else if (s.state != kEstablished) {
      ++census.stale;
    } else if (own_ports.count(s.local_port) > 0) {
      ++census.clients;
    } else if (backend_ports.count(s.remote_port) > 0) {
      ++census.backends;
    } else {
      ++census.other_sockets;
    }
  }
  closedir(d);
  return census;
}

}  // namespace sparkgate::itest
