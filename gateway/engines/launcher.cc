#include "engines/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

extern char** environ;

namespace sparkgate::engines {

namespace {

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// The child side of a fork: its own process group, killed when the gateway's launching
// thread dies, then exec. Only async-signal-safe calls between fork and exec.
[[noreturn]] void exec_child(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out_fd,
                             int err_fd) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) dup2(devnull, 0);
  if (out_fd >= 0) dup2(out_fd, 1);
  if (err_fd >= 0) dup2(err_fd, 2);
  // Nothing of the gateway's (listening sockets, connections) leaks into the engine.
  if (close_range(3, ~0U, 0) != 0) {
    for (int fd = 3; fd < 65536; ++fd) close(fd);
  }
  // Signals the gateway blocks (its signal thread) must not stay blocked in the engine.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::vector<char*> a, e;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  for (const auto& s : env) e.push_back(const_cast<char*>(s.c_str()));
  e.push_back(nullptr);
  execve(a[0], a.data(), e.data());
  _exit(127);
}

std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& set) {
  std::vector<std::string> out;
  for (char** p = environ; p && *p; ++p) {
    std::string_view kv(*p);
    bool replaced = false;
    for (const auto& [k, v] : set) replaced |= kv.substr(0, k.size() + 1) == k + "=";
    if (!replaced) out.emplace_back(kv);
  }
  for (const auto& [k, v] : set) out.push_back(k + "=" + v);
  return out;
}

bool port_accepts(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended";
}

// A forked child leading its own process group.
class ChildProcess : public EngineProcess {
 public:
  ~ChildProcess() override {
    if (!exited_) {
      ::kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    ::kill(-pid_, SIGKILL);  // what the leader left behind
  }
  bool alive(std::string& why) override {
    if (exited_) {
      why = why_;
      return false;
    }
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      why_ = describe_status(status);
      ::kill(-pid_, SIGKILL);  // its children (Python workers) go with it
      why = why_;
      return false;
    }
    return true;
  }
  void terminate() override { ::kill(-pid_, SIGTERM); }
  void kill() override { ::kill(-pid_, SIGKILL); }
  int64_t pid() const override { return pid_; }

 protected:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string why_;
};

class LocalProcess final : public ChildProcess {
 public:
  LocalProcess(pid_t pid, uint16_t port, std::filesystem::path dir) : port_(port), dir_(std::move(dir)) { pid_ = pid; }
  ~LocalProcess() override {
    std::error_code ec;
    std::filesystem::remove(dir_ / "engine.properties", ec);
  }
  Poll poll_ready(config::Endpoint& address, std::string& error) override {
    std::string why;
    if (!alive(why)) {
      error = "spark-submit " + why + " before accepting connections (log " + (dir_ / "engine.log").string() + ")";
      return Poll::kFailed;
    }
    if (!port_accepts(port_)) return Poll::kPending;
    // The JVM has read its properties (the token among them): nothing keeps them on disk.
    std::error_code ec;
    std::filesystem::remove(dir_ / "engine.properties", ec);
    address = {"127.0.0.1", port_};
    return Poll::kReady;
  }

 private:
  uint16_t port_;
  std::filesystem::path dir_;
};

class CommandProcess final : public ChildProcess {
 public:
  CommandProcess(pid_t pid, int out) : out_(out) { pid_ = pid; }
  ~CommandProcess() override {
    if (out_ >= 0) close(out_);
  }
  Poll poll_ready(config::Endpoint& address, std::string& error) override {
    drain();
    if (auto nl = buf_.find('\n'); nl != std::string::npos) {
      std::string line = buf_.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      ready_ = true;
      auto colon = line.rfind(':');
      uint16_t port = 0;
      std::string host = colon == std::string::npos ? "" : line.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      const char* b = line.data() + (colon == std::string::npos ? 0 : colon + 1);
      auto [p, ec] = std::from_chars(b, line.data() + line.size(), port);
      if (colon == std::string::npos || host.empty() || ec != std::errc() || p != line.data() + line.size() ||
          port == 0) {
        error = "the launcher's first line is not host:port (got " + std::to_string(line.size()) + " bytes)";
        return Poll::kFailed;
      }
      address = {host, port};
      return Poll::kReady;
    }
    std::string why;
    if (!alive(why)) {
      error = "the launcher " + why + " before printing host:port";
      return Poll::kFailed;
    }
    return Poll::kPending;
  }

 private:
  // Reads what the launcher printed (and, once it is ready, discards it, so that it never
  // blocks on a full pipe).
  void drain() {
    if (out_ < 0) return;
    char tmp[4096];
    for (;;) {
      ssize_t n = read(out_, tmp, sizeof tmp);
      if (n > 0) {
        if (!ready_ && buf_.size() < 65536) buf_.append(tmp, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        close(out_);
        out_ = -1;
      }
      return;
    }
  }
  int out_;
  std::string buf_;
  bool ready_ = false;
};

std::unique_ptr<EngineProcess> launch_local(const LaunchRequest& r, std::string& error) {
  const auto& spec = *r.spec;
  std::string home = spec.spark_home;
  if (home.empty()) {
    if (const char* env = std::getenv("SPARK_HOME")) home = env;
  }
  if (home.empty()) {
    error = "no Spark to start: set engines.local.spark_home of cluster '" + r.cluster + "' or SPARK_HOME";
    return nullptr;
  }
  auto submit = std::filesystem::path(home) / "bin" / "spark-submit";
  if (access(submit.c_str(), X_OK) != 0) {
    error = errno_text(("cannot run " + submit.string()).c_str());
    return nullptr;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/sparkgate-engine-XXXXXX";
  std::vector<char> t(templ.begin(), templ.end());
  t.push_back('\0');
  if (!mkdtemp(t.data())) {
    error = errno_text("mkdtemp");
    return nullptr;
  }
  std::filesystem::path dir(t.data());
  // The settings go to a 0600 properties file, not the command line, where every user of
  // the machine could read the token.
  std::vector<std::pair<std::string, std::string>> conf = {
      {"spark.driver.bindAddress", "127.0.0.1"},
      {"spark.driver.host", "127.0.0.1"},
      {"spark.ui.enabled", "false"},
      {"spark.local.dir", (dir / "local").string()},
      {"spark.sql.warehouse.dir", (dir / "warehouse").string()},
  };
  for (const auto& kv : spec.conf) conf.push_back(kv);
  conf.emplace_back("spark.connect.grpc.binding.address", "127.0.0.1");
  conf.emplace_back("spark.connect.grpc.binding.port", std::to_string(r.port));
  conf.emplace_back("spark.connect.authenticate.token", r.token);
  auto props = dir / "engine.properties";
  {
    int fd = open(props.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      error = errno_text("engine properties");
      return nullptr;
    }
    std::string text;
    for (const auto& [k, v] : conf) text += k + "=" + v + "\n";
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!ok) {
      error = "cannot write the engine properties";
      return nullptr;
    }
  }
  std::filesystem::create_directories(dir / "conf");
  int log = open((dir / "engine.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  std::vector<std::string> argv = {submit.string(), "--master", spec.master, "--properties-file", props.string(),
                                   "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
                                   "spark-internal"};
  auto env = environment_with({{"SPARK_HOME", home},
                               {"SPARK_LOCAL_IP", "127.0.0.1"},
                               {"SPARK_CONF_DIR", (dir / "conf").string()},
                               {"SPARKGATE_ENGINE_KEY", r.key}});
  pid_t pid = fork();
  if (pid < 0) {
    if (log >= 0) close(log);
    error = errno_text("fork");
    return nullptr;
  }
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(126);
    exec_child(argv, env, log, log);
  }
  setpgid(pid, pid);  // also here, so that a kill right after fork reaches the group
  if (log >= 0) close(log);
  return std::make_unique<LocalProcess>(pid, r.port, dir);
}

std::unique_ptr<EngineProcess> launch_command(const LaunchRequest& r, std::string& error) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    error = errno_text("pipe");
    return nullptr;
  }
  auto env = environment_with({{"SPARKGATE_ENGINE_KEY", r.key},
                               {"SPARKGATE_ENGINE_CLUSTER", r.cluster},
                               {"SPARKGATE_ENGINE_PORT", std::to_string(r.port)},
                               {"SPARKGATE_ENGINE_TOKEN", r.token}});
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    error = errno_text("fork");
    return nullptr;
  }
  if (pid == 0) exec_child(r.spec->argv, env, fds[1], -1);
  setpgid(pid, pid);
  close(fds[1]);
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  return std::make_unique<CommandProcess>(pid, fds[0]);
}

}  // namespace

std::unique_ptr<EngineProcess> ProcessLauncher::launch(const LaunchRequest& r, std::string& error) {
  if (r.spec->launcher == config::Engines::Launcher::kCommand) return launch_command(r, error);
  return launch_local(r, error);
}

uint16_t pick_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uint16_t port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

std::string random_token() {
  unsigned char b[32];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::abort();  // no CSPRNG: no token may be made up
    }
    got += static_cast<size_t>(n);
  }
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s += hex[c >> 4];
    s += hex[c & 15];
  }
  return s;
}

}  // namespace sparkgate::engines
