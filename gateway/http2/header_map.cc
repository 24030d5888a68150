#include "http2/header_map.h"

#include <algorithm>

namespace sparkgate::http2 {

const std::string* HeaderMap::find(std::string_view name) const {
  for (const auto& [n, v] : fields_) {
    if (n == name) return &v;
  }
  return nullptr;
}

void HeaderMap::remove(std::string_view name) {
  std::erase_if(fields_, [&](const auto& f) {
    if (f.first != name) return false;
    bytes_ -= f.first.size() + f.second.size();
    return true;
  });
}

void HeaderMap::set(std::string_view name, std::string value) {
  remove(name);
  add(std::string(name), std::move(value));
}

NvArray HeaderMap::to_nv() const {
  NvArray nv;
  nv.reserve(fields_.size());
  for (const auto& [n, v] : fields_) {
    // nghttp2 copies the fields at submit time, so the map may be a temporary.
    uint8_t flags = NGHTTP2_NV_FLAG_NONE;
    // Credentials must not enter the HPACK dynamic table, where a compression oracle
    // could recover them.
    if (n == "authorization" || n == "authentication" || n == "cookie") flags |= NGHTTP2_NV_FLAG_NO_INDEX;
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), flags});
  }
  return nv;
}

bool is_hop_by_hop(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "host" || name == "te";
}

}  // namespace sparkgate::http2
