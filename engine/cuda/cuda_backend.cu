// The CUDA backend: engine/backend.h on one device and one stream. Design
// notes (memory, streams, uploads, the matmul paths, tolerances) are in
// engine/cuda/CUDA_BACKEND.md.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/align.h"
#include "base/status_macros.h"
#include "codec/cuda/cuda_status.h"
#include "codec/cuda/device_decoder.h"
#include "codec/cuda/device_runtime.h"
#include "codec/cuda/fused_matmul.h"
#include "engine/cpu/kernels.h"
#include "engine/cuda/attention.h"
#include "engine/cuda/cublas_status.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_arena.h"
#include "engine/cuda/elementwise.h"
#include "engine/cuda/launch_plan.h"
#include "engine/cuda/op_checks.h"
#include "engine/cuda/rms_norm.h"
#include "engine/cuda/rope.h"
#include "engine/cuda/staging_ring.h"
#include "engine/cuda/store_kv.h"

namespace packd::engine {
namespace {

using codec::DType;
using codec::cuda::CudaStatus;
using cuda::ArenaBlock;
using cuda::CublasStatus;

uint64_t RoundUp256(uint64_t n) { return RoundUp(n, cuda::kArenaAlignment); }

// The device memory of one backend: the arena's bookkeeping plus the base
// pointer of every chunk it reserved. Shared (shared_ptr) by the backend
// and by every Buffer and Weight it hands out, so one that outlives the
// backend still frees into live bookkeeping; the chunks are cudaFree'd when
// the last holder goes. Thread-safe.
class DeviceMemory {
 public:
  DeviceMemory(int device, cuda::DeviceArenaOptions options)
      : device_(device),
        arena_(std::move(options), [this](int32_t index, uint64_t bytes) -> absl::Status {
          void* p = nullptr;
          RETURN_IF_ERROR(
              CudaStatus(cudaMalloc(&p, bytes), absl::StrCat("cudaMalloc(", bytes, ")")));
          absl::MutexLock lock(&mu_);
          bases_.push_back(static_cast<char*>(p));
          return absl::OkStatus();
        }) {}
  ~DeviceMemory() {
    cudaSetDevice(device_);
    absl::MutexLock lock(&mu_);
    for (char* p : bases_) cudaFree(p);  // synchronizes the device first
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  cuda::DeviceArena& arena() { return arena_; }
  void* Pointer(const ArenaBlock& b) const {
    absl::MutexLock lock(&mu_);
    return bases_[b.chunk] + b.offset;
  }

 private:
  const int device_;
  mutable absl::Mutex mu_;
  std::vector<char*> bases_ ABSL_GUARDED_BY(mu_);  // chunk index -> base
  cuda::DeviceArena arena_;                        // after bases_: its callback appends there
};

// A block of the arena, returned to it on destruction. Move-only.
class DeviceBlock {
 public:
  DeviceBlock() = default;
  DeviceBlock(std::shared_ptr<DeviceMemory> mem, ArenaBlock b)
      : mem_(std::move(mem)), block_(b), ptr_(mem_->Pointer(b)) {}
  DeviceBlock(DeviceBlock&& o) noexcept { *this = std::move(o); }
  DeviceBlock& operator=(DeviceBlock&& o) noexcept {
    Reset();
    mem_ = std::move(o.mem_);
    block_ = o.block_;
    ptr_ = o.ptr_;
    o.block_ = ArenaBlock{};
    o.ptr_ = nullptr;
    return *this;
  }
  ~DeviceBlock() { Reset(); }
  void Reset() {
    if (mem_ != nullptr && block_.valid()) mem_->arena().Free(block_);
    mem_.reset();
    block_ = ArenaBlock{};
    ptr_ = nullptr;
  }
  void* get() const { return ptr_; }
  uint64_t bytes() const { return block_.bytes; }

 private:
  std::shared_ptr<DeviceMemory> mem_;
  ArenaBlock block_;
  void* ptr_ = nullptr;
};

class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(DeviceBlock block, uint64_t bytes) : block_(std::move(block)), bytes_(bytes) {}
  void* data() override { return block_.get(); }
  uint64_t bytes() const override { return bytes_; }

 private:
  DeviceBlock block_;
  uint64_t bytes_;
};

// A weight on the device. A matrix is resident as stored (raw bf16/f16/f32
// rows) or as its device decoder's image; a vector is expanded to fp32.
// Nothing in it belongs to the backend that loaded it (its storage holds the
// arena's bookkeeping, DeviceBlock): any backend on the same device may run
// it on its own stream once it has adopted it (AdoptWeight sizes that
// backend's scratch), and it outlives the loading backend.
class CudaWeight final : public Weight {
 public:
  CudaWeight(int device, const WeightSource& s, DeviceBlock storage, uint64_t resident)
      : device_(device),
        info_(s.info),
        name_(s.name),
        storage_(std::move(storage)),
        resident_(resident) {}
  const codec::TensorInfo& info() const override { return info_; }
  const std::string& name() const override { return name_; }
  uint64_t resident_bytes() const override { return resident_; }

  int device() const { return device_; }
  bool compressed() const { return decoder_ != nullptr; }
  DType dtype() const { return info_.dtype; }
  uint64_t row_bytes() const {
    return static_cast<uint64_t>(cols()) * codec::DTypeSize(info_.dtype);
  }
  // Raw rows, the decoder image, or the fp32 vector.
  void* data() const { return storage_.get(); }
  const float* f32() const { return static_cast<const float*>(storage_.get()); }
  const codec::cuda::DeviceDecoder* decoder() const { return decoder_.get(); }

  void set_decoder(std::unique_ptr<codec::cuda::DeviceDecoder> d) { decoder_ = std::move(d); }

 private:
  const int device_;
  codec::TensorInfo info_;
  std::string name_;
  DeviceBlock storage_;
  uint64_t resident_;
  std::unique_ptr<codec::cuda::DeviceDecoder> decoder_;
};

cudaDataType CudaType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// Makes `device` current on the calling thread (the CUDA runtime's current
// device is per thread; the backend may be driven from any one thread at a
// time).
absl::Status UseDevice(int device) {
  return CudaStatus(cudaSetDevice(device), absl::StrCat("cudaSetDevice(", device, ")"));
}

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const CudaBackendOptions& options);

  ~CudaBackend() override {
    cudaSetDevice(device_);
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (staging_done_ != nullptr) cudaEventDestroy(staging_done_);
    if (pinned_ != nullptr) cudaFreeHost(pinned_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    // The DeviceBlock members return their blocks to mem_ as they are
    // destroyed; mem_'s chunks are freed with the last holder.
  }

  std::string_view name() const override { return name_; }
  std::string description() const override { return description_; }

  absl::StatusOr<std::unique_ptr<Buffer>> Allocate(uint64_t bytes, MemoryKind kind) override {
    RETURN_IF_ERROR(Healthy());
    ASSIGN_OR_RETURN(DeviceBlock block, Reserve(bytes, kind));
    return std::unique_ptr<Buffer>(new CudaBuffer(std::move(block), bytes));
  }

  MemoryUsage memory_usage() const override { return mem_->arena().usage(); }

  absl::StatusOr<std::unique_ptr<Weight>> LoadWeight(const WeightSource& s) override;
  absl::Status AdoptWeight(const Weight& w) override;

  absl::Status CopyToDevice(const void* host, void* device, uint64_t bytes) override {
    RETURN_IF_ERROR(Healthy());
    if (bytes == 0) return absl::OkStatus();
    RETURN_IF_ERROR(Track(CudaStatus(
        cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_), "CopyToDevice")));
    // Synchronous, so the host bytes may be reused at once whatever memory
    // they are in (CopyToDevice is a load-time and test call).
    return Track(CudaStatus(cudaStreamSynchronize(stream_), "CopyToDevice: synchronize"));
  }

  absl::Status CopyToHost(const void* device, void* host, uint64_t bytes) override {
    RETURN_IF_ERROR(Healthy());
    if (bytes == 0) return absl::OkStatus();
    return Track(CudaStatus(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream_),
                            "CopyToHost"));
  }

  absl::Status Synchronize() override {
    RETURN_IF_ERROR(Healthy());
    return Track(CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"));
  }

  absl::Status Embed(const Weight& table, std::span<const int32_t> ids, TensorView out) override;
  absl::Status MatMul(TensorView x, const Weight& w, const Weight* bias, TensorView out) override;
  absl::Status RmsNorm(TensorView x, const Weight& w, float eps, TensorView out) override;
  absl::Status Rope(TensorView x, int64_t n_heads, int64_t head_dim, RopeStyle style,
                    std::span<const float> inv_freq, const BatchLayout& layout) override;
  absl::Status StoreKv(const KvLayer& cache, TensorView k, TensorView v,
                       const BatchLayout& layout) override;
  absl::Status Attention(const KvLayer& cache, TensorView q, TensorView out,
                         const AttentionParams& params, const BatchLayout& layout) override;
  absl::Status SiluMul(TensorView gate, TensorView up) override;
  absl::Status Add(TensorView x, TensorView y) override;
  absl::Status GatherRows(TensorView x, std::span<const int32_t> rows, TensorView out) override;

 private:
  explicit CudaBackend(const CudaBackendOptions& o) : options_(o), device_(o.device) {}

  // The first error the stream hit, else makes the device current.
  absl::Status Healthy() {
    if (!sticky_.ok()) return sticky_;
    return UseDevice(device_);
  }
  // Records an error of work on the stream (launch, copy, cuBLAS, decode,
  // synchronization): after one, the state of everything the stream
  // touched is unknown, so every later call fails with it.
  absl::Status Track(absl::Status s) {
    if (!s.ok() && sticky_.ok()) {
      // Update, not assignment: nvcc warns on discarding Status& (nodiscard).
      sticky_.Update(absl::Status(s.code(), absl::StrCat(name_, ": ", s.message(),
                                                         " (the backend is unusable from here)")));
    }
    return s;
  }

  absl::StatusOr<DeviceBlock> Reserve(uint64_t bytes, MemoryKind kind) {
    ASSIGN_OR_RETURN(ArenaBlock b, mem_->arena().Allocate(bytes, kind));
    return DeviceBlock(mem_, b);
  }
  // Grows a workspace block to hold `bytes` (load time only: it waits for
  // the stream, since the old block may still be in use). When the larger
  // block does not fit, the old size is reserved again before the error is
  // returned: the weights loaded so far still need their scratch.
  absl::Status Grow(DeviceBlock& block, uint64_t bytes, MemoryKind kind) {
    if (block.get() != nullptr && block.bytes() >= bytes) return absl::OkStatus();
    RETURN_IF_ERROR(
        Track(CudaStatus(cudaStreamSynchronize(stream_), "synchronize before growing")));
    const uint64_t old_bytes = block.get() != nullptr ? block.bytes() : 0;
    block.Reset();
    absl::StatusOr<DeviceBlock> grown = Reserve(bytes, kind);
    if (!grown.ok()) {
      // The old block's space was just freed (and the failed request took
      // nothing), so this fits.
      if (old_bytes > 0) {
        absl::StatusOr<DeviceBlock> old = Reserve(old_bytes, kind);
        if (old.ok()) block = std::move(*old);
      }
      return grown.status();
    }
    block = std::move(*grown);
    return absl::OkStatus();
  }

  // What MatMul and Embed need of this backend's buffers for `w` (a 2-D
  // weight; 1-D ones need nothing): computed from this backend's options,
  // whichever backend loaded it.
  cuda::WeightWorkspace Workspace(const CudaWeight& w) const {
    if (w.info().shape.size() != 2) return {};
    return cuda::PlanWeightWorkspace(w.rows(), w.cols(), w.dtype(), w.compressed(),
                                     options_.decode_scratch_bytes, options_.max_matmul_rows);
  }
  // `w` as a CudaWeight on this backend's device: InvalidArgument naming
  // both otherwise.
  absl::StatusOr<const CudaWeight*> OnThisDevice(std::string_view op, const Weight& w) const {
    const auto* cw = dynamic_cast<const CudaWeight*>(&w);
    if (cw == nullptr || cw->device() != device_) {
      return absl::InvalidArgumentError(
          absl::StrCat(std::string(op), ": weight '", w.name(), "' is not a CUDA weight on ", name_,
                       cw == nullptr ? "" : absl::StrCat(" (it is on cuda:", cw->device(), ")")));
    }
    return cw;
  }
  // `w`, ready for this backend's ops: on its device, and this backend's
  // buffers sized for it (it was loaded or adopted here); FailedPrecondition
  // when they are not (a weight of another backend, never adopted).
  absl::StatusOr<const CudaWeight*> Usable(std::string_view op, const Weight& w) const {
    ASSIGN_OR_RETURN(const CudaWeight* cw, OnThisDevice(op, w));
    const cuda::WeightWorkspace need = Workspace(*cw);
    if (decode_scratch_.bytes() < need.decode_scratch_bytes ||
        half_x_.bytes() < need.half_x_bytes) {
      return absl::FailedPreconditionError(absl::StrCat(
          std::string(op), ": weight '", w.name(), "' was loaded by another backend and ", name_,
          " has not adopted it (Backend::AdoptWeight)"));
    }
    return cw;
  }
  // Grows the decode scratch and the half-precision activations to what
  // `w` needs (load time).
  absl::Status FitWorkspace(const CudaWeight& w) {
    const cuda::WeightWorkspace need = Workspace(w);
    if (need.decode_scratch_bytes > 0) {
      RETURN_IF_ERROR(Grow(decode_scratch_, need.decode_scratch_bytes, MemoryKind::kDecodeScratch));
    }
    if (need.half_x_bytes > 0) {
      RETURN_IF_ERROR(Grow(half_x_, need.half_x_bytes, MemoryKind::kWorkspace));
    }
    return absl::OkStatus();
  }

  // Copies `bytes` host bytes through the upload ring; returns where they
  // will be on the device (in stream order).
  absl::StatusOr<void*> Stage(const void* host, uint64_t bytes);
  // The step's metadata on the device: uploaded at the step's first op that
  // needs it, then reused while layout.step, the ring generation and the
  // metadata itself stay the same (step 0 is never reused).
  absl::StatusOr<cuda::DeviceStepMetadata> StepMetadata(const BatchLayout& layout);
  // The step metadata and the rope frequencies, both valid at once.
  absl::Status RopeInputs(const BatchLayout& layout, std::span<const float> inv_freq,
                          cuda::DeviceStepMetadata* meta, const float** d_inv_freq);

  // out [n, m] (ldo) = x [n, k] (the weight's half type, row stride k, in
  // half_x_) * w^T, through the fused kernels (fused_matmul.h), for
  // 1 <= n <= fused_max_batch: the raw kernel over resident rows, the
  // decoder's fused kernel over a compressed image, or, where the decoder
  // has none (rows too long for its shared memory), the plan's row chunks
  // decoded into the scratch and the raw kernel over each. All three
  // compute every element in fused_math.h's one order: the same bits.
  absl::Status FusedMatMul(const CudaWeight& w, const void* half_x, int64_t n, float* out,
                           int64_t ldo);

  // out [n, m] (ldc) = A [m, k] (rows of `type`) * B [n, k]^T (ldb).
  absl::Status Gemm(const void* a, DType type, int64_t m, int64_t n, int64_t k, const void* b,
                    int64_t ldb, float* c, int64_t ldc);

  const CudaBackendOptions options_;
  const int device_;
  std::string name_;
  std::string description_;
  std::shared_ptr<DeviceMemory> mem_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DeviceBlock cublas_workspace_;  // kWorkspace
  absl::Status sticky_;

  // Upload ring: pinned host bytes, their device mirror (kWorkspace), and an
  // event recorded after the latest copy out of the pinned bytes.
  uint8_t* pinned_ = nullptr;
  DeviceBlock staging_device_;
  cudaEvent_t staging_done_ = nullptr;
  std::unique_ptr<cuda::StagingRing> ring_;
  cuda::StepMetadata packed_;    // the step metadata last uploaded
  cuda::StepMetadata repacked_;  // the current call's, for comparison
  uint64_t meta_step_ = 0;
  uint64_t meta_generation_ = 0;
  cuda::DeviceStepMetadata meta_;
  std::vector<float> inv_freq_host_;  // the rope frequencies last uploaded
  uint64_t inv_freq_generation_ = 0;
  const float* inv_freq_device_ = nullptr;

  // Decoded rows of compressed weights (kDecodeScratch) and x converted to
  // bf16/f16 for a GEMM or a fused matmul (kWorkspace, row stride k); both
  // grown at LoadWeight and AdoptWeight only, to the largest
  // Workspace() of the weights loaded or adopted.
  DeviceBlock decode_scratch_;
  DeviceBlock half_x_;
};

absl::StatusOr<std::unique_ptr<Backend>> CudaBackend::Create(const CudaBackendOptions& o) {
  RETURN_IF_ERROR(CheckCudaBackendOptions(o));
  const int count = CudaDeviceCount();
  if (o.device < 0 || o.device >= count) {
    return absl::NotFoundError(
        absl::StrCat("cuda:", o.device, ": no such device (", count, " CUDA devices visible)"));
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(o));
  b->name_ = absl::StrCat("cuda:", o.device);
  RETURN_IF_ERROR(UseDevice(o.device));
  cudaDeviceProp props;
  RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&props, o.device), "cudaGetDeviceProperties"));
  RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking),
                             "cudaStreamCreate"));
  RETURN_IF_ERROR(CublasStatus(cublasCreate(&b->cublas_), "cublasCreate"));
  // The stream first: cublasSetStream resets the workspace to cuBLAS's own.
  RETURN_IF_ERROR(CublasStatus(cublasSetStream(b->cublas_, b->stream_), "cublasSetStream"));
  RETURN_IF_ERROR(CublasStatus(cublasSetPointerMode(b->cublas_, CUBLAS_POINTER_MODE_HOST),
                               "cublasSetPointerMode"));
  // Default math: CUBLAS_COMPUTE_32F then never uses TF32 for fp32 GEMMs.
  RETURN_IF_ERROR(
      CublasStatus(cublasSetMathMode(b->cublas_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode"));

  size_t free_bytes = 0, total_bytes = 0;
  RETURN_IF_ERROR(CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  cuda::DeviceArenaOptions ao;
  ao.name = b->name_;
  ao.chunk_bytes = o.arena_chunk_bytes;
  ao.budget_bytes = o.memory_budget_bytes != 0
                        ? o.memory_budget_bytes
                        : free_bytes - std::min<uint64_t>(free_bytes / 16, 1ull << 30);
  b->mem_ = std::make_shared<DeviceMemory>(o.device, std::move(ao));

  if (o.cublas_workspace_bytes > 0) {
    ASSIGN_OR_RETURN(b->cublas_workspace_,
                     b->Reserve(o.cublas_workspace_bytes, MemoryKind::kWorkspace));
    RETURN_IF_ERROR(CublasStatus(
        cublasSetWorkspace(b->cublas_, b->cublas_workspace_.get(), o.cublas_workspace_bytes),
        "cublasSetWorkspace"));
  }
  b->ring_ = std::make_unique<cuda::StagingRing>(o.staging_bytes);
  RETURN_IF_ERROR(
      CudaStatus(cudaMallocHost(&b->pinned_, b->ring_->capacity()), "cudaMallocHost (staging)"));
  ASSIGN_OR_RETURN(b->staging_device_, b->Reserve(b->ring_->capacity(), MemoryKind::kWorkspace));
  RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&b->staging_done_, cudaEventDisableTiming),
                             "cudaEventCreate"));
  RETURN_IF_ERROR(
      CudaStatus(cudaEventRecord(b->staging_done_, b->stream_), "cudaEventRecord (staging)"));

  b->description_ = absl::StrFormat(
      "%s (%s, sm_%d%d, %d SMs, %.1f GiB, budget %.1f GiB)", b->name_, props.name, props.major,
      props.minor, props.multiProcessorCount, static_cast<double>(total_bytes) / (1ull << 30),
      static_cast<double>(b->mem_->arena().options().budget_bytes) / (1ull << 30));
  return std::unique_ptr<Backend>(std::move(b));
}

absl::StatusOr<std::unique_ptr<Weight>> CudaBackend::LoadWeight(const WeightSource& s) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(CheckWeightSource(name_, s));
  const DType t = s.info.dtype;
  if (s.info.shape.size() > 2 || s.info.shape.empty() || s.info.elements() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": weight '", s.name, "' must be 1-D or 2-D and not empty"));
  }

  if (s.info.shape.size() == 1) {
    // Norms and biases: fp32 on the device, converted on the host.
    std::vector<uint8_t> bytes;
    const uint8_t* src = s.raw.data();
    if (s.decoder != nullptr) {
      bytes.resize(s.info.bytes());
      RETURN_IF_ERROR(s.decoder->DecodeAll(bytes, 1));
      src = bytes.data();
    }
    std::vector<float> f32(s.info.elements());
    cpu::GetKernels().to_f32(src, t, static_cast<int64_t>(f32.size()), f32.data());
    const uint64_t n = f32.size() * sizeof(float);
    ASSIGN_OR_RETURN(DeviceBlock block, Reserve(n, MemoryKind::kWeights));
    RETURN_IF_ERROR(Track(
        CudaStatus(cudaMemcpyAsync(block.get(), f32.data(), n, cudaMemcpyHostToDevice, stream_),
                   absl::StrCat("uploading '", s.name, "'"))));
    RETURN_IF_ERROR(Track(CudaStatus(cudaStreamSynchronize(stream_), "LoadWeight: synchronize")));
    return std::unique_ptr<Weight>(new CudaWeight(device_, s, std::move(block), n));
  }

  std::unique_ptr<CudaWeight> w;
  if (s.decoder == nullptr) {
    ASSIGN_OR_RETURN(DeviceBlock block, Reserve(s.raw.size(), MemoryKind::kWeights));
    RETURN_IF_ERROR(Track(CudaStatus(
        cudaMemcpyAsync(block.get(), s.raw.data(), s.raw.size(), cudaMemcpyHostToDevice, stream_),
        absl::StrCat("uploading '", s.name, "'"))));
    w = std::make_unique<CudaWeight>(device_, s, std::move(block), s.raw.size());
  } else {
    absl::StatusOr<std::unique_ptr<codec::cuda::DeviceDecoder>> dec =
        codec::cuda::DeviceDecoder::Create(s.codec, s.info, s.components);
    if (!dec.ok()) {
      return absl::Status(
          dec.status().code(),
          absl::StrCat(name_, ": weight '", s.name, "' (", s.codec, "): ", dec.status().message()));
    }
    const uint64_t image = (*dec)->image_bytes();
    ASSIGN_OR_RETURN(DeviceBlock block, Reserve(image, MemoryKind::kWeights));
    RETURN_IF_ERROR(Track((*dec)->Upload(block.get(), stream_)));
    w = std::make_unique<CudaWeight>(device_, s, std::move(block), image);
    w->set_decoder(std::move(*dec));
  }
  // Room for the largest chunk MatMul decodes, for Embed's one row per id at
  // a 256-byte pitch, and for x in the weight's half type.
  RETURN_IF_ERROR(FitWorkspace(*w));
  // The upload reads the caller's (mapped) bytes: done before returning.
  RETURN_IF_ERROR(Track(CudaStatus(cudaStreamSynchronize(stream_), "LoadWeight: synchronize")));
  return std::unique_ptr<Weight>(std::move(w));
}

absl::Status CudaBackend::AdoptWeight(const Weight& weight) {
  RETURN_IF_ERROR(Healthy());
  ASSIGN_OR_RETURN(const CudaWeight* w, OnThisDevice("AdoptWeight", weight));
  // Device pointers are valid on every stream of the device (one context per
  // device per process); the loading backend synchronized after the upload.
  return FitWorkspace(*w);
}

absl::StatusOr<void*> CudaBackend::Stage(const void* host, uint64_t bytes) {
  ASSIGN_OR_RETURN(cuda::StagingRing::Region r, ring_->Reserve(bytes));
  if (r.wrapped) {
    // Every earlier copy out of the pinned bytes must be done before they
    // are overwritten.
    RETURN_IF_ERROR(
        Track(CudaStatus(cudaEventSynchronize(staging_done_), "waiting for the staging ring")));
  }
  uint8_t* dst = static_cast<uint8_t*>(staging_device_.get()) + r.offset;
  if (bytes == 0) return static_cast<void*>(dst);
  std::memcpy(pinned_ + r.offset, host, bytes);
  RETURN_IF_ERROR(Track(
      CudaStatus(cudaMemcpyAsync(dst, pinned_ + r.offset, bytes, cudaMemcpyHostToDevice, stream_),
                 "staging upload")));
  RETURN_IF_ERROR(Track(CudaStatus(cudaEventRecord(staging_done_, stream_), "cudaEventRecord")));
  return static_cast<void*>(dst);
}

absl::StatusOr<cuda::DeviceStepMetadata> CudaBackend::StepMetadata(const BatchLayout& layout) {
  // Packing is cheap (a few KB of host ints); comparing with what was
  // uploaded makes a reused step id (a second Transformer on this backend)
  // harmless.
  RETURN_IF_ERROR(cuda::PackStepMetadata(layout, &repacked_));
  if (layout.step != 0 && layout.step == meta_step_ && meta_generation_ == ring_->generation() &&
      repacked_.data == packed_.data) {
    return meta_;
  }
  std::swap(packed_, repacked_);
  meta_step_ = 0;  // invalid until uploaded
  ASSIGN_OR_RETURN(void* d, Stage(packed_.data.data(), packed_.data.size() * sizeof(int32_t)));
  const int32_t* base = static_cast<const int32_t*>(d);
  meta_.positions = base + packed_.positions;
  meta_.token_seq = base + packed_.token_seq;
  meta_.seq_begin = base + packed_.seq_begin;
  meta_.blocks = base + packed_.blocks;
  meta_step_ = layout.step;
  meta_generation_ = ring_->generation();
  return meta_;
}

absl::Status CudaBackend::RopeInputs(const BatchLayout& layout, std::span<const float> inv_freq,
                                     cuda::DeviceStepMetadata* meta, const float** d_inv_freq) {
  // Staging one may wrap the ring and drop the other: at most a few rounds.
  for (int round = 0; round < 3; ++round) {
    ASSIGN_OR_RETURN(*meta, StepMetadata(layout));
    const bool same =
        inv_freq_device_ != nullptr && inv_freq_generation_ == ring_->generation() &&
        std::equal(inv_freq.begin(), inv_freq.end(), inv_freq_host_.begin(), inv_freq_host_.end());
    if (!same) {
      ASSIGN_OR_RETURN(void* d, Stage(inv_freq.data(), inv_freq.size_bytes()));
      inv_freq_device_ = static_cast<const float*>(d);
      inv_freq_host_.assign(inv_freq.begin(), inv_freq.end());
      inv_freq_generation_ = ring_->generation();
    }
    if (meta_generation_ == ring_->generation()) {
      *d_inv_freq = inv_freq_device_;
      return absl::OkStatus();
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat(name_, ": the step metadata and rope frequencies do not fit the ",
                   ring_->capacity(), "-byte staging ring together"));
}

absl::Status CudaBackend::Gemm(const void* a, DType type, int64_t m, int64_t n, int64_t k,
                               const void* b, int64_t ldb, float* c, int64_t ldc) {
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX) {
    return absl::InvalidArgumentError("MatMul: a dimension exceeds cuBLAS's 32-bit sizes");
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType ab = CudaType(type);
  // Column-major view: C [m, n] = A^T [m, k] * B [k, n], where A is the
  // row-major [m, k] weight (lda = k), B the row-major [n, k] activations
  // (ldb) and C the row-major [n, m] output (ldc = its row stride).
  return Track(CublasStatus(
      cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                   static_cast<int>(k), &alpha, a, ab, static_cast<int>(k), b, ab,
                   static_cast<int>(ldb), &beta, c, CUDA_R_32F, static_cast<int>(ldc),
                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx"));
}

absl::Status CudaBackend::FusedMatMul(const CudaWeight& w, const void* half_x, int64_t n,
                                      float* out, int64_t ldo) {
  const int64_t m = w.rows(), k = w.cols();
  const DType t = w.dtype();
  if (!w.compressed()) {
    return Track(codec::cuda::FusedMatMulRaw(w.data(), t, m, k, half_x, k, n, out, ldo, stream_));
  }
  const codec::cuda::DeviceDecoder& dec = *w.decoder();
  if (dec.fused_kernel() != codec::cuda::FusedKernel::kNone) {
    return Track(dec.FusedMatMul(w.data(), half_x, k, n, out, ldo, stream_));
  }
  // In the fused order output column r depends on weight row r and x only,
  // so the raw kernel run chunk by chunk (output columns [r0, r0 + count))
  // gives the bits of one call over the whole weight.
  const cuda::RowChunkPlan plan = Workspace(w).plan;
  for (int64_t c = 0; c < plan.chunks; ++c) {
    const int64_t r0 = c * plan.rows_per_chunk;
    const int64_t count = std::min(plan.rows_per_chunk, m - r0);
    RETURN_IF_ERROR(Track(dec.DecodeRows(w.data(), r0, count, decode_scratch_.get(), stream_)));
    RETURN_IF_ERROR(Track(codec::cuda::FusedMatMulRaw(decode_scratch_.get(), t, count, k, half_x, k,
                                                      n, out + r0, ldo, stream_)));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::Embed(const Weight& table, std::span<const int32_t> ids, TensorView out) {
  RETURN_IF_ERROR(Healthy());
  ASSIGN_OR_RETURN(const CudaWeight* w, Usable("Embed", table));
  RETURN_IF_ERROR(cuda::CheckEmbed(w->info(), w->name(), ids, out));
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0 || out.cols == 0) return absl::OkStatus();
  const uint64_t row_bytes = w->row_bytes();
  if (!w->compressed()) {
    ASSIGN_OR_RETURN(void* d_ids, Stage(ids.data(), ids.size_bytes()));
    return Track(cuda::LaunchRowsToF32(w->data(), w->dtype(), out.cols, row_bytes,
                                       static_cast<const int32_t*>(d_ids), n, out.data, out.stride,
                                       stream_));
  }
  // Compressed: decode each id's row into the scratch (a 256-byte pitch),
  // then convert them together.
  const uint64_t pitch = RoundUp256(row_bytes);
  const int64_t group = static_cast<int64_t>(decode_scratch_.bytes() / pitch);
  uint8_t* scratch = static_cast<uint8_t*>(decode_scratch_.get());
  for (int64_t g0 = 0; g0 < n; g0 += group) {
    const int64_t count = std::min(group, n - g0);
    for (int64_t i = 0; i < count; ++i) {
      RETURN_IF_ERROR(
          Track(w->decoder()->DecodeRows(w->data(), ids[g0 + i], 1, scratch + i * pitch, stream_)));
    }
    RETURN_IF_ERROR(
        Track(cuda::LaunchRowsToF32(scratch, w->dtype(), out.cols, pitch, nullptr, count,
                                    out.data + g0 * out.stride, out.stride, stream_)));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::MatMul(TensorView x, const Weight& weight, const Weight* bias,
                                 TensorView out) {
  RETURN_IF_ERROR(Healthy());
  ASSIGN_OR_RETURN(const CudaWeight* w, Usable("MatMul", weight));
  const CudaWeight* b = nullptr;
  if (bias != nullptr) {
    ASSIGN_OR_RETURN(b, Usable("MatMul", *bias));
  }
  RETURN_IF_ERROR(cuda::CheckMatMul(x, w->info(), w->name(), b ? &b->info() : nullptr,
                                    b ? b->name() : std::string(), out));
  const int64_t m = w->rows(), k = w->cols(), n = x.rows;
  if (n == 0 || m == 0) return absl::OkStatus();
  const DType t = w->dtype();
  const cuda::RowChunkPlan plan = Workspace(*w).plan;
  const uint64_t row_bytes = w->row_bytes();
  // The fused kernels for a few rows against a half weight, cuBLAS
  // otherwise: decided on (n, dtype, option) only, so raw and compressed
  // weights take the same path and give the same bits.
  const bool fused = t != DType::kF32 && n <= options_.fused_max_batch;
  // Token slices: one for fp32 weights (x is read as it is); slices of
  // max_matmul_rows for half weights (x converted to the weight's type).
  const int64_t slice = t == DType::kF32 ? n : options_.max_matmul_rows;
  for (int64_t s0 = 0; s0 < n; s0 += slice) {
    const int64_t rows = std::min(slice, n - s0);
    const void* xb = x.data + s0 * x.stride;
    int64_t ldb = x.stride;
    if (t != DType::kF32) {
      RETURN_IF_ERROR(Track(cuda::LaunchToHalf(x.data + s0 * x.stride, x.stride, rows, k, t,
                                               half_x_.get(), stream_)));
      xb = half_x_.get();
      ldb = k;
    }
    if (fused) {
      RETURN_IF_ERROR(FusedMatMul(*w, xb, rows, out.data + s0 * out.stride, out.stride));
      continue;
    }
    // The same chunks, and so the same GEMMs, for raw and compressed
    // weights: only where A comes from differs (both 256-byte aligned).
    for (int64_t c = 0; c < plan.chunks; ++c) {
      const int64_t r0 = c * plan.rows_per_chunk;
      const int64_t count = std::min(plan.rows_per_chunk, m - r0);
      const void* a;
      if (w->compressed()) {
        RETURN_IF_ERROR(
            Track(w->decoder()->DecodeRows(w->data(), r0, count, decode_scratch_.get(), stream_)));
        a = decode_scratch_.get();
      } else {
        a = static_cast<const uint8_t*>(w->data()) + static_cast<uint64_t>(r0) * row_bytes;
      }
      RETURN_IF_ERROR(
          Gemm(a, t, count, rows, k, xb, ldb, out.data + s0 * out.stride + r0, out.stride));
    }
  }
  if (b != nullptr) {
    RETURN_IF_ERROR(Track(cuda::LaunchBiasAdd(out.data, out.stride, b->f32(), n, m, stream_)));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::RmsNorm(TensorView x, const Weight& weight, float eps, TensorView out) {
  RETURN_IF_ERROR(Healthy());
  ASSIGN_OR_RETURN(const CudaWeight* w, Usable("RmsNorm", weight));
  RETURN_IF_ERROR(cuda::CheckRmsNorm(x, w->info(), w->name(), out));
  return Track(cuda::LaunchRmsNorm(x.data, x.stride, w->f32(), x.rows, x.cols, eps, out.data,
                                   out.stride, stream_));
}

absl::Status CudaBackend::Rope(TensorView x, int64_t n_heads, int64_t head_dim, RopeStyle style,
                               std::span<const float> inv_freq, const BatchLayout& layout) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckRope(x, n_heads, head_dim, inv_freq.size(), layout));
  if (x.rows == 0) return absl::OkStatus();
  cuda::DeviceStepMetadata meta;
  const float* d_inv_freq = nullptr;
  RETURN_IF_ERROR(RopeInputs(layout, inv_freq, &meta, &d_inv_freq));
  return Track(cuda::LaunchRope(x.data, x.stride, x.rows, n_heads, head_dim, style, meta.positions,
                                d_inv_freq, stream_));
}

absl::Status CudaBackend::StoreKv(const KvLayer& cache, TensorView k, TensorView v,
                                  const BatchLayout& layout) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckStoreKv(cache, k, v, layout));
  if (layout.n_tokens() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(cuda::DeviceStepMetadata meta, StepMetadata(layout));
  return Track(cuda::LaunchStoreKv(k.data, k.stride, v.data, v.stride, layout.n_tokens(), k.cols,
                                   cache.k, cache.v, cache.block_size, meta, stream_));
}

absl::Status CudaBackend::Attention(const KvLayer& cache, TensorView q, TensorView out,
                                    const AttentionParams& p, const BatchLayout& layout) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckAttention(cache, q, out, p, layout));
  if (layout.n_tokens() == 0) return absl::OkStatus();
  cuda::AttentionLaunch a;
  ASSIGN_OR_RETURN(a.meta, StepMetadata(layout));
  a.q = q.data;
  a.q_stride = q.stride;
  a.out = out.data;
  a.out_stride = out.stride;
  a.k_cache = cache.k;
  a.v_cache = cache.v;
  a.block_size = cache.block_size;
  a.n_tokens = layout.n_tokens();
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.sliding_window = p.sliding_window;
  return Track(cuda::LaunchAttention(a, stream_));
}

absl::Status CudaBackend::SiluMul(TensorView gate, TensorView up) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckSameShape("SiluMul", gate, up));
  return Track(cuda::LaunchSiluMul(gate.data, gate.stride, up.data, up.stride, gate.rows, gate.cols,
                                   stream_));
}

absl::Status CudaBackend::Add(TensorView x, TensorView y) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckSameShape("Add", x, y));
  return Track(cuda::LaunchAdd(x.data, x.stride, y.data, y.stride, x.rows, x.cols, stream_));
}

absl::Status CudaBackend::GatherRows(TensorView x, std::span<const int32_t> rows, TensorView out) {
  RETURN_IF_ERROR(Healthy());
  RETURN_IF_ERROR(cuda::CheckGatherRows(x, rows, out));
  if (rows.empty() || x.cols == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(void* d_rows, Stage(rows.data(), rows.size_bytes()));
  return Track(cuda::LaunchGatherRows(x.data, x.stride, static_cast<const int32_t*>(d_rows),
                                      static_cast<int64_t>(rows.size()), x.cols, out.data,
                                      out.stride, stream_));
}

}  // namespace

int CudaDeviceCount() {
  const absl::StatusOr<int> count = codec::cuda::CudaDeviceCount();
  if (!count.ok()) {
    cudaGetLastError();  // clear it: no driver or no device is not an error of later calls
    return 0;
  }
  return *count;
}

absl::StatusOr<CudaDeviceInfo> QueryCudaDevice(int device) {
  const int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::NotFoundError(
        absl::StrCat("cuda:", device, ": no such device (", count, " CUDA devices visible)"));
  }
  int previous = 0;
  RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  cudaDeviceProp props;
  RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties"));
  RETURN_IF_ERROR(UseDevice(device));
  size_t free_bytes = 0, total_bytes = 0;
  const absl::Status mem = CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  cudaSetDevice(previous);
  RETURN_IF_ERROR(mem);
  CudaDeviceInfo info;
  info.device = device;
  info.name = props.name;
  info.total_bytes = total_bytes;
  info.free_bytes = free_bytes;
  info.sm_count = props.multiProcessorCount;
  info.compute_major = props.major;
  info.compute_minor = props.minor;
  return info;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const CudaBackendOptions& options) {
  return CudaBackend::Create(options);
}

}  // namespace packd::engine
