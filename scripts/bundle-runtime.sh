#!/usr/bin/env bash
# Copies a built packd binary and the shared libraries it loads into a
# self-contained tree, for a machine that has the CUDA runtime but none of the
# Debian -dev packages: the Dockerfile's runtime stage, or a GPU machine that
# receives a binary built elsewhere.
#
# Usage: scripts/bundle-runtime.sh BINARY OUT_DIR
#   OUT_DIR/bin/<binary>  and  OUT_DIR/lib/*.so*  (run with
#   LD_LIBRARY_PATH=OUT_DIR/lib).
# Left out: the C library family (libc, libm, ld-linux, ...), which must match
# the target's own, and the CUDA driver and toolkit libraries (libcuda,
# libcudart, libcublas*), which come from the NVIDIA driver and the CUDA image.
set -euo pipefail

fail() {
  echo "bundle-runtime: $*" >&2
  exit 1
}

[ $# -eq 2 ] || fail "usage: scripts/bundle-runtime.sh BINARY OUT_DIR"
binary=$1
out=$2
[ -f "$binary" ] && [ -x "$binary" ] || fail "'$binary' is not an executable file"
command -v ldd >/dev/null || fail "ldd is missing"

mkdir -p "$out/bin" "$out/lib"
cp -f "$binary" "$out/bin/"

# ldd prints "name => /path (addr)" for each library it resolved and
# "name => not found" for one it could not.
if ldd "$binary" | grep -q "not found"; then
  ldd "$binary" | grep "not found" >&2
  fail "'$binary' needs libraries this machine does not have"
fi
count=0
while read -r path; do
  name=$(basename "$path")
  case "$name" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux*.so* | \
      libresolv.so* | libutil.so* | libcuda.so* | libcudart.so* | libcublas*.so* | \
      libnvidia-*.so*) continue ;;
  esac
  cp -fL "$path" "$out/lib/$name"
  count=$((count + 1))
done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }')
echo "bundle-runtime: $out/bin/$(basename "$binary") and $count libraries in $out/lib"
