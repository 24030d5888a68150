#include "spark/requests.h"

#include "spark_view.pb.h"

namespace sparkgate::spark {

std::string release_session_request(const std::string& session_id, const std::string& user_id) {
  view::ReleaseSessionRequest req;
  req.set_session_id(session_id);
  req.mutable_user_context()->set_user_id(user_id);
  req.set_client_type(kGatewayClientType);
  return req.SerializeAsString();
}

}  // namespace sparkgate::spark
