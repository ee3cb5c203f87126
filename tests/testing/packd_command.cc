#include "tests/testing/packd_command.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

namespace packd::testing {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::string s;
  if (FILE* f = std::fopen(p.c_str(), "rb")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, f)) s.append(buf, n);
    std::fclose(f);
  }
  return s;
}

}  // namespace

CommandResult RunPackd(const TempDir& tmp, const std::string& args) {
  const char* bin = std::getenv("PACKD_BIN");
  const std::filesystem::path out = tmp.path() / "stdout", err = tmp.path() / "stderr";
  const std::string cmd =
      std::string(bin ? bin : "packd") + " " + args + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

}  // namespace packd::testing
