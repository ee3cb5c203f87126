// The packd command: subcommand dispatch only; the work lives in the libraries.
#include <cstdio>
#include <cstring>
#include <string_view>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: packd <compress|inspect|verify|synth> ...\n");
    return 2;
  }
  std::fprintf(stderr, "packd: unknown command '%s'\n", argv[1]);
  return 2;
}
