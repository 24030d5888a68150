#include "report.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace sparkgate::soak {

namespace {

std::string errors_text(const TallySnapshot& t) {
  std::string out;
  for (size_t c = 1; c < kStatusCodes; ++c) {
    if (t.by_code[c] == 0) continue;
    if (!out.empty()) out += ' ';
    out += std::string(code_name(c)) + "=" + std::to_string(t.by_code[c]);
  }
  return out.empty() ? "-" : out;
}

std::string metric_text(const std::optional<double>& v) {
  if (!v) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", *v);
  return buf;
}

double seconds_since(Clock::time_point epoch, Clock::time_point t) {
  return std::chrono::duration<double>(t - epoch).count();
}

boost::json::value metric_json(const std::optional<double>& v) {
  if (!v) return nullptr;
  return *v;
}

boost::json::object codes_json(const TallySnapshot& t) {
  boost::json::object o;
  for (size_t c = 0; c < kStatusCodes; ++c) {
    if (t.by_code[c] > 0) o[code_name(c)] = t.by_code[c];
  }
  return o;
}

}  // namespace

bool RunReport::passed() const {
  if (checks.empty()) return false;
  for (const auto& c : checks) {
    if (!c.passed) return false;
  }
  return true;
}

std::string sample_header() {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%7s  %-8s  %9s  %5s  %7s  %8s  %5s  %8s  %9s  %10s  %s", "t_s", "phase", "rss_kib",
                "fds", "clients", "backends", "fixed", "sessions", "rpcs", "unexpected", "errors_by_code");
  return buf;
}

std::string sample_row(const Sample& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%7.1f  %-8s  %9llu  %5d  %7d  %8d  %5d  %8s  %9llu  %10llu  ", s.t_s, s.phase.c_str(),
                static_cast<unsigned long long>(s.rss_kib), s.fds.total, s.fds.clients, s.fds.backends,
                fixed_fds(s.fds), metric_text(s.sessions).c_str(), static_cast<unsigned long long>(s.tally.rpcs),
                static_cast<unsigned long long>(s.tally.by_verdict[static_cast<size_t>(Verdict::kUnexpected)]));
  return buf + errors_text(s.tally);
}

void print_summary(std::ostream& out, const RunReport& report) {
  out << "\n== soak: RSS and fds of the gateway (fds: clients = client connections, backends = connections to "
         "backends, fixed = everything else but listeners)\n"
      << sample_header() << "\n";
  for (size_t i = 0; i < report.samples.size(); ++i) {
    out << sample_row(report.samples[i]) << (report.baseline == i ? "   <- baseline" : "") << "\n";
  }
  const TallySnapshot& t = report.tally;
  out << "\n== soak: actions\n";
  for (size_t a = 0; a < kActionCount; ++a) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-14s %10llu\n", action_name(static_cast<Action>(a)),
                  static_cast<unsigned long long>(t.actions[a]));
    out << buf;
  }
  out << "\n== soak: RPCs by status code (" << t.rpcs << " in all)\n";
  for (size_t c = 0; c < kStatusCodes; ++c) {
    if (t.by_code[c] == 0) continue;
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-20s %10llu\n", code_name(c), static_cast<unsigned long long>(t.by_code[c]));
    out << buf;
  }
  out << "== soak: RPCs by verdict\n";
  for (size_t v = 0; v < kVerdictCount; ++v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %-20s %10llu\n", verdict_name(static_cast<Verdict>(v)),
                  static_cast<unsigned long long>(t.by_verdict[v]));
    out << buf;
  }
  out << "  (OK answers from a restarted backend's new process: " << t.restart_moves << ")\n";
  out << "\n== soak: backend restarts\n";
  for (const auto& r : report.restarts) {
    char buf[160];
    const bool up = r.up_at != Clock::time_point::max();
    std::snprintf(buf, sizeof buf, "  %-22s %-8s down at %7.1f s, up at %7.1f s\n",
                  report.backends.at(r.backend).c_str(), restart_mode_name(r.mode),
                  seconds_since(report.epoch, r.down_at), up ? seconds_since(report.epoch, r.up_at) : -1.0);
    out << buf;
  }
  if (report.restarts.empty()) out << "  none\n";
  if (!t.unexpected.empty()) {
    out << "\n== soak: unexpected outcomes (first " << t.unexpected.size() << ")\n";
    for (const auto& u : t.unexpected) out << "  " << u << "\n";
  }
  out << "\n== soak: checks\n";
  for (const auto& c : report.checks) {
    out << "  " << (c.passed ? "PASS" : "FAIL") << "  " << c.name << ": " << c.detail << "\n";
  }
  out << "soak: " << (report.passed() ? "PASSED" : "FAILED") << "\n";
}

bool write_json(const std::string& path, const RunReport& report) {
  boost::json::object root;
  root["options"] = report.options;
  boost::json::array backends;
  for (const auto& b : report.backends) backends.emplace_back(b);
  root["backends"] = std::move(backends);
  boost::json::array samples;
  for (const auto& s : report.samples) {
    boost::json::object o;
    o["t_s"] = s.t_s;
    o["phase"] = s.phase;
    o["rss_kib"] = s.rss_kib;
    o["fds"] = boost::json::object{{"total", s.fds.total},
                                   {"clients", s.fds.clients},
                                   {"backends", s.fds.backends},
                                   {"listening", s.fds.listening},
                                   {"stale", s.fds.stale},
                                   {"other_sockets", s.fds.other_sockets},
                                   {"non_sockets", s.fds.non_sockets}};
    o["sessions"] = metric_json(s.sessions);
    o["downstream_connections"] = metric_json(s.downstream_connections);
    o["upstream_connections"] = metric_json(s.upstream_connections);
    o["active_streams"] = metric_json(s.active_streams);
    o["rpcs"] = s.tally.rpcs;
    o["unexpected"] = s.tally.by_verdict[static_cast<size_t>(Verdict::kUnexpected)];
    o["codes"] = codes_json(s.tally);
    samples.push_back(std::move(o));
  }
  root["samples"] = std::move(samples);
  if (report.baseline) root["baseline_sample"] = *report.baseline;
  boost::json::array restarts;
  for (const auto& r : report.restarts) {
    const bool up = r.up_at != Clock::time_point::max();
    restarts.push_back(boost::json::object{{"backend", report.backends.at(r.backend)},
                                           {"mode", restart_mode_name(r.mode)},
                                           {"down_at_s", seconds_since(report.epoch, r.down_at)},
                                           {"up_at_s", up ? boost::json::value(seconds_since(report.epoch, r.up_at))
                                                          : boost::json::value(nullptr)}});
  }
  root["restarts"] = std::move(restarts);
  const TallySnapshot& t = report.tally;
  boost::json::object actions, verdicts;
  for (size_t a = 0; a < kActionCount; ++a) actions[action_name(static_cast<Action>(a))] = t.actions[a];
  for (size_t v = 0; v < kVerdictCount; ++v) verdicts[verdict_name(static_cast<Verdict>(v))] = t.by_verdict[v];
  boost::json::array unexpected;
  for (const auto& u : t.unexpected) unexpected.emplace_back(u);
  root["rpcs"] = boost::json::object{{"total", t.rpcs},
                                     {"by_code", codes_json(t)},
                                     {"by_verdict", std::move(verdicts)},
                                     {"restart_moves", t.restart_moves}};
  root["actions"] = std::move(actions);
  root["unexpected_examples"] = std::move(unexpected);
  boost::json::array checks;
  for (const auto& c : report.checks) {
    checks.push_back(boost::json::object{{"name", c.name}, {"passed", c.passed}, {"detail", c.detail}});
  }
  root["checks"] = std::move(checks);
  root["passed"] = report.passed();
  std::ofstream out(path);
  out << boost::json::serialize(root) << "\n";
  return static_cast<bool>(out);
}

bool write_csv(const std::string& path, const RunReport& report) {
  std::ofstream out(path);
  out << "t_s,phase,rss_kib,fds,fd_clients,fd_backends,fd_listening,fd_stale,fd_other_sockets,fd_non_sockets,"
         "sessions,downstream_connections,upstream_connections,rpcs,unexpected";
  for (size_t c = 0; c < kStatusCodes; ++c) out << "," << code_name(c);
  out << "\n";
  auto opt = [](const std::optional<double>& v) { return v ? metric_text(v) : std::string(); };
  for (const auto& s : report.samples) {
    char t[32];
    std::snprintf(t, sizeof t, "%.1f", s.t_s);
    out << t << "," << s.phase << "," << s.rss_kib << "," << s.fds.total << "," << s.fds.clients << ","
        << s.fds.backends << "," << s.fds.listening << "," << s.fds.stale << "," << s.fds.other_sockets << ","
        << s.fds.non_sockets << "," << opt(s.sessions) << "," << opt(s.downstream_connections) << ","
        << opt(s.upstream_connections) << "," << s.tally.rpcs << ","
        << s.tally.by_verdict[static_cast<size_t>(Verdict::kUnexpected)];
    for (size_t c = 0; c < kStatusCodes; ++c) out << "," << s.tally.by_code[c];
    out << "\n";
  }
  return static_cast<bool>(out);
}

}  // namespace sparkgate::soak
