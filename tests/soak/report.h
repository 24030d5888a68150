// The soak test's results: one Sample every --sample-every seconds (the RSS/fd curve),
// the restarts, the checks and their verdict; printed as tables and written as JSON and
// CSV.
//
// Threading: plain values and functions; callers serialize their use.
#pragma once

#include <boost/json.hpp>

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "fleet.h"
#include "proc_probe.h"
#include "tally.h"

namespace sparkgate::soak {

using itest::FdCensus;
using itest::fd_census;
using itest::fixed_fds;
using itest::rss_kib;

struct Sample {
  double t_s = 0;     // seconds since the traffic started (0: just before)
  std::string phase;  // "idle" (before traffic), "warmup", "traffic", "quiesced" (after)
  uint64_t rss_kib = 0;
  FdCensus fds;
  // From the gateway's /metrics; nullopt if the scrape failed.
  std::optional<double> sessions;                // sparkgate_sessions, all backends
  std::optional<double> downstream_connections;  // sparkgate_downstream_connections
  std::optional<double> upstream_connections;    // sparkgate_upstream_connections, all backends
  std::optional<double> active_streams;          // sparkgate_active_streams
  TallySnapshot tally;  // cumulative; `unexpected` examples left empty
};

struct Check {
  std::string name;
  bool passed = false;
  std::string detail;
};

struct RunReport {
  boost::json::object options;
  std::vector<std::string> backends;  // addresses, by fleet index
  std::vector<Sample> samples;
  std::optional<size_t> baseline;  // index into samples of the post-warm-up baseline
  std::vector<RestartRecord> restarts;
  Clock::time_point epoch;  // t_s = 0
  TallySnapshot tally;      // at the end, with the unexpected examples
  std::vector<Check> checks;
  bool passed() const;
};

// The sample table, one row per sample: header, then rows (also printed live).
std::string sample_header();
std::string sample_row(const Sample& s);
// Everything after the run: the sample table again, RPCs by action, code and verdict,
// the restarts, the unexpected outcomes and the checks.
void print_summary(std::ostream& out, const RunReport& report);
// The whole report as JSON; false if the file cannot be written.
bool write_json(const std::string& path, const RunReport& report);
// The samples as CSV (one column per gRPC status code); false if it cannot be written.
bool write_csv(const std::string& path, const RunReport& report);

}  // namespace sparkgate::soak
