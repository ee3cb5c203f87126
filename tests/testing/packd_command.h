// Runs the packd binary as a user would (through /bin/sh), for the tests of
// its subcommands.
#pragma once

#include <string>

#include "tests/testing/testing.h"

namespace packd::testing {

struct CommandResult {
  int rc = -1;      // exit status (-1: killed by a signal)
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs "$PACKD_BIN <args>" (else "packd" from PATH) with /bin/sh, so `args`
// may quote and redirect stdin; stdout and stderr are captured through files
// in `tmp`.
CommandResult RunPackd(const TempDir& tmp, const std::string& args);

}  // namespace packd::testing
