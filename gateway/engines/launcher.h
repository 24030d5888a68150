// Starting one engine process: the `local` launcher (spark-submit of SparkConnectServer)
// and the `command` launcher (an operator's program), both as a new process group so
// that a stop reaches the whole tree. Used by the EngineManager on its own thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "config/config.h"

namespace sparkgate::engines {

struct LaunchRequest {
  std::string cluster;
  std::string key;     // the share key
  uint16_t port = 0;   // a free port on 127.0.0.1 for the engine (the gateway picked it)
  std::string token;   // the engine's spark.connect.authenticate.token (never logged)
  const config::Engines* spec = nullptr;
};

// A launched engine. Every call on the manager's thread.
class EngineProcess {
 public:
  virtual ~EngineProcess() = default;
  enum class Poll { kPending, kReady, kFailed };
  // While starting: kReady with `address` set once it accepts, kFailed with `error`.
  virtual Poll poll_ready(config::Endpoint& address, std::string& error) = 0;
  // False once the process has exited; `why` says how ("exited with 1", "killed by signal 9").
  virtual bool alive(std::string& why) = 0;
  virtual void terminate() = 0;  // SIGTERM to the process group
  virtual void kill() = 0;       // SIGKILL to the process group
  virtual int64_t pid() const = 0;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts the engine; null with `error` when it could not be started at all.
  virtual std::unique_ptr<EngineProcess> launch(const LaunchRequest& r, std::string& error) = 0;
};

// The real launchers: fork/exec, chosen by spec->launcher.
class ProcessLauncher final : public Launcher {
 public:
  std::unique_ptr<EngineProcess> launch(const LaunchRequest& r, std::string& error) override;
};

// A TCP port on 127.0.0.1 that nothing listens on now (0 if none could be found).
uint16_t pick_free_port();
// 32 bytes from the kernel's CSPRNG (getrandom), as 64 hex digits.
std::string random_token();

}  // namespace sparkgate::engines
