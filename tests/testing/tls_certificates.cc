#include "tests/testing/tls_certificates.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace packd::testing {

bool MakeTlsCertificates(const std::filesystem::path& dir) {
  const std::string d = dir.string();
  const std::string script =
      absl::StrCat("set -e; cd '", d, "';",
                   "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 "
                   "-subj '/CN=packd test CA' 2>/dev/null;",
                   "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext;",
                   "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                   "-subj '/CN=127.0.0.1' 2>/dev/null;",
                   "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                   "-out server.crt -days 2 -extfile san.ext 2>/dev/null;",
                   "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
                   "-subj '/CN=packd test client' 2>/dev/null;",
                   "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                   "-out client.crt -days 2 2>/dev/null");
  return std::system(("bash -c \"" + script + "\"").c_str()) == 0;
}

}  // namespace packd::testing
