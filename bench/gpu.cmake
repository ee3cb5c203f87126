# build/bench/gpu: device decode throughput of the vlc and tiled codecs
# (bench/gpu_bench.cc). Included from bench/CMakeLists.txt. Builds in every
# configuration; without CUDA (or a device) the program says so and exits 2.
add_executable(bench_gpu gpu_bench.cc)
target_link_libraries(bench_gpu PRIVATE packd_engine)
set_target_properties(bench_gpu PROPERTIES OUTPUT_NAME gpu)
