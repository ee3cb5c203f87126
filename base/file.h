// File access: read-only memory maps for large inputs and atomic writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace packd {

// How MappedFile holds a file's bytes.
enum class FileAccess {
  // A read-only mapping of the file (page cache): nothing is read until
  // touched, and processes mapping one file share its pages.
  kMapped,
  // Read at open into anonymous memory of this process, with transparent
  // huge pages asked for (madvise; used where the kernel allows it), then
  // made read-only. For weights a CPU matmul streams at every step: on the
  // development machine a one-token gemm over such memory read ~1.3x faster
  // than over the mapped page cache (bench/NOTES.md, issue 19). The pages
  // count as this process's memory and are not dropped under pressure.
  kResident,
};

// Anonymous private memory of at least `bytes`, starting at a transparent
// huge page boundary (2 MiB) with MADV_HUGEPAGE asked for: huge pages where
// the kernel grants them, 4 KiB ones otherwise. Read-write until
// MakeReadOnly; unmapped when destroyed. Movable, not copyable.
class HugePageMemory {
 public:
  // ResourceExhausted when the mapping fails.
  static absl::StatusOr<HugePageMemory> Allocate(size_t bytes);
  HugePageMemory() = default;
  HugePageMemory(HugePageMemory&& other) noexcept;
  HugePageMemory& operator=(HugePageMemory&& other) noexcept;
  HugePageMemory(const HugePageMemory&) = delete;
  HugePageMemory& operator=(const HugePageMemory&) = delete;
  ~HugePageMemory();

  uint8_t* data() const { return data_; }
  // `bytes` rounded up to whole huge pages.
  size_t size() const { return size_; }
  absl::Status MakeReadOnly();

 private:
  void* map_ = nullptr;  // the whole mapping: size_ plus slack to align data_
  size_t map_bytes_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// A read-only view of a whole file. Empty files map to an empty span.
// Movable, not copyable; the bytes stay valid while the object lives.
class MappedFile {
 public:
  static absl::StatusOr<MappedFile> Open(const std::filesystem::path& path,
                                         FileAccess access = FileAccess::kMapped);
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }
  FileAccess access() const { return access_; }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  FileAccess access_ = FileAccess::kMapped;
  void* map_ = nullptr;      // kMapped: the file's mapping, size_ bytes
  HugePageMemory resident_;  // kResident: the bytes read in
};

// Reads a whole (small) file into a string, e.g. config.json.
absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path);

// Writes a file atomically: bytes go to "<path>.tmp-<pid>", which is fsynced and
// renamed over `path`, and the directory is fsynced. Killed at any moment, the
// destination either does not exist / keeps its old content, or is complete.
// Not thread-safe with respect to the same path.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(
      const std::filesystem::path& path);
  ~AtomicFileWriter();  // removes the temporary file if Commit() was not reached

  absl::Status Append(std::span<const uint8_t> bytes);
  absl::Status Append(std::string_view bytes);
  uint64_t bytes_written() const { return written_; }
  // fsync + rename + directory fsync. No further Append() after it.
  absl::Status Commit();

 private:
  AtomicFileWriter(std::filesystem::path path, std::filesystem::path tmp, int fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Writes `bytes` to `path` atomically (see AtomicFileWriter).
absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes);

// fsync()s a directory so that renames inside it are durable.
absl::Status SyncDirectory(const std::filesystem::path& dir);

}  // namespace packd
