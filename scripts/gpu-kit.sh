#!/usr/bin/env bash
# Prepares what a session with a GPU machine (the `device` tool) carries there:
# the GPU tests, the GPU benchmarks and packd, built HERE in Release (the GPU
# machine has nvcc but none of the Debian -dev packages packd links), stripped
# and xz-compressed with the shared libraries they load, the stories260K test
# model from ../shared, and scripts/gpu-kit-run.sh. The result is an ignored
# folder (default: gpukit/) to name in the run's `carry`:
#
#   scripts/gpu-kit.sh                        # here, once per code change
#   device run: carry [gpukit], command: bash gpukit/run.sh tests   (see gpu-kit-run.sh)
#
# Needs nvcc (CUDA 13) here. The kit must stay under the device tool's 64 MiB
# (with the working tree); its size is printed. On a shared machine, cap the
# compile jobs with CMAKE_BUILD_PARALLEL_LEVEL (e.g. =2); PACKD_GPU_KIT_BUILD
# names the (Release) build directory, default build-gpukit.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=${1:-gpukit}
build=${PACKD_GPU_KIT_BUILD:-build-gpukit}
shared=${PACKD_SHARED_DIR:-../shared}

command -v nvcc >/dev/null || { echo "gpu-kit: nvcc is not on the PATH" >&2; exit 1; }
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
else
  # Re-configure, so that test files added since the last run are globbed
  # (the target list below is read before any build step would notice).
  cmake -S . -B "$build" >/dev/null
fi
grep -q -- "-DPACKD_HAVE_CUDA=1" "$build/build.ninja" ||
  { echo "gpu-kit: $build was configured without CUDA" >&2; exit 1; }

# What the kit carries, as paths in the build tree; the CMake target of
# bench/X is bench_X, of any other the file's name. Every *_gpu_test target
# of the build is taken (codec/device_decoder_gpu_test,
# codec/fused_matmul_gpu_test, engine/cuda_*_gpu_test, tests/serve_gpu_test,
# ...); run.sh runs every *_gpu_test it finds in the kit.
mapfile -t gpu_tests < <(ninja -C "$build" -t targets all |
  sed -n 's#^\([A-Za-z0-9_/]*/[A-Za-z0-9_]*_gpu_test\): .*#\1#p' | sort -u)
[ ${#gpu_tests[@]} -gt 0 ] || { echo "gpu-kit: no *_gpu_test target in $build" >&2; exit 1; }
outputs=("${gpu_tests[@]}" bench/gpu bench/engine bench/fused cli/packd)
targets=()
binaries=()
for o in "${outputs[@]}"; do
  case "$o" in
    bench/*) targets+=("bench_${o#bench/}") ;;
    *) targets+=("$(basename "$o")") ;;
  esac
  binaries+=("$build/$o")
done
cmake --build "$build" --target "${targets[@]}"

rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/shared/models"
for b in "${binaries[@]}"; do
  [ -x "$b" ] || { echo "gpu-kit: $b was not built" >&2; exit 1; }
  strip -o "$kit/bin/$(basename "$b")" "$b"
done
# The libraries: the union of what each binary loads, bundled as
# scripts/bundle-runtime.sh does (no libc family, no CUDA driver/toolkit).
libs=$(mktemp -d)
trap 'rm -rf "$libs"' EXIT
for b in "${binaries[@]}"; do
  scripts/bundle-runtime.sh "$b" "$libs/tree" >/dev/null
done
tar -C "$libs/tree" -cJf "$kit/lib.txz" lib
# The binaries are mostly device code (SASS + PTX), which xz shrinks several
# times: run.sh unpacks them.
tar -C "$kit" -cJf "$kit/bin.txz" bin
rm -rf "$kit/bin"
cp -r "$shared/models/stories260K" "$kit/shared/models/"
cp scripts/gpu-kit-run.sh "$kit/run.sh"
git rev-parse HEAD > "$kit/COMMIT" 2>/dev/null || true
git status --short --untracked-files=no > "$kit/DIRTY" 2>/dev/null || true
du -sh "$kit"
echo "gpu-kit: ready in $kit/ (commit $(cat "$kit/COMMIT" 2>/dev/null)); carry [\"$kit\"] and run: bash $kit/run.sh tests"
