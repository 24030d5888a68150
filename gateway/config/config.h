// Immutable, validated gateway configuration. Plain data: built by the loader
// (config_loader.h), then shared read-only between workers as a
// std::shared_ptr<const Config> snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sparkgate::config {

// A host:port pair as written in the config ("127.0.0.1:15001", "[::1]:15001",
// "spark-0.svc:15002").
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
};

struct TlsFiles {
  std::string cert;  // PEM certificate chain (absolute path after loading)
  std::string key;   // PEM private key (absolute path after loading)
};

struct Listener {
  Endpoint address;
  std::optional<TlsFiles> tls;
};

struct Backend {
  Endpoint address;
};

struct Cluster {
  std::string name;
  std::vector<Backend> backends;
};

struct Route {
  std::string cluster;  // name of a cluster in Config::clusters (validated)
};

struct Admin {
  Endpoint address{"127.0.0.1", 9901};
};

struct Limits {
  // Largest gRPC message accepted in either direction; Spark's default is 128 MiB.
  uint64_t max_message_bytes = 128ull << 20;
  // Sum of the header names and values of one request.
  uint32_t max_header_list_bytes = 64u << 10;
  // Largest prefix of the first request message held while looking for the routing
  // envelope (session_id, user_context). Never larger than the stream window.
  uint32_t max_envelope_scan_bytes = 1u << 20;
};

struct Http2 {
  // Per-stream receive window, both sides. This bounds the bytes buffered per stream in
  // each direction: the gateway only reopens the window after forwarding.
  uint32_t stream_window_bytes = 1u << 20;
  // Per-connection receive window, both sides.
  uint32_t connection_window_bytes = 16u << 20;
  // SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients.
  uint32_t max_concurrent_streams = 1000;
};

struct Upstream {
  std::chrono::milliseconds connect_timeout{5000};
  // Upper bound of HTTP/2 connections one worker opens to one backend.
  uint32_t max_connections_per_backend = 64;
};

struct Drain {
  std::chrono::milliseconds timeout{30000};
};

struct Config {
  std::string source_path;  // the file this was loaded from
  std::vector<Listener> listeners;
  std::vector<Cluster> clusters;
  std::vector<Route> routes;
  Admin admin;
  Limits limits;
  Http2 http2;
  Upstream upstream;
  Drain drain;
  std::string log_level = "info";

  // nullptr if no cluster has that name.
  const Cluster* find_cluster(const std::string& name) const;
};

}  // namespace sparkgate::config
