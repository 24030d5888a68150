// Pipeline step: which backend serves the RPC — the one place that decides it. The
// Router matches the route (or denies) and finds the session's sticky backend, or
// places a new session (routing/router.h). When the SessionStore shares placements
// with other replicas (sessions.store: redis), a session unknown here is looked up
// there first, and a new placement is claimed there; a replica that claimed it first
// wins. A new session whose backend turned out unreachable may be placed once more
// elsewhere (move_new_session), if nothing of it was published.
#pragma once

#include "base/cancellable.h"
#include "engines/engine_manager.h"
#include "grpcwire/status.h"
#include "proxy/step.h"
#include "routing/session_store.h"

namespace sparkgate::routing {
struct RouteRequest;
}

namespace sparkgate::proxy {

struct RpcState;

// For a cluster with engines (docs/engines.md), a session this replica does not know
// goes to the engine of its share key: the step asks the EngineManager, pauses while the
// engine starts, and adopts the session on the engine's address; a known session's
// engine must still be running. Either way the engine's token is kept for UpstreamStep.
class RouteStep final : public Step, private routing::StoreWaiter, private engines::EngineWaiter {
 public:
  RouteStep(RpcState& state, StepDone& done) : state_(state), done_(done) {}
  StepStatus run() override;
  void cancel() override { wait_.cancel(); }

  // True when the session this RPC just created (its backend unreachable) may be placed
  // once more: created by this call, not yet used, not published to other replicas.
  bool can_move() const;
  // After can_move() (and once the session's RPC count was given back): places the
  // session on another backend of its cluster, avoiding the failed one (`error` says
  // why it failed). False (the decision then names the failed backend) when there is
  // none.
  bool move_new_session(const std::string& error);

 private:
  enum class Wait { kNone, kLookup, kClaim, kEngine };
  StepStatus route_engine();
  StepStatus on_engine_target(const engines::EngineTarget& t);
  void on_engine(const grpcwire::Status& status, const engines::EngineTarget* target) override;
  routing::RouteRequest request() const;
  StepStatus refuse(const grpcwire::Status& status);
  StepStatus on_lookup(const routing::StoreAnswer& a);
  StepStatus on_claim(const routing::StoreAnswer& a);
  void on_store_answer(const routing::StoreAnswer& a) override;

  RpcState& state_;
  StepDone& done_;
  base::PendingWait wait_;
  Wait waiting_for_ = Wait::kNone;
  bool moved_ = false;
};

}  // namespace sparkgate::proxy
