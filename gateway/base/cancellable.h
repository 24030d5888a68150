// An asynchronous wait that its starter can call off (Envoy's Cancelable).
//
// A service that cannot answer at once returns a Cancellable* for the wait. The pointer is
// the starter's to use until either the completion has started to run (the service
// drops the wait first) or cancel() has returned; after cancel() the completion never
// runs, so a starter that goes away cancels what it waits for and needs no check against
// late callbacks. Owned by the service, never by the starter.
//
// Threading: cancel() on the thread the wait was started on.
#pragma once

namespace sparkgate::base {

class Cancellable {
 public:
  virtual void cancel() = 0;

 protected:
  ~Cancellable() = default;
};

// Holds at most one wait of its owner; cancels it when the owner goes away.
class PendingWait {
 public:
  PendingWait() = default;
  PendingWait(const PendingWait&) = delete;
  PendingWait& operator=(const PendingWait&) = delete;
  ~PendingWait() { cancel(); }

  // A new wait; the previous one must be over.
  void start(Cancellable* wait) { wait_ = wait; }
  // The completion is running: the wait is over, nothing to cancel.
  void done() { wait_ = nullptr; }
  // Calls the wait off (if any); its completion will not run.
  void cancel() {
    if (auto* w = wait_) {
      wait_ = nullptr;
      w->cancel();
    }
  }
  bool waiting() const { return wait_ != nullptr; }

 private:
  Cancellable* wait_ = nullptr;
};

}  // namespace sparkgate::base
