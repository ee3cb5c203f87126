#include "cli/args.h"

#include <cctype>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace packd::cli {

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = flags.find(name);
  if (it == flags.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<int64_t> Args::GetInt(const std::string& name, int64_t fallback) const {
  const std::optional<std::string> v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " wants an integer, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<double> Args::GetDouble(const std::string& name, double fallback) const {
  const std::optional<std::string> v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " wants a number, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::set<std::string>& value_flags,
                               const std::set<std::string>& bool_flags) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-h" || a == "--help") {
      args.flags["help"] = "";
      continue;
    }
    // "-n 5" is the short form of a one-letter flag "--n 5".
    const bool short_flag =
        a.size() == 2 && a[0] == '-' && std::isalpha(static_cast<unsigned char>(a[1]));
    if (!short_flag && (a.rfind("--", 0) != 0 || a == "--")) {
      args.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(short_flag ? 1 : 2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (value_flags.contains(name)) {
      if (!inline_value) {
        if (i + 1 >= argv.size())
          return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
        value = argv[++i];
      }
    } else if (bool_flags.contains(name)) {
      if (inline_value)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    args.flags[name] = value;
  }
  return args;
}

std::optional<Args> ParseCommand(const CommandSpec& spec, const std::vector<std::string>& argv,
                                 int* exit_code) {
  absl::StatusOr<Args> args = ParseArgs(argv, spec.value_flags, spec.bool_flags);
  if (args.ok() && args->Has("help")) {
    std::fputs(spec.usage, stdout);
    *exit_code = 0;
    return std::nullopt;
  }
  absl::Status error = args.status();
  const size_t given = error.ok() ? args->positional.size() : 0;
  if (error.ok() && (spec.variadic ? given < spec.positionals : given != spec.positionals)) {
    error = absl::InvalidArgumentError(absl::StrCat("expected ", spec.variadic ? "at least " : "",
                                                    spec.positionals, " positional arguments, got ",
                                                    given));
  }
  for (const std::string& flag : spec.required) {
    if (error.ok() && !args->Has(flag)) {
      error = absl::InvalidArgumentError(absl::StrCat("--", flag, " is required"));
    }
  }
  if (!error.ok()) {
    Fail(spec.name, error);
    std::fputs(spec.usage, stderr);
    *exit_code = 2;
    return std::nullopt;
  }
  return *std::move(args);
}

int Fail(const char* command, const absl::Status& status, int exit_code) {
  std::fprintf(stderr, "packd %s: %s\n", command, std::string(status.message()).c_str());
  return exit_code;
}

}  // namespace packd::cli
