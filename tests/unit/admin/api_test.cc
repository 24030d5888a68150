#include "admin/api.h"

#include <doctest/doctest.h>

using namespace sparkgate;

TEST_CASE("admin targets are split into a decoded path and query") {
  admin::ApiRequest r;
  admin::parse_target("/v1/backends/%5B%3A%3A1%5D%3A15002/drain?cluster=etl%20a&x", r);
  CHECK(r.path == "/v1/backends/[::1]:15002/drain");
  CHECK(r.query.at("cluster") == "etl a");
  CHECK(r.query.at("x").empty());
}

TEST_CASE("the admin API: paths, methods and the bearer token") {
  routing::BackendRegistry backends;
  routing::Router router(backends);
  admin::AdminHooks hooks;
  hooks.not_ready = [] { return std::string("draining"); };
  admin::Api open(router, "", hooks);
  admin::Api locked(router, "tok", hooks);
  auto req = [](std::string method, std::string target, std::string auth = "") {
    admin::ApiRequest r;
    r.method = std::move(method);
    admin::parse_target(target, r);
    r.authorization = std::move(auth);
    return r;
  };
  CHECK(open.handle(req("GET", "/healthz")).status == 200);
  auto ready = open.handle(req("GET", "/readyz"));
  CHECK(ready.status == 503);
  CHECK(ready.body == "not ready (draining)\n");
  CHECK(open.handle(req("GET", "/v1/sessions")).body == "{\"count\":0,\"sessions\":[]}\n");
  CHECK(open.handle(req("GET", "/v1/sessions/nope")).status == 404);
  CHECK(open.handle(req("DELETE", "/v1/sessions/nope")).status == 404);
  CHECK(open.handle(req("POST", "/v1/sessions")).status == 405);
  CHECK(open.handle(req("GET", "/nope")).status == 404);
  CHECK(locked.handle(req("GET", "/v1/sessions")).status == 401);
  CHECK(locked.handle(req("GET", "/v1/sessions", "Bearer tok")).status == 200);
  CHECK(locked.handle(req("GET", "/v1/sessions", "Bearer tok2")).status == 401);
  CHECK(locked.handle(req("GET", "/v1/sessions", "Bearer to")).status == 401);
  CHECK(locked.handle(req("GET", "/healthz")).status == 200);  // probes need no token
}
