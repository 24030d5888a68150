// What the soak test and the fault tests watch in the gateway process: its resident
// memory and its file descriptors, read from /proc. Every function only reads files; safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>

namespace sparkgate::itest {

// The open file descriptors of a process, by kind. TCP sockets are classified with
// /proc/net/tcp{,6} by their inode; a socket's entry there may change between reading
// the fd table and the TCP table, so a count can be off by a connection that opened or
// closed in between.
struct FdCensus {
  int total = 0;          // entries in /proc/PID/fd
  int listening = 0;      // TCP sockets in LISTEN
  int clients = 0;        // ESTABLISHED TCP connections on one of `own_ports` (clients)
  int backends = 0;       // ESTABLISHED TCP connections to one of `backend_ports`
  int stale = 0;          // TCP sockets in any other state (CLOSE_WAIT, FIN_WAIT, ...): a
                          // connection the peer closed and this process has not
  int other_sockets = 0;  // any other socket (unix, UDP, a TCP peer of neither kind)
  int non_sockets = 0;    // files, pipes, eventfds, epoll and timer fds, ...
};

// The fds that are neither connections nor listeners (files, pipes, eventfds, half-closed
// and other sockets): what a process that does not leak holds a constant number of.
inline int fixed_fds(const FdCensus& f) { return f.total - f.clients - f.backends - f.listening; }

// VmRSS of `pid` in KiB; nullopt if the process does not exist.
std::optional<uint64_t> rss_kib(pid_t pid);

// The census of `pid`'s fds; nullopt if the process does not exist. `own_ports` are the
// process's listening ports (a connection there is a client's), `backend_ports` the ports
// it connects to.
std::optional<FdCensus> fd_census(pid_t pid, const std::set<uint16_t>& own_ports,
                                  const std::set<uint16_t>& backend_ports);

}  // namespace sparkgate::itest
