#!/usr/bin/python3
"""Probes a live `packd serve` from outside, as an operator would, and prints
a table of what it saw (README "Reliability").

An independent client: Python stubs generated from proto/ by Debian's protoc
and grpc_python_plugin, the system's python3-grpcio. It starts its own
`packd serve` (stories260K on the CPU, max_batch 2) and runs, in turn:

  gauges      6 long streams (2 run, 4 queue); /metrics scraped during them
  labels      2,000 Generate calls naming models that do not exist (half
              without a key): /metrics size and series, server RSS
  deadline    a request whose deadline passes: status, server-side counter
  utf8        text that is not UTF-8, sent as raw protobuf bytes
  size        a 3 MB prompt: status and time to the answer
  bearer      "authorization: bearer KEY" (lower-case scheme)
  storm       60 streams cancelled mid-stream or while queued; then the
              gauges, KV use, and a request at capacity
  drain       SIGTERM with 1 stream running and 3 queued: the queued ones'
              status and time, the running one's, the exit status
  failed      a second server with a model that cannot load and
              `on_model_load_failure: continue`: health per model

Usage: bench/daemon_probe.py --packd build/cli/packd
           [--model ../shared/models/stories260K/stories260K.gguf]
Exit status 0 when every probe met its expectation, 1 otherwise.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "probe-key"


def sha256(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def gen_stubs(out):
    for proto in ("packd/v1/generation.proto", "packd/v1/models.proto"):
        subprocess.run(["/usr/bin/protoc", "-I", os.path.join(REPO, "proto"),
                        f"--python_out={out}", f"--grpc_python_out={out}",
                        "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                        proto], check=True)
    sys.path.insert(0, out)


class Server:
    def __init__(self, packd, tmp, models_yaml, extra=""):
        self.port, self.metrics_port = free_port(), free_port()
        self.config = os.path.join(tmp, f"packd-{self.port}.yaml")
        with open(self.config, "w") as f:
            f.write(f"""grpc:
  listen: "127.0.0.1:{self.port}"
metrics:
  listen: "127.0.0.1:{self.metrics_port}"
logging: {{level: warn}}
devices:
  - {{name: cpu, kind: cpu, memory_budget: 1GiB}}
models:
{models_yaml}
tenants:
  - name: probe
    api_key_sha256: [{sha256(KEY)}]
    allowed_models: ["*"]
queue: {{max_queued_per_instance: 64, max_wait: 30s}}
drain_timeout: 20s
{extra}
""")
        self.log = open(os.path.join(tmp, f"server-{self.port}.log"), "w")
        self.proc = subprocess.Popen([packd, "serve", "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"packd serve exited {self.proc.returncode}")
                time.sleep(0.1)
        raise RuntimeError("packd serve did not listen within 30 s")

    def metrics(self):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def value(self, prefix, text=None):
        for line in (text if text is not None else self.metrics()).splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packd", required=True)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(REPO), "shared", "models",
                                                    "stories260K", "stories260K.gguf"))
    args = ap.parse_args()
    import grpc  # noqa: E402 (the system's python3-grpcio)
    tmp = tempfile.mkdtemp(prefix="packd_probe.")
    gen_stubs(tmp)
    from packd.v1 import generation_pb2 as pb2, generation_pb2_grpc as pb2_grpc

    model = f"""  - name: stories
    path: {os.path.abspath(args.model)}
    device: cpu
    kv_cache: 16MiB
    max_batch: 2
    threads: 2"""
    rows = []
    ok_all = True

    def row(probe, result, ok):
        nonlocal ok_all
        ok_all &= ok
        rows.append((probe, result, "yes" if ok else "NO"))

    auth = (("authorization", f"Bearer {KEY}"),)

    def request(max_tokens, model="stories", text="Once upon a time"):
        r = pb2.GenerateRequest(model=model, text=text, max_tokens=max_tokens, ignore_eos=True,
                                stream=True)
        r.sampling.temperature = 0.0
        return r

    server = Server(args.packd, tmp, model)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb2_grpc.GenerationStub(channel)

    def code_of(call_fn):
        try:
            call_fn()
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details()

    # gauges: 6 clients, each reading its stream as it comes (as real
    # clients do); 2 run, 4 queue. 2,000 tokens per stream outlast the
    # sampling window even on an idle machine.
    calls = [stub.Generate(request(2000), metadata=auth, timeout=60) for _ in range(6)]
    codes = [None] * len(calls)

    def consume(k):
        codes[k] = code_of(lambda: list(calls[k]))[0]
    readers = [threading.Thread(target=consume, args=(k,)) for k in range(len(calls))]
    for t in readers:
        t.start()

    def load():
        text = server.metrics()
        return (server.value('packd_requests_running{model="stories"}', text),
                server.value('packd_requests_waiting{model="stories"}', text))
    t0 = time.time()
    while load() != (2.0, 4.0) and time.time() - t0 < 2:
        time.sleep(0.01)
    seen = set()
    t0 = time.time()
    while time.time() - t0 < 0.3:
        seen.add(load())
        time.sleep(0.03)
    for c in calls:
        c.cancel()
    for t in readers:
        t.join()
    time.sleep(0.3)
    after = load()
    ended = [c for c in codes if c != "CANCELLED"]
    row("gauges: 2 running + 4 queued, scraped for 0.3 s",
        f"(running, waiting) seen: {sorted(seen)}; 0.3 s after cancelling: {after}"
        + (f"; calls that ended before the cancel: {ended}" if ended else ""),
        seen == {(2.0, 4.0)} and after == (0.0, 0.0))

    # labels
    def unknown(i):
        md = auth if i % 2 == 0 else ()
        code_of(lambda: list(stub.Generate(request(1, model=f"no-such-model-{i}"), metadata=md,
                                          timeout=10)))
    for i in range(4):
        unknown(i)
    before, rss_before = server.metrics(), server.rss_kib()
    t0 = time.time()
    for i in range(4, 2004):
        unknown(i)
    took = time.time() - t0
    after_text, rss_after = server.metrics(), server.rss_kib()
    row("labels: 2,000 Generate naming unknown models",
        f"/metrics {len(before)} -> {len(after_text)} bytes, "
        f"{before.count(chr(10))} -> {after_text.count(chr(10))} lines; "
        f"RSS {rss_before // 1024} -> {rss_after // 1024} MiB; {took:.1f} s",
        before.count("\n") == after_text.count("\n") and "no-such-model" not in after_text)

    # deadline
    code, _ = code_of(lambda: list(stub.Generate(request(1500), metadata=auth, timeout=0.2)))
    time.sleep(0.2)
    counted = server.value('packd_requests_total{code="DEADLINE_EXCEEDED"')
    cancelled = server.value('packd_requests_total{code="CANCELLED"')
    row("deadline: 0.2 s on a 1,500-token stream", f"client {code}; server counted "
        f"DEADLINE_EXCEEDED {counted}, CANCELLED before {cancelled}",
        code == "DEADLINE_EXCEEDED" and counted == 1)

    # utf8: GenerateRequest{model: "stories", text: "Once \xff upon"} as raw bytes
    raw = b"\x0a\x07stories" + b"\x12\x0bOnce \xff upon" + b"\x28\x05"
    raw_generate = channel.unary_stream("/packd.v1.Generation/Generate",
                                        request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
    code, details = code_of(lambda: list(raw_generate(raw, metadata=auth, timeout=10)))
    row("utf8: text with a 0xFF byte at offset 5", f"{code}: {details}",
        code == "INVALID_ARGUMENT" and "byte 5" in details)

    # size
    t0 = time.time()
    code, details = code_of(lambda: list(stub.Generate(request(5, text="a" * 3_000_000),
                                                       metadata=auth, timeout=30)))
    row("size: a 3 MB prompt", f"{code} in {time.time() - t0:.3f} s: {details[:90]}...",
        code == "OUT_OF_RANGE")

    # bearer
    code, _ = code_of(lambda: list(stub.Generate(request(3), timeout=10,
                                                 metadata=(("authorization", f"bearer {KEY}"),))))
    row("bearer: lower-case scheme", code, code == "OK")

    # storm
    streams = [stub.Generate(request(1500), metadata=auth, timeout=60) for _ in range(60)]
    mid = 0
    for i, s in enumerate(streams):
        if i % 3 == 0:
            try:
                next(s)
                mid += 1
            except Exception:
                pass
    for s in streams:
        s.cancel()
    time.sleep(0.3)
    text = server.metrics()
    gauges = (server.value('packd_requests_running{model="stories"}', text),
              server.value('packd_requests_waiting{model="stories"}', text),
              server.value('packd_kv_cache_used_bytes{model="stories"', text))
    t0 = time.time()
    results = [None, None]

    def one(k):
        results[k] = list(stub.Generate(request(10), metadata=auth, timeout=30))[-1]
    threads = [threading.Thread(target=one, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue_s = max(r.timings.queue_seconds for r in results)
    row("storm: 60 cancels (20 after a token)",
        f"{mid} cancelled mid-stream; then running/waiting/KV bytes {gauges}; "
        f"2 requests at capacity queued {queue_s * 1000:.1f} ms, took {time.time() - t0:.3f} s",
        gauges == (0.0, 0.0, 0.0) and mid >= 15 and queue_s < 0.1)

    # drain
    running = stub.Generate(request(1500), metadata=auth, timeout=60)
    next(running)
    out = {}
    t_term = None  # when SIGTERM was sent

    def queued(k):
        code, details = code_of(lambda: list(stub.Generate(request(20), metadata=auth,
                                                           timeout=60)))
        out[k] = (code, details, time.time() - t_term)
    qs = [threading.Thread(target=queued, args=(k,)) for k in range(3)]
    running_stream = stub.Generate(request(1500), metadata=auth, timeout=60)
    next(running_stream)
    for t in qs:
        t.start()
    time.sleep(0.3)
    t_term = time.time()
    server.proc.send_signal(signal.SIGTERM)
    for t in qs:
        t.join()
    running_code, _ = code_of(lambda: list(running))
    other_code, _ = code_of(lambda: list(running_stream))
    rc = server.proc.wait(timeout=60)
    codes = sorted({v[0] for v in out.values()})
    slowest = max(v[2] for v in out.values())
    row("drain: SIGTERM, 2 running + 3 queued",
        f"queued: {codes} within {slowest:.3f} s; running: {running_code}, {other_code}; "
        f"exit status {rc}",
        codes == ["UNAVAILABLE"] and slowest < 1 and running_code == "OK" and
        other_code == "OK" and rc == 0)
    server.stop()

    # failed
    broken = os.path.join(tmp, "broken.gguf")
    with open(broken, "w") as f:
        f.write("not a gguf file")
    server = Server(args.packd, tmp, model + f"""
  - name: broken
    path: {broken}
    device: cpu""", extra="on_model_load_failure: continue")
    # grpc.health.v1.Health/Check as raw protobuf: the request is field 1
    # (service), the response field 1 (a ServingStatus varint).
    check = grpc.insecure_channel(f"127.0.0.1:{server.port}").unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
        response_deserializer=lambda b: b)

    def status(service):
        reply = check(b"\x0a" + bytes([len(service)]) + service.encode(), timeout=5)
        value = reply[1] if len(reply) == 2 and reply[0] == 0x08 else 0
        return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING"}.get(value, str(value))
    stub = pb2_grpc.GenerationStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    code, _ = code_of(lambda: list(stub.Generate(request(3, model="broken"), metadata=auth,
                                                 timeout=10)))
    states = (status("packd.model.stories"), status("packd.model.broken"))
    failed = server.value('packd_model_failed{model="broken"}')
    row("failed: a model that cannot load, on_model_load_failure: continue",
        f"health stories/broken: {states}; its requests: {code}; packd_model_failed {failed}",
        states == ("SERVING", "NOT_SERVING") and code == "UNAVAILABLE" and failed == 1)
    server.stop()

    width = max(len(r[0]) for r in rows)
    print(f"{'probe':<{width}}  ok   result")
    for probe, result, ok in rows:
        print(f"{probe:<{width}}  {ok:<4} {result}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
