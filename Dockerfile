# packd container image: build with the same set-up script CI runs
# (scripts/setup.sh), then copy the binary and the shared libraries it loads
# (scripts/bundle-runtime.sh) onto NVIDIA's CUDA runtime image.
#
#   docker build -t packd:0.1.0 .
#   docker run --gpus all -p 50051:50051 -p 8000:8000 -p 9090:9090 \
#     -v /srv/models:/models:ro -v $PWD/packd.yaml:/etc/packd/packd.yaml:ro packd:0.1.0
#
# The config must listen on 0.0.0.0 (grpc.listen, http.listen, metrics.listen) to be
# reachable from outside the container. Models are never baked in: mount them.
#
# Not built on the development machines (they have no Docker engine); CI runs
# the same scripts on Debian 12, and tests/docker_image_test.py checks this
# file's structure and the runtime bundle.

# CUDA 13.0 (what packd is built and tested with). The images are Ubuntu;
# scripts/setup.sh installs its build packages from the distribution by name.
ARG CUDA_VERSION=13.0.0
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY . .
# Build packages only (no test tools), no -Werror (the image's compilers are
# newer than CI's), optimized; then the self-contained runtime tree.
RUN PACKD_SETUP_TEST_TOOLS=0 \
    PACKD_CMAKE_ARGS="-DPACKD_WERROR=OFF -DCMAKE_BUILD_TYPE=Release" \
    scripts/setup.sh /build \
 && scripts/bundle-runtime.sh /build/cli/packd /opt/packd \
 && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime
# A fixed non-root uid/gid (the Helm chart's securityContext uses 10001).
RUN groupadd --system --gid 10001 packd \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin packd \
 && mkdir -p /etc/packd /models
COPY --from=build /opt/packd /opt/packd
COPY configs/packd.example.yaml /etc/packd/packd.example.yaml
ENV PATH=/opt/packd/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/packd/lib
USER 10001:10001
# gRPC (Generate, Models, grpc.health.v1), the OpenAI-compatible HTTP API
# (when the config sets http.listen) and Prometheus /metrics.
EXPOSE 50051 8000 9090
# Through gRPC health: SERVING once the models are loaded, NOT_SERVING while
# draining. Loading a large model takes minutes, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10m --retries=3 \
  CMD ["packd", "health", "--addr", "127.0.0.1:50051", "--timeout", "4"]
ENTRYPOINT ["packd"]
CMD ["serve", "--config", "/etc/packd/packd.yaml"]
