// Test memory that faults on an overread: the host twins of the CUDA kernels
// (codec/cuda/*_test.cc) run their loads against it, so an out-of-bounds read
// that a GPU would make crashes the test instead of passing unseen.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

namespace packd::testing {

// `bytes` readable bytes ending exactly at a PROT_NONE page, so that any read
// past the end (a kernel's out-of-bounds load, replayed on the host) faults.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(uint64_t bytes) : bytes_(bytes) {
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t data_pages = (bytes + page - 1) / page;
    map_bytes_ = (data_pages + 1) * page;
    void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "GuardedBuffer: mmap of %llu bytes failed\n",
                   static_cast<unsigned long long>(map_bytes_));
      std::abort();
    }
    map_ = static_cast<uint8_t*>(m);
    if (mprotect(map_ + data_pages * page, page, PROT_NONE) != 0) {
      std::fprintf(stderr, "GuardedBuffer: mprotect failed\n");
      std::abort();
    }
    data_ = map_ + data_pages * page - bytes;  // bytes is a multiple of 256: aligned
  }
  ~GuardedBuffer() {
    if (map_ != nullptr) munmap(map_, map_bytes_);
  }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  uint8_t* data() const { return data_; }
  std::span<uint8_t> span() const { return {data_, bytes_}; }

 private:
  uint64_t bytes_ = 0;
  uint64_t map_bytes_ = 0;
  uint8_t* map_ = nullptr;
  uint8_t* data_ = nullptr;
};

}  // namespace packd::testing
