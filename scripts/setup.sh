#!/usr/bin/env bash
# Installs whatever Debian packages packd needs that are missing (idempotent:
# nothing is downloaded when all are present), then configures and builds.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
# PACKD_CMAKE_ARGS (optional) adds configure options for a new build directory,
# e.g. "-DPACKD_WERROR=OFF" for a newer compiler (the Dockerfile does).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}

# Package names are Debian 12's. The Dockerfile runs this script on NVIDIA's
# Ubuntu 24.04 CUDA image with PACKD_SETUP_TEST_TOOLS=0 (build packages only);
# that build has not been run here (no Docker engine on these machines).
packages=(
  cmake ninja-build pkg-config clang libclang-rt-dev
  libabsl-dev nlohmann-json3-dev libzstd-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libyaml-cpp-dev prometheus-cpp-dev libicu-dev curl openssl
  libcpp-httplib-dev libssl-dev
)
# What the tests need besides: the Python gRPC client test, and the deployment
# tests (Helm chart rendering with Go text/template + sprig, promtool and a
# real Prometheus server).
if [ "${PACKD_SETUP_TEST_TOOLS:-1}" != 0 ]; then
  packages+=(
    python3-grpcio python3-protobuf python3-yaml
    golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev prometheus
    nodejs
  )
fi
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The OpenAI client test's npm packages (tests/openai_client), exactly as its
# package-lock.json pins them; install scripts are not run. npm comes with
# NodeSource's nodejs and is Debian's separate `npm` package otherwise (not
# installed here: it conflicts with NodeSource's); without it the test skips
# its Node.js part, saying so.
if [ "${PACKD_SETUP_TEST_TOOLS:-1}" != 0 ] && [ ! -d tests/openai_client/node_modules/openai ]; then
  if command -v npm >/dev/null; then
    (cd tests/openai_client && npm ci --ignore-scripts --no-audit --no-fund)
  else
    echo "setup: npm not found: tests/openai_client's packages are not installed" \
      "(apt-get install npm, or NodeSource's nodejs)"
  fi
fi

# clang++ so that -Wthread-safety and the libFuzzer targets are available.
if [ ! -f "$build_dir/build.ninja" ]; then
  # shellcheck disable=SC2086  # PACKD_CMAKE_ARGS is a list of words
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ ${PACKD_CMAKE_ARGS:-}
fi
cmake --build "$build_dir"
