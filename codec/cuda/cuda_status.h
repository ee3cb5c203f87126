// CUDA runtime errors as absl::Status: the one mapping for every .cu file of
// codec/cuda, engine/cuda and bench (engine/cuda adds cuBLAS's in
// engine/cuda/cublas_status.h).
//
// This header names CUDA types: .cu files include it, and .cc files only in
// builds with CUDA (PACKD_HAVE_CUDA), as cuda_status_test.cc does.
#pragma once

#include <cuda_runtime.h>

#include <string_view>

#include "absl/status/status.h"

namespace packd::codec::cuda {

// OK for cudaSuccess. Otherwise "<what>: <cudaGetErrorName>:
// <cudaGetErrorString>", `what` naming what was being done: ResourceExhausted
// for cudaErrorMemoryAllocation (a request that may fit later, or on another
// device), Internal for every other error (packd checks its arguments
// before it calls CUDA, so any other failure is packd's or the device's, not
// the caller's).
absl::Status CudaStatus(cudaError_t err, std::string_view what);

// The status of the kernel launch just made (cudaGetLastError, which also
// clears it), "launch of <kernel>" as `what`: launch errors (bad
// configuration, no kernel image for this GPU) surface here; faults while
// the kernel runs surface at the next synchronization.
absl::Status LaunchStatus(std::string_view kernel);

// A failed `status` with "<context>: " before its message, same code: what a
// launcher's caller adds (the rows or shape it asked for). Call it on the
// error path only, so that a successful launch builds no string.
absl::Status WithContext(const absl::Status& status, std::string_view context);

// The stream handle of the plain headers (StreamHandle, void*) as a CUDA
// stream; nullptr is the legacy default stream.
inline cudaStream_t AsStream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace packd::codec::cuda
