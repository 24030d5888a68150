#include "policy/peer_certificate.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace sparkgate::policy {

namespace {

std::string asn1_to_utf8(const ASN1_STRING* s) {
  unsigned char* out = nullptr;
  int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) return {};
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  OPENSSL_free(out);
  return r;
}

std::vector<std::string> name_entries(X509_NAME* name, int nid) {
  std::vector<std::string> out;
  for (int i = X509_NAME_get_index_by_NID(name, nid, -1); i >= 0; i = X509_NAME_get_index_by_NID(name, nid, i)) {
    out.push_back(asn1_to_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))));
  }
  return out;
}

}  // namespace

std::shared_ptr<const PeerCertificate> read_peer_certificate(SSL* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return nullptr;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return nullptr;
  auto pc = std::make_shared<PeerCertificate>();
  if (X509_NAME* subject = X509_get_subject_name(cert)) {
    auto cn = name_entries(subject, NID_commonName);
    if (!cn.empty()) pc->subject_cn = cn.back();  // the most specific CN
    auto o = name_entries(subject, NID_organizationName);
    if (!o.empty()) pc->subject_o = o.front();
    pc->subject_ou = name_entries(subject, NID_organizationalUnitName);
  }
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      switch (gn->type) {
        case GEN_DNS: pc->san_dns.push_back(asn1_to_utf8(gn->d.dNSName)); break;
        case GEN_EMAIL: pc->san_email.push_back(asn1_to_utf8(gn->d.rfc822Name)); break;
        case GEN_URI: pc->san_uri.push_back(asn1_to_utf8(gn->d.uniformResourceIdentifier)); break;
        default: break;
      }
    }
    GENERAL_NAMES_free(sans);
  }
  X509_free(cert);
  return pc;
}

}  // namespace sparkgate::policy
