// The packd subcommands. Each takes its arguments (after the subcommand name)
// and returns the process exit code: 0 success, 1 failure (e.g. a checksum
// mismatch), 2 usage error. Messages go to stdout (results) and stderr (errors).
#pragma once

#include <string>
#include <vector>

namespace packd::cli {

int CompressCommand(const std::vector<std::string>& argv);
int InspectCommand(const std::vector<std::string>& argv);
int VerifyCommand(const std::vector<std::string>& argv);
int SynthCommand(const std::vector<std::string>& argv);
int RunCommand(const std::vector<std::string>& argv);
int TokenizeCommand(const std::vector<std::string>& argv);
int ServeCommand(const std::vector<std::string>& argv);
int GenerateCommand(const std::vector<std::string>& argv);
int ChatCommand(const std::vector<std::string>& argv);
int InfoCommand(const std::vector<std::string>& argv);
int HealthCommand(const std::vector<std::string>& argv);
// `packd bench serve ...`: argv after "serve".
int BenchServeCommand(const std::vector<std::string>& argv);

}  // namespace packd::cli
