// The admin API's request handling, apart from the socket: a parsed request in, a status,
// content type and body out. Kept free of Beast so that it reads as the API it is.
//
// Threading: called on the admin thread; everything it touches is thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "admin/admin_server.h"

namespace sparkgate::admin {

struct ApiRequest {
  std::string method;  // "GET", "HEAD", "POST", "DELETE", ...
  std::string path;    // percent-decoded, without the query
  std::map<std::string, std::string> query;  // percent-decoded
  std::string authorization;  // the Authorization header, "" if absent
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // for 405
};

// Splits "/v1/sessions?user=a%20b" into path and query (both percent-decoded).
void parse_target(std::string_view target, ApiRequest& out);

class Api {
 public:
  Api(routing::Router& router, std::string token, const AdminHooks& hooks)
      : router_(router), token_(std::move(token)), hooks_(hooks) {}

  ApiResponse handle(const ApiRequest& req) const;

 private:
  ApiResponse list_sessions(const ApiRequest& req) const;
  // The live session `id` (of ?user= if given), or null with `failure` set (404, 409).
  routing::SessionPtr find_session(const ApiRequest& req, const std::string& id, ApiResponse& failure) const;
  ApiResponse get_session(const ApiRequest& req, const std::string& id) const;
  ApiResponse delete_session(const ApiRequest& req, const std::string& id) const;
  ApiResponse list_backends() const;
  ApiResponse drain_backend(const ApiRequest& req, const std::string& address, bool drain) const;
  ApiResponse show_config() const;
  bool authorized(const ApiRequest& req) const;

  routing::Router& router_;
  std::string token_;
  const AdminHooks& hooks_;
};

}  // namespace sparkgate::admin
