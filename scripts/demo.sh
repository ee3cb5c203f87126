#!/usr/bin/env bash
# Sets everything up, then the main job so far: synthesize a small Llama-shaped
# checkpoint, compress it with each codec, inspect and verify the results; then
# the real stories260K GGUF in ../shared: compress it, and generate text from
# the original and from each compressed copy (the texts must be identical).
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
  prompt="Once upon a time"
  step "packd run stories260K.gguf \"$prompt\" -n 60 --temperature 0   (uncompressed)"
  $packd run "$gguf" "$prompt" -n 60 --temperature 0 | tee "$work/raw.txt"
  for codec in vlc tiled; do
    step "packd run (compressed, codec $codec)"
    $packd run "$work/stories-$codec" "$prompt" -n 60 --temperature 0 | tee "$work/$codec.txt"
    if cmp -s "$work/raw.txt" "$work/$codec.txt"; then
      echo "identical to the uncompressed model's text"
    else
      echo "MISMATCH between the uncompressed and the $codec model" >&2
      exit 1
    fi
  done
  step "packd run (sampled: temperature 0.8, top-p 0.95, seed 7)"
  $packd run "$work/stories-vlc" "$prompt" -n 80 --temperature 0.8 --top-p 0.95 --seed 7
else
  echo "(../shared/models/stories260K not found: skipping the real-weights part)"
fi
step "done"
