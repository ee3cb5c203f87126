#include "codec/cuda/cuda_status.h"
#include "engine/cuda/store_kv.h"

namespace packd::engine::cuda {

using codec::cuda::AsStream;
using codec::cuda::LaunchStatus;

namespace {

// One thread per (token, element), grid-stride.
__global__ void StoreKvKernel(const float* k, int64_t ks, const float* v, int64_t vs,
                              int64_t n_tokens, int64_t width, float* k_cache, float* v_cache,
                              int32_t block_size, DeviceStepMetadata meta) {
  const int64_t n = n_tokens * width;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = idx / width, c = idx - t * width;
    const int32_t pos = meta.positions[t];
    const int32_t block = meta.blocks[meta.seq_begin[meta.token_seq[t]] + pos / block_size];
    const int64_t slot = static_cast<int64_t>(block) * block_size + pos % block_size;
    k_cache[slot * width + c] = k[t * ks + c];
    v_cache[slot * width + c] = v[t * vs + c];
  }
}

}  // namespace

absl::Status LaunchStoreKv(const float* k, int64_t k_stride, const float* v, int64_t v_stride,
                           int64_t n_tokens, int64_t width, float* k_cache, float* v_cache,
                           int32_t block_size, const DeviceStepMetadata& meta, void* stream) {
  const int64_t blocks = ElementwiseBlocks(n_tokens * width);
  if (blocks == 0) return absl::OkStatus();
  StoreKvKernel<<<static_cast<unsigned>(blocks), kElementwiseThreads, 0, AsStream(stream)>>>(
      k, k_stride, v, v_stride, n_tokens, width, k_cache, v_cache, block_size, meta);
  return LaunchStatus("StoreKvKernel");
}

}  // namespace packd::engine::cuda
