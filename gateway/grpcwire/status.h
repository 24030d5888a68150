// gRPC status codes and the header blocks of replies the gateway produces itself.
#pragma once

#include <string>
#include <string_view>

namespace sparkgate::grpcwire {

enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "UNAVAILABLE", "RESOURCE_EXHAUSTED", ... ("UNKNOWN" for an out-of-range value).
std::string_view status_name(StatusCode code);

// A status the gateway itself decided on, with a message for a person.
struct Status {
  StatusCode code = StatusCode::kOk;
  std::string message;

  bool ok() const { return code == StatusCode::kOk; }
};

// Percent-encodes a grpc-message value as the gRPC HTTP/2 spec requires (bytes outside
// 0x20..0x7e and '%' become %XX).
std::string percent_encode(std::string_view message);
// Reverses percent_encode; malformed escapes are kept literally.
std::string percent_decode(std::string_view value);

}  // namespace sparkgate::grpcwire
