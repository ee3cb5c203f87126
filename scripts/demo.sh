#!/usr/bin/env bash
# Sets everything up, then the main job: synthesize a small Llama-shaped
# checkpoint, compress it with each codec, inspect and verify the results; then
# the real stories260K GGUF in ../shared: compress it, generate text from the
# original and from each compressed copy (the texts must be identical); and
# finally serve the compressed model with `packd serve` (configs/demo.yaml),
# stream a generation over gRPC with `packd generate`, chat one turn with
# `packd chat` and over the OpenAI-compatible HTTP API with curl, show the server's
# memory/density report and a few /metrics lines, and stop it cleanly.
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

  step "packd serve --config (configs/demo.yaml, serving the vlc-compressed stories260K)"
  sed -e "s|path: .*stories260K.gguf|path: $work/stories-vlc|" \
    -e "s|chat_template: stories-chat.jinja|chat_template: $PWD/configs/stories-chat.jinja|" \
    configs/demo.yaml > "$work/demo.yaml"
  grep -n -E 'path:|chat_template:' "$work/demo.yaml"
  build/cli/packd serve --config "$work/demo.yaml" 2> "$work/serve.log" &
  server=$!
  trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 100); do
    grep -q 'listening' "$work/serve.log" && break
    kill -0 $server 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
  done
  cat "$work/serve.log"
  export PACKD_API_KEY=packd-demo-key
  step "packd generate --model stories260K \"$prompt\" -n 60 --temperature 0   (over gRPC)"
  build/cli/packd generate --addr 127.0.0.1:50051 --model stories260K "$prompt" -n 60 --temperature 0 | tee "$work/served.txt"
  if cmp -s "$work/raw.txt" "$work/served.txt"; then
    echo "identical to \`packd run\` on the uncompressed model"
  else
    echo "MISMATCH between the served text and \`packd run\`" >&2
    exit 1
  fi
  step "packd chat --model stories260K   (one turn: the conversation rendered by its chat template)"
  echo "Once upon a time, a cat" | build/cli/packd chat --addr 127.0.0.1:50051 --model stories260K -n 40 --temperature 0 --show-prompt
  step "curl /v1/chat/completions   (the same turn over the OpenAI-compatible HTTP API)"
  curl -sS http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $PACKD_API_KEY" \
    -d '{"model": "stories260K", "messages": [{"role": "user", "content": "Once upon a time, a cat"}], "max_tokens": 40, "temperature": 0}'
  echo
  step "packd info   (GetServerInfo: memory by kind and density)"
  build/cli/packd info --addr 127.0.0.1:50051
  step "a few lines of http://127.0.0.1:9090/metrics"
  curl -s http://127.0.0.1:9090/metrics | grep -E '^packd_(requests_total|generated_tokens_total|model_weights_compression_ratio|device_memory_bytes|device_density_ratio)' || true
  step "stop the server (SIGTERM: drain, exit 0)"
  kill -TERM $server
  wait $server
  echo "packd serve exited with status $?"
  cat "$work/serve.log" | tail -3
else
  echo "(../shared/models/stories260K not found: skipping the real-weights and serving parts)"
fi
step "done"
