#include "base/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace packd {

namespace {
absl::Status ErrnoError(std::string_view what, const std::filesystem::path& path) {
  const int err = errno;
  std::string msg = absl::StrCat(std::string(what), " ", path.string(), ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::InternalError(msg);
}
}  // namespace

namespace {

// Transparent huge pages are 2 MiB on x86-64 (and the common arm64 setup);
// a region aligned to it can be backed by them.
constexpr size_t kHugePage = size_t{2} << 20;

// Reads size bytes of `fd` from offset 0 into `out`.
absl::Status ReadFully(int fd, uint8_t* out, size_t size, const std::filesystem::path& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, out + done, std::min<size_t>(size - done, size_t{1} << 30),
                              static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path);
    }
    if (n == 0) {
      return absl::DataLossError(absl::StrCat(path.string(), ": file shrank while being read (",
                                              done, " of ", size, " bytes)"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HugePageMemory> HugePageMemory::Allocate(size_t bytes) {
  HugePageMemory m;
  m.size_ = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  m.map_bytes_ = m.size_ + kHugePage;  // slack to align the start
  void* p =
      ::mmap(nullptr, m.map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", bytes, " bytes: ", std::strerror(errno)));
  }
  m.map_ = p;
  m.data_ = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + kHugePage - 1) &
                                       ~uintptr_t{kHugePage - 1});
  // Only a request: without THP (or with "never") the pages are 4 KiB ones.
  (void)::madvise(m.data_, m.size_, MADV_HUGEPAGE);
  return m;
}

HugePageMemory::HugePageMemory(HugePageMemory&& other) noexcept
    : map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

HugePageMemory& HugePageMemory::operator=(HugePageMemory&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, map_bytes_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

HugePageMemory::~HugePageMemory() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

absl::Status HugePageMemory::MakeReadOnly() {
  if (size_ != 0 && ::mprotect(data_, size_, PROT_READ) != 0) {
    return absl::InternalError(absl::StrCat("mprotect: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<MappedFile> MappedFile::Open(const std::filesystem::path& path, FileAccess access) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  struct CloseFd {
    int fd;
    ~CloseFd() { ::close(fd); }
  } close_fd{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("cannot stat", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), " is not a regular file"));
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<size_t>(st.st_size);
  f.access_ = access;
  if (f.size_ == 0) return f;
  if (access == FileAccess::kResident) {
    absl::StatusOr<HugePageMemory> mem = HugePageMemory::Allocate(f.size_);
    if (!mem.ok()) {
      return absl::Status(mem.status().code(),
                          absl::StrCat(path.string(), ": ", mem.status().message()));
    }
    RETURN_IF_ERROR(ReadFully(fd, mem->data(), f.size_, path));
    if (absl::Status s = mem->MakeReadOnly(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(path.string(), ": ", s.message()));
    }
    f.data_ = mem->data();
    f.resident_ = *std::move(mem);
  } else {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return ErrnoError("cannot mmap", path);
    f.map_ = p;
    f.data_ = static_cast<const uint8_t*>(p);
  }
  return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      access_(other.access_),
      map_(std::exchange(other.map_, nullptr)),
      resident_(std::move(other.resident_)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(map_, size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    access_ = other.access_;
    map_ = std::exchange(other.map_, nullptr);
    resident_ = std::move(other.resident_);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
}

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return ErrnoError("cannot read", path);
  return std::move(ss).str();
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(
    const std::filesystem::path& path) {
  std::filesystem::path tmp = path;
  tmp += absl::StrCat(".tmp-", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", tmp);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, tmp, fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

absl::Status AtomicFileWriter::Append(std::span<const uint8_t> bytes) {
  if (fd_ < 0) return absl::FailedPreconditionError("write after commit: " + path_.string());
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", tmp_);
    }
    done += static_cast<size_t>(n);
  }
  written_ += bytes.size();
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Append(std::string_view bytes) {
  return Append(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

absl::Status AtomicFileWriter::Commit() {
  if (fd_ < 0) return absl::FailedPreconditionError("double commit: " + path_.string());
  if (::fsync(fd_) != 0) return ErrnoError("cannot fsync", tmp_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return ErrnoError("cannot close", tmp_);
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return ErrnoError("cannot rename to", path_);
  committed_ = true;
  std::filesystem::path dir = path_.parent_path();
  return SyncDirectory(dir.empty() ? std::filesystem::path(".") : dir);
}

absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view bytes) {
  auto writer = AtomicFileWriter::Create(path);
  if (!writer.ok()) return writer.status();
  if (absl::Status s = (*writer)->Append(bytes); !s.ok()) return s;
  return (*writer)->Commit();
}

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open directory", dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("cannot fsync directory", dir);
  return absl::OkStatus();
}

}  // namespace packd
