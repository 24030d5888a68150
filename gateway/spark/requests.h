// Requests the gateway itself sends to a backend (serialized with the view protos).
#pragma once

#include <string>

namespace sparkgate::spark {

// The client_type the gateway writes into its own requests.
inline constexpr const char* kGatewayClientType = "sparkgate";

// A ReleaseSessionRequest (unframed) that ends `session_id` of `user_id` for good
// (allow_reconnect false: Spark tombstones the session).
std::string release_session_request(const std::string& session_id, const std::string& user_id);

}  // namespace sparkgate::spark
