#include "policy/local_quota_service.h"

#include <doctest/doctest.h>

using namespace sparkgate::policy;

namespace {
struct NoWaiter : QuotaWaiter {
  void on_quota(const QuotaDecision&) override { FAIL("a local check never answers later"); }
};
}  // namespace

TEST_CASE("LocalQuotaService: every check answers at once from the process's counts") {
  LocalQuotas counts;
  uint32_t sessions = 0;
  LocalQuotaService q(counts, [&](const std::string&) { return sessions; });
  NoWaiter w;
  auto a = q.try_request("u", 1, 1, w);
  CHECK_FALSE(a.pending);
  CHECK(a.decision.allowed);
  CHECK_FALSE(q.try_request("u", 1, 1, w).decision.allowed);

  OperationLease l1, l2;
  CHECK(q.try_begin_operation("u", 1, l1, w).decision.allowed);
  CHECK(l1.held);
  CHECK_FALSE(q.try_begin_operation("u", 1, l2, w).decision.allowed);
  CHECK_FALSE(l2.held);
  q.end_operation("u", l1);
  q.end_operation("u", l1);  // extra calls are ignored
  CHECK(counts.operations("u") == 0);

  CHECK(q.registry_session_limit(3) == 3);  // the registry enforces it while placing
  CloneReservation r;
  sessions = 2;
  CHECK(q.try_reserve_clone("u", "s", 3, r, w).decision.allowed);
  sessions = 3;
  CHECK_FALSE(q.try_reserve_clone("u", "s", 3, r, w).decision.allowed);
  CHECK(q.try_add_session("u", "s", 1, std::chrono::seconds(1), w).decision.allowed);
}
