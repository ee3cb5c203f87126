# build/bench/gpu: device decode throughput of the vlc and tiled codecs, and
# (--fit) instances per device computed from packd's placement estimates
# (bench/gpu_bench.cc). Included from bench/CMakeLists.txt. Builds in every
# configuration; without CUDA (or a device) the decode part says so and exits
# 2, --fit runs anyway. packd_server: server::EstimateInstanceBytes and
# server::Placement for --fit.
add_executable(bench_gpu gpu_bench.cc)
target_link_libraries(bench_gpu PRIVATE packd_engine packd_server)
set_target_properties(bench_gpu PROPERTIES OUTPUT_NAME gpu)

# build/bench/fused: the fused decode-in-matmul kernels against the engine's
# cuBLAS GEMM and its decode-to-scratch path (bench/fused_bench.cc, issue 6).
# Builds in every configuration: fused_bench_device.cu (cuBLAS, the L2 flush)
# with CUDA, fused_bench_device_unavailable.cc (says so) without; without a
# device the program says so and exits 2.
set(bench_fused_srcs fused_bench.cc fused_bench_device_unavailable.cc)
if(PACKD_HAVE_CUDA)
  list(APPEND bench_fused_srcs fused_bench_device.cu)
endif()
add_executable(bench_fused ${bench_fused_srcs})
target_link_libraries(bench_fused PRIVATE packd_engine)
if(PACKD_HAVE_CUDA)
  target_link_libraries(bench_fused PRIVATE CUDA::cudart CUDA::cublas)
endif()
set_target_properties(bench_fused PROPERTIES OUTPUT_NAME fused)
