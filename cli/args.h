// Command-line parsing for the packd subcommands: positionals and --flag VALUE
// / --flag=VALUE / boolean --flag, with unknown flags rejected by name.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace packd::cli {

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // name without "--" -> value ("" for booleans)

  std::optional<std::string> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return flags.contains(name); }
  // An integer flag, or `fallback` when absent; an error names the flag.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;
};

// value_flags take a value; bool_flags do not. "-h"/"--help" become flag "help";
// "-x" is the short form of the one-letter flag "--x".
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::set<std::string>& value_flags,
                               const std::set<std::string>& bool_flags);

// What a subcommand accepts, for ParseCommand.
struct CommandSpec {
  const char* name;   // "compress"
  const char* usage;  // printed for --help (stdout) and on usage errors (stderr)
  std::set<std::string> value_flags, bool_flags;
  size_t positionals = 0;                  // exactly this many (at least, if variadic)
  std::vector<std::string> required = {};  // value flags that must be given
  bool variadic = false;                   // more positionals may follow
};

// Parses argv for `spec`. Returns the arguments, or nullopt with *exit_code set:
// 0 after printing the usage for --help, 2 after a usage error (message and
// usage on stderr).
std::optional<Args> ParseCommand(const CommandSpec& spec, const std::vector<std::string>& argv,
                                 int* exit_code);

// Prints "packd <command>: <message>" to stderr and returns `exit_code`.
int Fail(const char* command, const absl::Status& status, int exit_code = 1);

}  // namespace packd::cli
