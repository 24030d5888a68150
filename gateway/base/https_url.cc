#include "base/https_url.h"
#include "base/quote.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace sparkgate::base {

namespace {

std::string quote(std::string_view s) { return quote_for_message(s); }

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

}  // namespace

std::string HttpsUrl::authority() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return port == (tls ? 443 : 80) ? h : h + ":" + std::to_string(port);
}

namespace {

bool has_scheme(std::string_view text, std::string_view scheme) {
  return text.size() >= scheme.size() && std::equal(scheme.begin(), scheme.end(), text.begin(), [](char a, char b) {
           return a == (b >= 'A' && b <= 'Z' ? b + 32 : b);
         });
}

std::optional<HttpsUrl> parse_url(std::string_view text, std::string& error, bool allow_http) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      error = "URL contains whitespace or control characters";
      return std::nullopt;
    }
  }
  const bool plain = allow_http && has_scheme(text, "http://");
  const std::string_view kScheme = plain ? "http://" : "https://";
  if (!plain && !has_scheme(text, kScheme)) {
    auto colon = text.find("://");
    if (allow_http) error = "URL " + quote(text) + " is not an absolute http:// or https:// URL";
    else if (colon == std::string_view::npos) error = "URL " + quote(text) + " is not an absolute https:// URL";
    else error = "URL " + quote(text) + " is not https:// (only HTTPS is used for keys)";
    return std::nullopt;
  }
  if (text.find('#') != std::string_view::npos) {
    error = "URL " + quote(text) + " has a fragment";
    return std::nullopt;
  }
  std::string_view rest = text.substr(kScheme.size());
  size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  HttpsUrl url;
  url.text = std::string(text);
  url.tls = !plain;
  url.port = plain ? 80 : 443;
  url.target = end == std::string_view::npos ? "/" : std::string(rest.substr(end));
  if (url.target.front() == '?') url.target.insert(url.target.begin(), '/');
  if (authority.find('@') != std::string_view::npos) {
    error = "URL " + quote(text) + " has userinfo (user@host), which is not allowed";
    return std::nullopt;
  }
  std::string_view host = authority, port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "URL " + quote(text) + " has an unterminated IPv6 address";
      return std::nullopt;
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      error = "URL " + quote(text) + " has garbage after its IPv6 address";
      return std::nullopt;
    }
    has_port = !after.empty();
    if (has_port) port = after.substr(1);
    for (char c : host) {
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) {
        error = "URL " + quote(text) + " has a malformed IPv6 address";
        return std::nullopt;
      }
    }
  } else {
    size_t colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      has_port = true;
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    for (char c : host) {
      if (!host_char(c)) {
        error = "URL " + quote(text) + " has a malformed host";
        return std::nullopt;
      }
    }
  }
  if (host.empty()) {
    error = "URL " + quote(text) + " has no host";
    return std::nullopt;
  }
  if (has_port) {
    unsigned value = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535) {
      error = "URL " + quote(text) + " has a bad port";
      return std::nullopt;
    }
    url.port = static_cast<uint16_t>(value);
  }
  url.host = std::string(host);
  return url;
}

}  // namespace

std::optional<HttpsUrl> parse_https_url(std::string_view text, std::string& error) {
  return parse_url(text, error, false);
}

std::optional<HttpsUrl> parse_http_url(std::string_view text, std::string& error) {
  return parse_url(text, error, true);
}

std::string discovery_url(std::string_view issuer) {
  if (!issuer.empty() && issuer.back() == '/') issuer.remove_suffix(1);
  return std::string(issuer) + "/.well-known/openid-configuration";
}

}  // namespace sparkgate::base
