# Shared by the shell interop tests that drive a live `packd serve`
# (python_client_test.sh, openai_client_test.sh); sourced, not run. The
# sourcing script sets `test_name` (its messages' prefix) first.
#
# Reads PACKD_BIN, PACKD_SHARED_DIR (holds models/stories260K/stories260K.gguf)
# and PACKD_SOURCE_DIR (default: the checkout this file is in) and sets
# packd_bin, src_dir, model (the stories260K GGUF), tmp (a scratch directory,
# removed at exit with a server still running killed) and server_pid (empty
# until the script starts the server, with its log in $tmp/server.log).

fail() {
  echo "$test_name: FAIL: $*" >&2
  exit 1
}

src_dir=${PACKD_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
packd_bin=${PACKD_BIN:?PACKD_BIN must name the packd binary}
shared_dir=${PACKD_SHARED_DIR:?PACKD_SHARED_DIR must name the shared data directory}
[ -x "$packd_bin" ] || fail "PACKD_BIN '$packd_bin' is not an executable"
[ -d "$shared_dir" ] || fail "PACKD_SHARED_DIR '$shared_dir' is not a directory"
model=$(cd "$shared_dir" && pwd)/models/stories260K/stories260K.gguf
[ -f "$model" ] || fail "model not found: $model"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/packd_${test_name}.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

show_log() {
  echo "--- packd serve log ---" >&2
  cat "$tmp/server.log" >&2 || true
  echo "--- end of log ---" >&2
}

# Graceful stop: SIGTERM, then exit status 0 within 15 s.
stop_server() {
  kill -TERM "$server_pid"
  local deadline=$((SECONDS + 15))
  while kill -0 "$server_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
  if kill -0 "$server_pid" 2>/dev/null; then
    show_log
    fail "packd serve did not exit within 15 s of SIGTERM"
  fi
  local rc=0
  wait "$server_pid" || rc=$?
  server_pid=
  if [ $rc -ne 0 ]; then
    show_log
    fail "packd serve exited with status $rc after SIGTERM (expected 0)"
  fi
  echo "$test_name: packd serve exited 0 after SIGTERM"
}
