// Describing the machine a benchmark ran on.
#pragma once

#include <string>

namespace packd {

// The CPU's model name from /proc/cpuinfo ("unknown CPU" if absent).
std::string CpuModel();

}  // namespace packd
