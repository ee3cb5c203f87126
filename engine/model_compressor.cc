#include "engine/model_compressor.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/checksum.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "codec/container.h"
#include "codec/histogram.h"
#include "codec/none_codec.h"
#include "engine/checkpoint.h"

namespace packd::engine {

namespace {

// Removes a half-built directory unless released.
class DirectoryGuard {
 public:
  explicit DirectoryGuard(std::filesystem::path p) : path_(std::move(p)) {}
  ~DirectoryGuard() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  void Release() { path_.clear(); }

 private:
  std::filesystem::path path_;
};

absl::Status CheckDestination(const std::filesystem::path& dst) {
  std::error_code ec;
  if (!std::filesystem::exists(dst, ec)) return absl::OkStatus();
  if (!std::filesystem::is_directory(dst, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(dst.string(), " exists and is not a directory"));
  }
  if (!std::filesystem::is_empty(dst, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(dst.string(), " exists and is not empty; choose a new destination"));
  }
  return absl::OkStatus();
}

// Removes "<dst>.partial-<pid>" directories left by killed runs (their pid no
// longer exists), so that interrupted runs do not accumulate garbage.
void RemoveStalePartials(const std::filesystem::path& dst) {
  const std::string prefix = dst.filename().string() + ".partial-";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dst.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    int pid = 0;
    if (!absl::SimpleAtoi(name.substr(prefix.size()), &pid) || pid <= 0) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove_all(e.path(), ec);
  }
}

}  // namespace

uint64_t CompressReport::original_bytes() const {
  uint64_t n = 0;
  for (const TensorReport& t : tensors) n += t.original_bytes;
  return n;
}

uint64_t CompressReport::encoded_bytes() const {
  uint64_t n = 0;
  for (const TensorReport& t : tensors) n += t.encoded_bytes;
  return n;
}

uint64_t CompressReport::float_weights() const {
  uint64_t n = 0;
  for (const TensorReport& t : tensors) {
    if (t.entropy_bound) n += t.info.elements();
  }
  return n;
}

double CompressReport::float_bits_per_weight() const {
  uint64_t bytes = 0;
  for (const TensorReport& t : tensors) {
    if (t.entropy_bound) bytes += t.encoded_bytes;
  }
  const uint64_t n = float_weights();
  return n == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / static_cast<double>(n);
}

double CompressReport::float_entropy_bound() const {
  double bits = 0.0;
  for (const TensorReport& t : tensors) {
    if (t.entropy_bound) bits += *t.entropy_bound * static_cast<double>(t.info.elements());
  }
  const uint64_t n = float_weights();
  return n == 0 ? 0.0 : bits / static_cast<double>(n);
}

absl::StatusOr<CompressReport> CompressModel(const std::filesystem::path& src,
                                             const std::filesystem::path& dst,
                                             const CompressOptions& options) {
  ASSIGN_OR_RETURN(const codec::TensorCodec* codec, codec::FindCodec(options.codec));
  RETURN_IF_ERROR(CheckDestination(dst));
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(src));

  std::filesystem::path dst_abs = std::filesystem::absolute(dst).lexically_normal();
  if (dst_abs.filename().empty()) dst_abs = dst_abs.parent_path();  // "out/" -> "out"
  RemoveStalePartials(dst_abs);
  std::filesystem::path partial = dst_abs;
  partial += absl::StrCat(".partial-", ::getpid());
  std::error_code ec;
  std::filesystem::remove_all(partial, ec);
  if (!std::filesystem::create_directories(partial, ec) || ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", partial.string(), ": ", ec.message()));
  }
  DirectoryGuard guard(partial);

  for (const SideFile& f : ckpt->side_files()) {
    RETURN_IF_ERROR(WriteFileAtomically(partial / f.name, f.bytes));
  }

  ASSIGN_OR_RETURN(std::unique_ptr<codec::ContainerWriter> container,
                   codec::ContainerWriter::Create(partial / kWeightsFileName));
  container->SetSource(ckpt->source_json());
  CompressReport report;
  uint64_t bytes_total = 0, bytes_done = 0;
  for (const SourceTensor& t : ckpt->tensors()) bytes_total += t.data.size();
  for (const SourceTensor& t : ckpt->tensors()) {
    auto fail = [&](const absl::Status& s) {
      return absl::Status(s.code(), absl::StrCat(t.file, ": tensor '", t.name, "': ", s.message()));
    };
    TensorReport r{t.name, t.info, "none", t.data.size(), 0, std::nullopt};
    const std::optional<codec::FloatFormat> fmt = codec::FloatFormatOf(t.info.dtype);
    if (fmt) {
      const auto hist = codec::ExponentHistogram::Of(*fmt, t.data, options.threads);
      r.entropy_bound = codec::EntropyBoundBitsPerWeight(hist, *fmt);
    }
    absl::StatusOr<codec::EncodedTensor> encoded;
    if (codec->Supports(t.info.dtype)) {
      encoded = codec->Encode(t.info, t.data, options.threads);
      if (!encoded.ok()) return fail(encoded.status());
    }
    if (!encoded.ok() || encoded->encoded_bytes() >= t.data.size()) {
      encoded = codec::NoneCodec().Encode(t.info, t.data, options.threads);
      if (!encoded.ok()) return fail(encoded.status());
    }
    r.codec = encoded->codec;
    r.encoded_bytes = encoded->encoded_bytes();
    absl::Status s = container->Add(t.name, t.info, *encoded, Checksum64(t.data), r.entropy_bound);
    if (!s.ok()) return fail(s);
    report.tensors.push_back(std::move(r));
    bytes_done += t.data.size();
    if (options.progress) {
      options.progress(
          {report.tensors.size(), ckpt->tensors().size(), bytes_done, bytes_total, t.name});
    }
  }
  RETURN_IF_ERROR(container->Finish());
  RETURN_IF_ERROR(SyncDirectory(partial));
  // rename(2) replaces an empty directory atomically; a non-empty one fails.
  std::filesystem::rename(partial, dst_abs, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("cannot rename ", partial.string(), " to ",
                                            dst_abs.string(), ": ", ec.message()));
  }
  guard.Release();
  RETURN_IF_ERROR(SyncDirectory(dst_abs.parent_path()));
  return report;
}

}  // namespace packd::engine
