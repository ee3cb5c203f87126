#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool), from the repository root, with
# the kit scripts/gpu-kit.sh made carried in (default folder gpukit/):
#
#   bash gpukit/run.sh tests      # the GPU tests (ctest label gpu), ~minutes
#   bash gpukit/run.sh sanitize   # the same under compute-sanitizer memcheck, plus racecheck
#                                 # and synccheck over the fused kernels' smaller cases
#   bash gpukit/run.sh decode     # bench/gpu: device decode GB/s per Llama-3.1-8B shape
#   bash gpukit/run.sh fused      # bench/fused: fused decode-in-matmul vs cuBLAS bf16 per
#                                 # Llama-3.1-8B shape and batch, the fused_max_batch crossover
#   bash gpukit/run.sh e2e        # bench/engine --device cuda:0 on a synthesized llama-8b,
#                                 # then bench/gpu --fit (instances per H200)
#   bash gpukit/run.sh all        # tests, sanitize, decode, fused (not e2e: too long for
#                                 # one call; all itself may outrun one 600 s device call)
#
# Everything goes to $OUT (what comes back: at most 8 files): log.txt (every
# command's output), *.json from the benchmarks, and summary.txt, which is
# also printed last. Exit status: 0 when every step passed (a test binary that
# skipped counts as a failure), 3 when no GPU is visible.
set -uo pipefail
kit=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-/tmp/packd-gpu-out}
mkdir -p "$out"
phase=${1:-tests}
log=$out/log.txt
summary=$out/summary.txt
: >"$summary"
status=0

# The binaries and their libraries travel xz-compressed (the device tool
# carries at most 64 MiB); unpacked afresh on every call.
lib=/tmp/packd-kit-lib
bin=/tmp/packd-kit-bin
rm -rf "$lib" "$bin"
mkdir -p "$lib" "$bin"
tar -C "$lib" -xJf "$kit/lib.txz" && tar -C "$bin" -xJf "$kit/bin.txz" --strip-components=1 || {
  echo "gpu kit: cannot unpack $kit/lib.txz or $kit/bin.txz" >&2
  exit 2
}
cuda_lib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && cuda_lib="$cuda_lib:$d"
done
export LD_LIBRARY_PATH="$lib/lib$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PACKD_SHARED_DIR="$kit/shared"

step() {  # step NAME TIMEOUT COMMAND...: runs it, logs it, records pass/fail
  local name=$1 limit=$2
  shift 2
  echo "===== $name: $*" >>"$log"
  local first=$(($(wc -l <"$log") + 1)) t0=$SECONDS rc=0
  timeout "$limit" "$@" >>"$log" 2>&1 || rc=$?
  local verdict=PASS
  [ $rc -eq 0 ] || { verdict="FAIL (exit $rc)"; status=1; }
  # A gtest binary that skipped its tests has not checked anything.
  if [ $rc -eq 0 ] && tail -n +"$first" "$log" | grep -q '^\[  SKIPPED \]'; then
    verdict=SKIPPED
    status=1
  fi
  printf '%-40s %-14s %5ds\n' "$name" "$verdict" $((SECONDS - t0)) | tee -a "$summary"
}

{
  echo "kit commit: $(cat "$kit/COMMIT" 2>/dev/null)"
  [ -s "$kit/DIRTY" ] && echo "kit built from a tree with uncommitted changes:" && cat "$kit/DIRTY"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || true
  nvcc --version 2>&1 | tail -1
} | tee -a "$summary" >>"$log"

# Without a visible GPU every test would skip and look like a pass.
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU visible (nvidia-smi -L failed): nothing to run" | tee -a "$summary"
  exit 3
fi

tests=()
for t in "$bin"/*_gpu_test; do tests+=("$(basename "$t")"); done
case "$phase" in
  tests | all)
    for t in "${tests[@]}"; do step "$t" 300 "$bin/$t"; done
    ;;&
  sanitize | all)
    sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -n "$sanitizer" ]; then
      for t in "${tests[@]}"; do
        step "memcheck $t" 540 "$sanitizer" --tool memcheck --error-exitcode 99 \
          --leak-check full "$bin/$t"
      done
      # The fused kernels' shared-memory staging and warp intrinsics: races
      # and barrier/mask misuse, on the smaller cases (racecheck is slow).
      for tool in racecheck synccheck; do
        step "$tool fused_matmul_gpu_test" 540 "$sanitizer" --tool "$tool" --error-exitcode 99 \
          "$bin/fused_matmul_gpu_test" \
          --gtest_filter='*ConstantModeVlcStaged*:*BatchInvariant*:*TwoStreams*:*RefusesWhatItCannotRun*'
      done
    else
      echo "compute-sanitizer: not on the PATH" | tee -a "$summary"
      status=1
    fi
    ;;&
  decode | all)
    step "bench/gpu (decode GB/s)" 540 "$bin/gpu" --json "$out/gpu_decode.json"
    ;;&
  fused | all)
    # Its tables (Markdown) also go to fused.md, to paste into bench/NOTES.md.
    step "bench/fused (fused matmul vs cuBLAS)" 540 \
      bash -c 'set -o pipefail; "$1" --json "$2/fused.json" | tee "$2/fused.md"' _ "$bin/fused" "$out"
    ;;&
  e2e)
    # Synthesizes llama-8b (16 GB) and compresses it once into the workdir;
    # a second call on the same (warm) machine reuses it.
    step "bench/engine --device cuda:0 llama-8b" 580 "$bin/engine" --shape llama-8b \
      --device cuda:0 --codecs raw,vlc,tiled --workdir /tmp/packd-bench-engine \
      --json "$out/engine_gpu.json"
    step "bench/gpu --fit (llama-8b per H200)" 120 "$bin/gpu" --fit --json "$out/fit.json"
    ;;
  tests | sanitize | decode | fused | all) ;;
  *)
    echo "usage: run.sh tests|sanitize|decode|fused|e2e|all" >&2
    exit 2
    ;;
esac
echo "----- summary ($phase)"
cat "$summary"
exit $status
