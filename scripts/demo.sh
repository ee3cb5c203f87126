#!/usr/bin/env bash
# Sets everything up, then the main job so far: synthesize a small Llama-shaped
# checkpoint, compress it with each codec, inspect and verify the results; and
# the same for the real stories260K GGUF in ../shared when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
packd=build/cli/packd
work=$(mktemp -d "${TMPDIR:-/tmp}/packd-demo-XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "packd synth --shape tiny --dtype bf16"
$packd synth --shape tiny --dtype bf16 --out "$work/tiny-hf"
ls -l "$work/tiny-hf"
for codec in vlc tiled none; do
  step "packd compress (codec $codec)"
  $packd compress "$work/tiny-hf" "$work/tiny-$codec" --codec "$codec"
done
step "packd inspect (vlc)"
$packd inspect "$work/tiny-vlc"
for codec in vlc tiled none; do
  step "packd verify (codec $codec)"
  $packd verify "$work/tiny-$codec"
done

gguf=../shared/models/stories260K/stories260K.gguf
if [ -f "$gguf" ]; then
  for codec in vlc tiled; do
    step "real weights: packd compress stories260K.gguf (codec $codec)"
    $packd compress "$gguf" "$work/stories-$codec" --codec "$codec"
    $packd verify "$work/stories-$codec"
  done
  step "packd inspect (stories260K, tiled)"
  $packd inspect "$work/stories-tiled"
else
  echo "(../shared/models/stories260K not found: skipping the real-weights part)"
fi
step "done"
