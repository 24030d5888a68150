#include "grpcwire/framer.h"

#include <algorithm>

namespace sparkgate::grpcwire {

bool Framer::next_prefix(std::span<const uint8_t> data, size_t& pos) {
  while (error_ == FramerError::kNone && pos < data.size()) {
    if (remaining_ > 0) {
      size_t skip = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size() - pos));
      remaining_ -= skip;
      pos += skip;
      continue;
    }
    size_t take = std::min(kPrefixBytes - prefix_have_, data.size() - pos);
    std::copy_n(data.data() + pos, take, prefix_ + prefix_have_);
    prefix_have_ += take;
    pos += take;
    if (prefix_have_ < kPrefixBytes) return false;
    prefix_have_ = 0;
    if (prefix_[0] > 1) {
      error_ = FramerError::kBadFlag;
      return false;
    }
    last_.compressed = prefix_[0] == 1;
    last_.length = (uint32_t(prefix_[1]) << 24) | (uint32_t(prefix_[2]) << 16) | (uint32_t(prefix_[3]) << 8) |
                   uint32_t(prefix_[4]);
    if (last_.length > max_message_bytes_) {
      error_ = FramerError::kTooLarge;
      return false;
    }
    ++messages_;
    remaining_ = last_.length;
    return true;
  }
  return false;
}

std::string encode_prefix(uint32_t length, bool compressed) {
  std::string p(kPrefixBytes, '\0');
  p[0] = compressed ? 1 : 0;
  p[1] = static_cast<char>((length >> 24) & 0xff);
  p[2] = static_cast<char>((length >> 16) & 0xff);
  p[3] = static_cast<char>((length >> 8) & 0xff);
  p[4] = static_cast<char>(length & 0xff);
  return p;
}

}  // namespace sparkgate::grpcwire
