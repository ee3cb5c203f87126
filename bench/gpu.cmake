# build/bench/gpu: device decode throughput of the vlc and tiled codecs, and
# (--fit) instances per device computed from packd's placement estimates
# (bench/gpu_bench.cc). Included from bench/CMakeLists.txt. Builds in every
# configuration; without CUDA (or a device) the decode part says so and exits
# 2, --fit runs anyway. packd_server: server::EstimateInstanceBytes and
# server::Placement for --fit.
add_executable(bench_gpu gpu_bench.cc)
target_link_libraries(bench_gpu PRIVATE packd_engine packd_server)
set_target_properties(bench_gpu PROPERTIES OUTPUT_NAME gpu)
