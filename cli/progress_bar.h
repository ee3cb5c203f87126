// A one-line progress bar on stderr, drawn only when stderr is a terminal.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace packd::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  ~ProgressBar();  // ends the line if anything was drawn
  // done/total in bytes; `what` is shown after the numbers (e.g. a tensor name).
  void Update(uint64_t done, uint64_t total, std::string_view what);

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// "1.23 GB" style (decimal units).
std::string HumanBytes(uint64_t bytes);

}  // namespace packd::cli
