#!/usr/bin/env python3
"""Checks the Dockerfile without a Docker engine (none runs on these machines).

What it can check here:
  * the Dockerfile's structure: a devel build stage that runs scripts/setup.sh
    (the script CI runs) and scripts/bundle-runtime.sh, a runtime stage on
    NVIDIA's CUDA runtime image, a non-root USER, the gRPC and metrics ports,
    a HEALTHCHECK through `packd health`, the serve entrypoint, and COPY
    sources that exist;
  * .dockerignore keeps build trees and .git out of the context;
  * the runtime bundle: scripts/bundle-runtime.sh on the real binary gives a
    tree whose binary resolves every non-system library from the bundle, and
    the HEALTHCHECK command line is accepted by that binary (exit 1 with no
    server, not a usage error).
What it cannot: pull the base images, run the build, start the container.

Environment (set by ctest): PACKD_BIN, PACKD_SOURCE_DIR.
"""
import os
import shlex
import subprocess
import sys
import tempfile

SRC = os.environ.get("PACKD_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PACKD_BIN", "")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def instructions(path):
    """(keyword, argument) pairs, continuation lines joined, comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def main():
    dockerfile = os.path.join(SRC, "Dockerfile")
    ins = instructions(dockerfile)
    froms = [a for k, a in ins if k == "FROM"]
    check(len(froms) == 2, f"two stages (build, runtime), found FROM {froms}")
    if len(froms) == 2:
        check(froms[0].startswith("nvidia/cuda:") and "-devel-" in froms[0] and froms[0].endswith(" AS build"),
              f"build stage on an NVIDIA CUDA devel image: {froms[0]}")
        check(froms[1].startswith("nvidia/cuda:") and "-runtime-" in froms[1],
              f"runtime stage on an NVIDIA CUDA runtime image: {froms[1]}")
    stage_of = []
    stage = -1
    for k, a in ins:
        if k == "FROM":
            stage += 1
        stage_of.append(stage)
    build_runs = " ".join(a for (k, a), s in zip(ins, stage_of) if k == "RUN" and s == 0)
    check("scripts/setup.sh" in build_runs, "the build stage runs scripts/setup.sh (what CI runs)")
    check("scripts/bundle-runtime.sh /build/cli/packd /opt/packd" in build_runs,
          "the build stage bundles the binary with scripts/bundle-runtime.sh")
    check("curl " not in build_runs and "wget " not in build_runs, "no downloads in build steps")
    runtime = [(k, a) for (k, a), s in zip(ins, stage_of) if s == 1]
    users = [a for k, a in runtime if k == "USER"]
    check(users and users[-1].split(":")[0] not in ("0", "root"), f"runs as non-root: USER {users}")
    check(users and users[-1].split(":")[0] == "10001", "uid 10001 (the Helm chart's runAsUser)")
    exposed = " ".join(a for k, a in runtime if k == "EXPOSE").split()
    check("50051" in exposed and "8000" in exposed and "9090" in exposed,
          f"exposes gRPC 50051, HTTP 8000 and metrics 9090: {exposed}")
    health = [a for k, a in runtime if k == "HEALTHCHECK"]
    check(len(health) == 1 and 'CMD ["packd", "health"' in health[0], f"HEALTHCHECK via packd health: {health}")
    entry = [a for k, a in runtime if k == "ENTRYPOINT"]
    cmd = [a for k, a in runtime if k == "CMD"]
    check(entry == ['["packd"]'], f"ENTRYPOINT packd: {entry}")
    check(cmd == ['["serve", "--config", "/etc/packd/packd.yaml"]'], f"CMD serve --config: {cmd}")
    for k, a in ins:
        if k == "COPY" and not a.startswith("--from="):
            srcs = a.split()[:-1]
            for s in srcs:
                check(s == "." or os.path.exists(os.path.join(SRC, s)), f"COPY source exists: {s}")
    ignore = open(os.path.join(SRC, ".dockerignore")).read().split()
    for pattern in (".git", "build", "build-*"):
        check(pattern in ignore, f".dockerignore excludes {pattern}")

    if not BIN or not os.access(BIN, os.X_OK):
        check(False, f"PACKD_BIN '{BIN}' is an executable")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "opt")
            r = subprocess.run(["bash", os.path.join(SRC, "scripts/bundle-runtime.sh"), BIN, out],
                               capture_output=True, text=True)
            check(r.returncode == 0, f"bundle-runtime.sh succeeds: {r.stderr.strip()}")
            bundled = os.path.join(out, "bin", os.path.basename(BIN))
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(out, "lib"))
            ldd = subprocess.run(["ldd", bundled], capture_output=True, text=True, env=env).stdout
            system = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "ld-linux",
                      "libresolv.so", "libutil.so", "libcuda", "libcublas", "linux-vdso")
            for line in ldd.splitlines():
                parts = line.split()
                if not parts or any(parts[0].startswith(s) for s in system):
                    continue
                if "=>" in parts:
                    target = parts[parts.index("=>") + 1]
                    check(target.startswith(os.path.join(out, "lib")),
                          f"{parts[0]} is loaded from the bundle, not {target}")
            check("not found" not in ldd, "every library resolves")
            # The HEALTHCHECK line, verbatim, with no server: exit 1 (not 2, a usage error).
            hc = health[0].split("CMD", 1)[1].strip() if health else '["packd"]'
            argv = [bundled] + [shlex.split(w)[0] for w in hc.strip("[]").split(", ")][1:]
            argv = [a.replace("127.0.0.1:50051", "127.0.0.1:1") for a in argv]
            r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
            check(r.returncode == 1, f"HEALTHCHECK command exits 1 with no server: {argv} -> "
                                     f"{r.returncode} {r.stderr.strip()}")
    if failures:
        print(f"docker_image_test: {len(failures)} check(s) failed")
        return 1
    print("docker_image_test: PASS (structure and runtime bundle; the image itself was not built: no Docker engine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
