#!/usr/bin/python3
"""Tests of packd's monitoring: alert rules, Grafana dashboard, real Prometheus.

    monitoring_test.py rules       promtool check/test of deploy/prometheus/;
                                   every metric the rules use is documented
                                   in server/metrics.h, with its labels
    monitoring_test.py dashboard   the dashboard's structure; every metric it
                                   shows is documented in server/metrics.h and
                                   every documented one is shown; every metric
                                   the dashboard and the rules query is
                                   exported by a live `packd serve`
    monitoring_test.py prometheus  a real Prometheus scrapes a live packd and
                                   evaluates rules.yml and the dashboard

Runs with the system Python 3 (/usr/bin/python3): the standard library,
PyYAML (python3-yaml) and, for the live cases, Debian's python3-grpcio and
python3-protobuf with stubs that protoc + grpc_python_plugin generate into a
temporary directory (as tests/python_client_test.sh does).

Environment (set by ctest, deploy/CMakeLists.txt): PACKD_BIN (the packd
binary; live cases), PACKD_SHARED_DIR (holds models/stories260K; live cases),
PACKD_SOURCE_DIR (the checkout; default: this file's parent directory).

Exit status: 0 pass, 1 fail (with the reasons), 2 usage, 77 skipped because
promtool or prometheus is not installed (scripts/setup.sh installs Debian's
`prometheus` package, which has both).
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

SKIP = 77
MODEL = "stories260K"
# The admin tenant's key in the test config (only its SHA-256 is written).
API_KEY = "packd-monitoring-test-key"
# A LoadModel that must fail, so that packd_model_load_failures_total exists.
BAD_MODEL = "no-such-model"
# The on-demand fleet of the test config: three copies of MODEL on the device
# FLEET_DEVICE, whose budget holds one of them, and a host cache that holds
# one model's stored weights (FLEET_MODEL_BYTES on the device, about 1.1 MiB
# stored). Requests for a, b, c, b (Packd.fleet_traffic) load a, b and c from
# disk, evict a for b and b for c, drop a from the host cache to make room for
# b, and wake b from the host cache (evicting c): every fleet series exists.
FLEET_DEVICE = "fleet"
FLEET_MODELS = ["fleet-a", "fleet-b", "fleet-c"]
FLEET_BUDGET = "4MiB"  # one fleet model uses ~2.9 MiB (1 MiB KV cache)
HOST_CACHE = "1500KiB"
HOST_CACHE_BYTES = 1500 * 1024
# What a scrape of a working packd must contain besides what the dashboard and
# the rules use.
MEMORY_KINDS = {"weights", "kv_cache", "workspace"}
# Dashboard title keywords that must each name some panel or row.
REQUIRED_TITLES = ["density", "compression ratio", "device memory", "instances", "ttft",
                   "inter-token", "end-to-end", "queue time", "throughput", "tokens/s",
                   "requests/s", "batch", "queue", "kv cache", "error", "load failures",
                   "model fleet", "resident", "loads/s", "unloads/s", "wake", "host cache"]
# Series server/metrics.h documents that the dashboard need not show, and why.
NOT_ON_DASHBOARD = {
    # Exists only while a configured model has failed to load at start
    # (on_model_load_failure: continue), which the live cases do not set up,
    # so a panel of it would have no data there; not on the dashboard yet.
    "packd_model_failed",
}
REQUIRED_UNITS = {"bytes", "s", "percentunit", "reqps"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC_RE = re.compile(r"\bpackd_[A-Za-z0-9_]+")
# A series selector's matchers: metric{label op "value", ...}.
SELECTOR_RE = re.compile(r"\b(packd_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
# Label lists of by/without/on/ignoring/group_left/group_right clauses.
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# Labels every scraped series has (Prometheus adds job and instance), and a
# histogram's bucket label.
SCRAPE_LABELS = {"job", "instance"}
# server/metrics.h's header comment lists the series:
#   //   packd_name{label,label}    counter|gauge|histogram (notes; label: v1, v2)
# the notes may go on over the following comment lines.
SERIES_DOC_RE = re.compile(
    r"^//\s+(packd_[a-z0-9_]+)(?:\{([a-z0-9_,]*)\})?\s+(counter|gauge|histogram)\b(.*)$")
RECORDED_RE = re.compile(r"\bpackd:[A-Za-z0-9_:]+")
SEVERITIES = {"critical", "warning", "info"}
PROCESS_STOP_S = 15
PROMETHEUS_WAIT_S = 60


class Failure(Exception):
    """A check failed; the message says which and why."""


class Skip(Exception):
    """A tool the case needs is not installed."""


def log(msg):
    print(f"monitoring_test: {msg}", flush=True)


def check(cond, what):
    if not cond:
        raise Failure(f"not true: {what}")
    log(f"ok: {what}")


# --------------------------------------------------------------------------
# Paths and tools


def source_dir():
    d = os.environ.get("PACKD_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    return os.path.abspath(d)


def repo_path(*parts):
    return os.path.join(source_dir(), *parts)


def tool(name):
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not os.access(path, os.X_OK):
        raise Skip(f"{name} is not installed (scripts/setup.sh installs Debian's prometheus package)")
    return path


def packd_bin():
    path = os.environ.get("PACKD_BIN", "")
    if not path or not os.access(path, os.X_OK):
        raise Failure(f"PACKD_BIN '{path}' is not an executable (ctest sets it)")
    return path


def model_path():
    shared = os.environ.get("PACKD_SHARED_DIR", "")
    if not shared or not os.path.isdir(shared):
        raise Failure(f"PACKD_SHARED_DIR '{shared}' is not a directory (ctest sets it)")
    path = os.path.join(os.path.abspath(shared), "models", MODEL, f"{MODEL}.gguf")
    if not os.path.isfile(path):
        raise Failure(f"model not found: {path}")
    return path


def run(cmd, timeout=120, **kwargs):
    """Runs cmd; returns the CompletedProcess (stdout and stderr as text)."""
    log("$ " + " ".join(cmd))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{cmd[0]} did not finish within {timeout} s") from e


def free_port():
    """A port free now; another process may take it before we bind it (callers retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


def stop_process(proc, name, expect_zero):
    """SIGTERM, wait PROCESS_STOP_S, then SIGKILL. Raises Failure when
    expect_zero and the process did not exit 0 after SIGTERM."""
    if proc is None or proc.poll() is not None:
        if proc is not None and expect_zero and proc.returncode != 0:
            raise Failure(f"{name} had already exited with status {proc.returncode}")
        return
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=PROCESS_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure(f"{name} did not exit within {PROCESS_STOP_S} s of SIGTERM; killed")
    if expect_zero:
        check(rc == 0, f"{name} exited 0 after SIGTERM (got {rc})")


def kill_process(proc):
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------
# Reading the dashboard and the rules


def load_dashboard():
    path = repo_path("deploy", "grafana", "packd.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise Failure(f"{path}: {e}") from e


def load_rules():
    path = repo_path("deploy", "prometheus", "rules.yml")
    with open(path, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    if not isinstance(rules, dict) or not isinstance(rules.get("groups"), list):
        raise Failure(f"{path}: no groups: list")
    return rules


def all_panels(dashboard):
    """Every panel, rows' nested (collapsed) panels included."""
    out = []
    for p in dashboard.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def variable_query(v):
    """A dashboard variable's query text (Grafana writes a string or {query: ...})."""
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def documented_series():
    """The series server/metrics.h's header comment lists:
    {name: {"type": ..., "labels": set, "values": {label: set of values}}},
    where "values" holds the label values a note enumerates ("kind: weights,
    kv_cache, ..."; "from: disk, host")."""
    path = repo_path("server", "metrics.h")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise Failure(f"{path}: {e}") from e
    try:
        start = lines.index("// Series (labels in braces):") + 1
    except ValueError as e:
        raise Failure(f"{path}: no '// Series (labels in braces):' comment") from e
    series, notes, current = {}, {}, None
    for line in lines[start:]:
        if not line.startswith("//") or line.strip() == "//":
            break
        m = SERIES_DOC_RE.match(line)
        if m:
            current = m.group(1)
            labels = set(filter(None, (m.group(2) or "").split(",")))
            series[current] = {"type": m.group(3), "labels": labels, "values": {}}
            notes[current] = m.group(4).strip()
        elif current is not None:
            notes[current] += " " + line[2:].strip()
    for name, note in notes.items():
        for label, values in re.findall(r"\b([a-z_]+):\s*([a-z_]+(?:,\s*[a-z_]+)*)", note):
            if label in series[name]["labels"]:
                series[name]["values"][label] = set(re.split(r",\s*", values))
    if len(series) < 20:
        raise Failure(f"{path}: found only {len(series)} series in the header comment "
                      f"(its format changed?): {sorted(series)}")
    return series


def documented_base(name, series):
    """(documented series, suffix) that the metric `name` in an expression is:
    the series itself, or a histogram's _bucket/_sum/_count; (None, None)
    when metrics.h does not list it."""
    if name in series:
        return name, ""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and series.get(base, {}).get("type") == "histogram":
            return base, suffix
    return None, None


def check_documented(exprs, series):
    """Every packd_ metric in `exprs` is documented in server/metrics.h with
    the labels and label values the expression uses; histograms are queried
    through _bucket/_sum/_count only; histogram_quantile groups by le and the
    histogram's labels."""
    for where, expr in exprs:
        names = set(METRIC_RE.findall(expr))
        labels_in_expr = set(SCRAPE_LABELS)
        for name in sorted(names):
            base, suffix = documented_base(name, series)
            if base is None:
                raise Failure(f"{where}: {name} is not documented in server/metrics.h's list of "
                              f"series (expression {expr!r})")
            doc = series[base]
            if doc["type"] == "histogram" and not suffix:
                raise Failure(f"{where}: {name} is a histogram: query {name}_bucket, _sum or _count")
            labels_in_expr |= doc["labels"] | ({"le"} if suffix == "_bucket" else set())
        for name, matchers in SELECTOR_RE.findall(expr):
            base, suffix = documented_base(name, series)
            doc = series[base]
            allowed = doc["labels"] | SCRAPE_LABELS | ({"le"} if suffix == "_bucket" else set())
            for label, op, value in MATCHER_RE.findall(matchers):
                if label not in allowed:
                    raise Failure(f"{where}: {name} has no label {label} (server/metrics.h: "
                                  f"{sorted(doc['labels'])}): {expr!r}")
                known = doc["values"].get(label)
                if known is None or "$" in value:
                    continue
                values = value.split("|") if op in ("=~", "!~") else [value]
                unknown = [v for v in values if v not in known]
                if unknown:
                    raise Failure(f"{where}: {name}{{{label}{op}\"{value}\"}}: {unknown} not among "
                                  f"the values server/metrics.h gives for {label}: {sorted(known)}")
        if names:
            for group in GROUPING_RE.findall(expr):
                for label in filter(None, (x.strip() for x in group.split(","))):
                    if label not in labels_in_expr:
                        raise Failure(f"{where}: groups by {label}, which none of its metrics "
                                      f"has (server/metrics.h): {expr!r}")
        for m in re.finditer(r"histogram_quantile\([^,]+,\s*sum by \(([^)]*)\)\s*\(rate\(("
                             r"packd_[a-z0-9_]+)_bucket", expr):
            base, _ = documented_base(m.group(2) + "_bucket", series)
            want = ["le"] + sorted(series[base]["labels"])
            got = [x.strip() for x in m.group(1).split(",")]
            if got[:1] != ["le"] or sorted(got[1:]) != want[1:]:
                raise Failure(f"{where}: histogram_quantile of {base} must sum by "
                              f"({', '.join(want)}), its labels: {expr!r}")
        if "histogram_quantile" in expr and "sum by (" not in expr:
            raise Failure(f"{where}: histogram_quantile without sum by (le, ...): {expr!r}")
    log(f"ok: all {len(exprs)} expressions use metrics, labels and label values that "
        f"server/metrics.h documents")


def template_metric(query):
    """The metric of a label_values(metric, label) variable query, or None."""
    m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*(\w+)\s*\)\s*", query)
    return (m.group(1), m.group(2)) if m else None


def dashboard_exprs(dashboard):
    """(where, PromQL) of every panel target and variable query."""
    exprs = []
    for p in all_panels(dashboard):
        for t in p.get("targets", []):
            if "expr" in t:
                exprs.append((f"panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = variable_query(v)
        lv = template_metric(q)
        exprs.append((f"variable ${v.get('name')}", lv[0] if lv else q))
    return exprs


def rules_exprs(rules):
    """(where, PromQL) of every rule in rules.yml."""
    return [(f"rule {r.get('alert') or r.get('record')}", str(r.get("expr", "")))
            for g in rules["groups"] for r in g.get("rules", [])]


def concrete(expr, rate_interval="5m"):
    """A dashboard expression with Grafana's variables replaced for Prometheus."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", "1h")
            .replace("$model", ".*").replace("$device", ".*"))


# --------------------------------------------------------------------------
# Case `rules`


def render_prometheus_config(target, scrape_interval, out_path):
    """deploy/prometheus/prometheus.yml with the target, the intervals and an
    absolute rule_files path replaced; written to out_path."""
    path = repo_path("deploy", "prometheus", "prometheus.yml")
    with open(path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    # Nothing but the scrape of packd: no remote write, no alertmanager.
    extra = set(cfg) - {"global", "rule_files", "scrape_configs"}
    if extra:
        raise Failure(f"{path}: unexpected top-level keys {sorted(extra)} (the test must not reach the network)")
    jobs = cfg.get("scrape_configs") or []
    if [j.get("job_name") for j in jobs] != ["packd"]:
        raise Failure(f"{path}: expected exactly one scrape job named packd, got "
                      f"{[j.get('job_name') for j in jobs]}")
    if cfg.get("rule_files") != ["rules.yml"]:
        raise Failure(f"{path}: rule_files should be [rules.yml], got {cfg.get('rule_files')}")
    cfg["global"]["scrape_interval"] = scrape_interval
    cfg["global"]["evaluation_interval"] = scrape_interval
    cfg["rule_files"] = [repo_path("deploy", "prometheus", "rules.yml")]
    jobs[0]["static_configs"] = [{"targets": [target]}]
    with open(out_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)


def check_rules_structure(rules):
    """Severity and annotations on every alert; every alert has a firing and a
    quiet case in rules_test.yml; every recorded series used is recorded."""
    alerts = []
    recorded = set()
    for g in rules["groups"]:
        for r in g.get("rules", []):
            if "record" in r:
                recorded.add(r["record"])
                continue
            name = r.get("alert")
            alerts.append(name)
            labels = r.get("labels") or {}
            ann = r.get("annotations") or {}
            check(labels.get("severity") in SEVERITIES,
                  f"alert {name} has a severity label in {sorted(SEVERITIES)} (got {labels.get('severity')})")
            check(ann.get("summary") and ann.get("description"),
                  f"alert {name} has summary and description annotations")
            check("{{ $labels." in ann["summary"] + ann["description"] or
                  name == "PackdAbsent",  # absent() has no target labels to name
                  f"alert {name}'s annotations name the labels of what it is about")
    check(len(alerts) == len(set(alerts)), "alert names are unique")
    for where, expr in rules_exprs(rules):
        for name in RECORDED_RE.findall(expr):
            check(name in recorded, f"{where}: recorded series {name} is recorded by a rule")

    test_path = repo_path("deploy", "prometheus", "rules_test.yml")
    with open(test_path, encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    fires, quiet = set(), set()
    for case in tests.get("tests", []):
        for t in case.get("alert_rule_test", []) or []:
            (fires if t.get("exp_alerts") else quiet).add(t.get("alertname"))
    for name in alerts:
        check(name in fires, f"rules_test.yml has a series set that fires {name}")
        check(name in quiet, f"rules_test.yml has a series set that does not fire {name}")


def case_rules():
    check_documented(rules_exprs(load_rules()), documented_series())
    promtool = tool("promtool")
    prom_dir = repo_path("deploy", "prometheus")
    for cmd in ([promtool, "check", "rules", os.path.join(prom_dir, "rules.yml")],
                [promtool, "test", "rules", os.path.join(prom_dir, "rules_test.yml")]):
        r = run(cmd, cwd=prom_dir)
        sys.stdout.write(r.stdout + r.stderr)
        check(r.returncode == 0, f"{' '.join(cmd[1:3])} passes (status {r.returncode})")
    check_rules_structure(load_rules())
    with tempfile.TemporaryDirectory(prefix="packd_rules_") as tmp:
        cfg = os.path.join(tmp, "prometheus.yml")
        render_prometheus_config("127.0.0.1:9090", "15s", cfg)
        r = run([promtool, "check", "config", cfg])
        sys.stdout.write(r.stdout + r.stderr)
        check(r.returncode == 0, f"promtool check config of the rendered prometheus.yml passes (status {r.returncode})")


# --------------------------------------------------------------------------
# A live packd


class Packd:
    """`packd serve` on free localhost ports with the demo model and an admin
    tenant, in a temporary directory. Use as a context manager; stop() checks
    a clean exit, __exit__ kills whatever is left."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.proc = None
        self.port = self.metrics_port = 0
        self.log_path = os.path.join(tmp, "packd.log")
        self.stubs = None

    def __enter__(self):
        model = model_path()
        binary = packd_bin()
        config = os.path.join(self.tmp, "packd.yaml")
        key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
        # keep_alive 0: never unloaded when idle, so that only the requests
        # of fleet_traffic move them.
        fleet = "".join(f"""\
  - name: {name}
    path: {json.dumps(model)}
    device: {FLEET_DEVICE}
    kv_cache: 1MiB
    max_batch: 4
    load: on_demand
    keep_alive: 0
""" for name in FLEET_MODELS)
        with open(config, "w", encoding="utf-8") as f:
            f.write(f"""\
grpc:
  listen: "127.0.0.1:0"
metrics:
  listen: "127.0.0.1:0"
logging:
  format: text
  level: info
devices:
  - name: cpu
    kind: cpu
    memory_budget: 1GiB
  - name: {FLEET_DEVICE}
    kind: cpu
    memory_budget: {FLEET_BUDGET}
models:
  - name: {MODEL}
    path: {json.dumps(model)}
    device: cpu
    instances: 1
    kv_cache: 16MiB
    max_batch: 16
    max_batch_tokens: 256
{fleet}host_cache: {HOST_CACHE}
tenants:
  - name: monitoring
    api_key_sha256:
      - {key_hash}
    admin: true
    allowed_models: ["*"]
drain_timeout: 5s
""")
        self.log_file = open(self.log_path, "w+", encoding="utf-8")
        self.proc = subprocess.Popen([binary, "serve", "--config", config],
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        pattern = re.compile(r"listening on port (\d+), metrics on port (\d+)")
        while time.monotonic() < deadline:
            m = pattern.search(self.log())
            if m:
                self.port, self.metrics_port = int(m.group(1)), int(m.group(2))
                log(f"packd serve (pid {self.proc.pid}): gRPC 127.0.0.1:{self.port}, "
                    f"metrics 127.0.0.1:{self.metrics_port}")
                return self
            if self.proc.poll() is not None:
                text = self.log()
                self.log_file.close()
                raise Failure(f"packd serve exited with status {self.proc.returncode} before "
                              f"listening:\n{text}")
            time.sleep(0.1)
        # __exit__ does not run when __enter__ raises: stop it here.
        text = self.log()
        kill_process(self.proc)
        self.log_file.close()
        raise Failure(f"packd serve did not report its ports within 30 s:\n{text}")

    def __exit__(self, exc_type, *exc):
        kill_process(self.proc)
        self.log_file.close()
        if exc_type is not None:
            print(f"--- packd serve log ---\n{self.log()[-8000:]}--- end of log ---", flush=True)

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_addr(self):
        return f"127.0.0.1:{self.metrics_port}"

    def scrape(self):
        return http_get(f"http://{self.metrics_addr}/metrics")

    def generate(self, key=API_KEY, expect_ok=True, model=MODEL):
        env = dict(os.environ, PACKD_API_KEY=key)
        r = run([packd_bin(), "generate", "--addr", self.addr, "--model", model,
                 "Once upon a time", "-n", "16", "--temperature", "0", "--timeout", "60"],
                timeout=90, env=env)
        if expect_ok:
            check(r.returncode == 0, f"packd generate succeeded (status {r.returncode}: {r.stderr.strip()})")
        else:
            check(r.returncode != 0, f"packd generate with a wrong key failed ({r.stderr.strip()})")

    def fleet_traffic(self):
        """Requests for fleet-a, b, c, b, one at a time (see FLEET_MODELS):
        each on_demand model loads on its request, evicting the one before it
        (FLEET_DEVICE holds one); the host cache keeps the last evicted one,
        so b's second request wakes it from there."""
        a, b, c = FLEET_MODELS
        for name in (a, b, c, b):
            self.generate(model=name)

    def fail_a_load(self):
        """LoadModel of a path that does not exist, through Python gRPC stubs;
        returns the status code name."""
        if self.stubs is None:
            self.stubs = os.path.join(self.tmp, "stubs")
            os.makedirs(self.stubs)
            r = run(["/usr/bin/protoc", "-I", repo_path("proto"), f"--python_out={self.stubs}",
                     f"--grpc_python_out={self.stubs}",
                     "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                     "packd/v1/models.proto"])
            check(r.returncode == 0, f"protoc generated the Python stubs of models.proto ({r.stderr.strip()})")
            sys.path.insert(0, self.stubs)
        try:
            import grpc
        except ImportError as e:
            raise Failure("/usr/bin/python3 cannot import grpc (apt-get install python3-grpcio "
                          "python3-protobuf)") from e
        from packd.v1 import models_pb2, models_pb2_grpc
        missing = os.path.join(self.tmp, "does-not-exist.gguf")
        with grpc.insecure_channel(self.addr) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = models_pb2_grpc.ModelsStub(channel)
            try:
                stub.LoadModel(models_pb2.LoadModelRequest(name=BAD_MODEL, path=missing),
                               metadata=(("authorization", f"Bearer {API_KEY}"),), timeout=60)
            except grpc.RpcError as e:
                code = e.code().name
                check(code not in ("UNAUTHENTICATED", "PERMISSION_DENIED", "UNAVAILABLE"),
                      f"LoadModel of a missing file failed as a load failure ({code}: {e.details()})")
                return code
        raise Failure(f"LoadModel of {missing} succeeded")

    def stop(self):
        stop_process(self.proc, "packd serve", expect_zero=True)


def parse_exposition(text):
    """{family: type} from # TYPE lines, and the set of sample names."""
    families, samples = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return families, samples


def check_metrics_exported(exprs, families, samples):
    for where, expr in exprs:
        names = sorted(set(METRIC_RE.findall(expr)))
        if not names and where.startswith("panel"):
            raise Failure(f"{where}: no packd_ metric in {expr!r}")
        for name in names:
            if name in families:
                ok = families[name] != "histogram"  # a histogram has no bare series
            else:
                base = next((name[:-len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
                ok = (base in families and families[base] == "histogram") or name in samples
            if not ok:
                raise Failure(f"{where}: {name} is not exported by packd's /metrics "
                              f"(expression {expr!r})")
    log(f"ok: all {len(exprs)} expressions name only metrics packd exports")


def check_fleet_scrape(text):
    """The series fleet_traffic must leave in a scrape (exposition text:
    labels sorted by name)."""
    a, b, c = FLEET_MODELS
    for series in [f'packd_model_loads_total{{from="disk",model="{MODEL}"}} 1',
                   f'packd_model_loads_total{{from="disk",model="{a}"}} 1',
                   f'packd_model_loads_total{{from="disk",model="{b}"}} 1',
                   f'packd_model_loads_total{{from="disk",model="{c}"}} 1',
                   f'packd_model_loads_total{{from="host",model="{b}"}} 1',
                   f'packd_model_unloads_total{{model="{a}",reason="evicted"}} 1',
                   f'packd_model_unloads_total{{model="{b}",reason="evicted"}} 1',
                   f'packd_model_unloads_total{{model="{c}",reason="evicted"}} 1',
                   f'packd_host_cache_drops_total{{model="{a}"}} 1',
                   f'packd_model_resident{{model="{MODEL}"}} 1',
                   f'packd_model_resident{{model="{a}"}} 0',
                   f'packd_model_resident{{model="{b}"}} 1',
                   f'packd_model_resident{{model="{c}"}} 0',
                   f'packd_device_resident_models{{device="{FLEET_DEVICE}"}} 1',
                   'packd_device_resident_models{device="cpu"} 1',
                   f"packd_host_cache_budget_bytes {HOST_CACHE_BYTES}",
                   'packd_model_load_seconds_count{from="disk"} 4',
                   'packd_model_load_seconds_count{from="host"} 1']:
        check(re.search(rf"^{re.escape(series)}$", text, re.M),
              f"after the fleet's requests, the scrape has {series}")
    used = re.search(r"^packd_host_cache_used_bytes (\S+)$", text, re.M)
    check(used and 0 < float(used.group(1)) <= HOST_CACHE_BYTES,
          f"packd_host_cache_used_bytes is above 0 and within the budget "
          f"({used.group(1) if used else None})")


# --------------------------------------------------------------------------
# Case `dashboard`


def check_dashboard_structure(d, series):
    """`series`: documented_series()."""
    check(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 36,
          f"schemaVersion >= 36 (got {d.get('schemaVersion')})")
    check(d.get("title") and d.get("uid"), "the dashboard has a title and a uid")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
          "variable $datasource chooses a Prometheus data source")
    for name, label in (("model", "model"), ("device", "device")):
        v = variables.get(name, {})
        q = variable_query(v)
        lv = template_metric(q)
        check(v.get("type") == "query" and lv and lv[1] == label,
              f"variable ${name} is label_values(packd_..., {label}) (got {q!r})")
        check((v.get("datasource") or {}).get("uid") == "${datasource}",
              f"variable ${name} queries ${{datasource}}")

    panels = all_panels(d)
    ids = [p.get("id") for p in panels]
    check(all(isinstance(i, int) for i in ids) and len(ids) == len(set(ids)),
          f"{len(ids)} panels with unique integer ids")
    boxes = []
    units = set()
    for p in panels:
        where = f"panel {p.get('id')} '{p.get('title')}'"
        if not p.get("title"):
            raise Failure(f"{where}: no title")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
            raise Failure(f"{where}: gridPos {g} is not h/w/x/y within 24 columns")
        boxes.append((where, g))
        if p.get("type") == "row":
            continue
        if not p.get("description"):
            raise Failure(f"{where}: no description")
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            raise Failure(f"{where}: datasource is {p.get('datasource')}, not ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            raise Failure(f"{where}: no targets")
        for t in targets:
            if (t.get("datasource") or {}).get("uid") != "${datasource}" or not t.get("expr") \
                    or not t.get("refId"):
                raise Failure(f"{where}: target {t} lacks expr, refId or datasource ${{datasource}}")
        unit = (p.get("fieldConfig") or {}).get("defaults", {}).get("unit")
        if not unit:
            raise Failure(f"{where}: no unit")
        units.add(unit)
        exprs = [t["expr"] for t in targets]
        metrics = {m for e in exprs for m in METRIC_RE.findall(e)}
        if any("_seconds_bucket" in e for e in exprs) and unit != "s":
            raise Failure(f"{where}: a latency panel must have unit s, has {unit}")
        if metrics and all(m.endswith("_bytes") for m in metrics) and unit != "bytes":
            raise Failure(f"{where}: a panel of byte counts must have unit bytes, has {unit}")
        if metrics and all(m.endswith("_ratio") for m in metrics if "kv_cache" in m) and \
                "packd_kv_cache_usage_ratio" in metrics and unit != "percentunit":
            raise Failure(f"{where}: a KV usage panel must have unit percentunit, has {unit}")
        for e in exprs:
            if "rate(" in e and "[$__rate_interval]" not in e:
                raise Failure(f"{where}: rate() must use [$__rate_interval]: {e}")
            # Filtered by $model or $device where a metric has such a label
            # (not packd_build_info, packd_model_load_seconds, the host cache).
            filterable = {m for m in METRIC_RE.findall(e)
                          if {"model", "device"} & series.get(documented_base(m, series)[0] or "",
                                                               {}).get("labels", set())}
            if filterable and "$model" not in e and "$device" not in e:
                raise Failure(f"{where}: expression filters neither $model nor $device: {e}")
    check(REQUIRED_UNITS <= units, f"units {sorted(REQUIRED_UNITS)} are all used (got {sorted(units)})")
    for i, (wa, a) in enumerate(boxes):
        for wb, b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and
                    a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                raise Failure(f"{wa} and {wb} overlap ({a}, {b})")
    log("ok: no two panels overlap")
    titles = " | ".join(p["title"].lower() for p in panels)
    for kw in REQUIRED_TITLES:
        check(kw in titles, f"a panel or row title names {kw!r}")
    exprs = [e for _, e in dashboard_exprs(d)]
    for name in sorted(set(series) - NOT_ON_DASHBOARD):
        shown = any(re.search(rf"\b{name}(_bucket|_sum|_count)?\b", e) for e in exprs)
        if not shown:
            raise Failure(f"server/metrics.h documents {name} but no dashboard panel shows it")
    log(f"ok: all {len(set(series) - NOT_ON_DASHBOARD)} series server/metrics.h documents "
        f"are on the dashboard (not: {sorted(NOT_ON_DASHBOARD)})")


def check_promql_syntax(promtool, exprs, tmp):
    """promtool check rules on the dashboard's expressions as recording rules."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)]}]}
    path = os.path.join(tmp, "dashboard_rules.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(rules, f)
    r = run([promtool, "check", "rules", path])
    if r.returncode != 0:
        raise Failure(f"the dashboard's PromQL does not parse:\n{r.stdout}{r.stderr}")
    log(f"ok: promtool parses all {len(exprs)} dashboard expressions")


def case_dashboard():
    d = load_dashboard()
    series = documented_series()
    check_dashboard_structure(d, series)
    exprs = dashboard_exprs(d)
    rule_exprs = rules_exprs(load_rules())
    check_documented(exprs, series)
    with tempfile.TemporaryDirectory(prefix="packd_dashboard_") as tmp:
        try:
            check_promql_syntax(tool("promtool"), exprs, tmp)
        except Skip as e:
            log(f"note: PromQL syntax not checked: {e}")
        with Packd(tmp) as packd:
            packd.generate()
            code = packd.fail_a_load()
            packd.fleet_traffic()
            text = packd.scrape()
            families, samples = parse_exposition(text)
            check(f'packd_model_load_failures_total{{code="{code}",model="{BAD_MODEL}"}}' in text,
                  "packd_model_load_failures_total counts the failed load")
            check_fleet_scrape(text)
            check(any(s.startswith("packd_time_to_first_token_seconds_bucket") for s in samples),
                  "histograms have samples after a generate")
            check_metrics_exported(exprs, families, samples)
            check_metrics_exported(rule_exprs, families, samples)
            for family in sorted(f for f in families if f.startswith("packd_")):
                used = any(re.search(rf"\b{family}(_bucket|_sum|_count)?\b", e) for _, e in exprs)
                if not used:
                    raise Failure(f"packd exports {family} but no dashboard panel shows it")
            log("ok: every packd_ family exported is on the dashboard")
            packd.stop()


# --------------------------------------------------------------------------
# Case `prometheus`


class Prometheus:
    """A real Prometheus on a free localhost port scraping `target` every
    second, with rules.yml; data in a temporary directory."""

    def __init__(self, tmp, target):
        self.tmp = tmp
        self.target = target
        self.proc = None
        self.log_path = os.path.join(tmp, "prometheus.log")

    def __enter__(self):
        binary = tool("prometheus")
        config = os.path.join(self.tmp, "prometheus.yml")
        render_prometheus_config(self.target, "1s", config)
        for attempt in range(3):
            self.port = free_port()
            self.log_file = open(self.log_path, "w+", encoding="utf-8")
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(self.tmp, 'tsdb')}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=self.log_file, stderr=subprocess.STDOUT, cwd=self.tmp)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    http_get(f"{self.url}/-/ready", timeout=1)
                    log(f"prometheus (pid {self.proc.pid}) ready on {self.url}")
                    return self
                except (urllib.error.URLError, OSError):
                    time.sleep(0.2)
            kill_process(self.proc)
            self.log_file.close()
            text = self.log()
            if "address already in use" in text and attempt < 2:
                log(f"port {self.port} was taken; retrying")
                continue
            raise Failure(f"prometheus did not become ready within 30 s:\n{text}")
        raise Failure("prometheus could not get a free port")

    def __exit__(self, exc_type, *exc):
        kill_process(self.proc)
        self.log_file.close()
        if exc_type is not None:
            print(f"--- prometheus log ---\n{self.log()[-8000:]}--- end of log ---", flush=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def api(self, path, **params):
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as e:  # a bad query: 400 with a JSON error
            body = json.loads(e.read().decode("utf-8"))
        if body.get("status") != "success":
            raise Failure(f"{url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, q):
        return self.api("query", query=q)["result"]

    def stop(self):
        stop_process(self.proc, "prometheus", expect_zero=True)


def wait_for(what, fn):
    """Polls fn() (which returns None when satisfied, else why not) for up to
    PROMETHEUS_WAIT_S."""
    deadline = time.monotonic() + PROMETHEUS_WAIT_S
    start = time.monotonic()
    while True:
        why = fn()
        if why is None:
            log(f"ok: {what} (after {time.monotonic() - start:.1f} s)")
            return
        if time.monotonic() > deadline:
            raise Failure(f"{what}: not within {PROMETHEUS_WAIT_S} s: {why}")
        time.sleep(0.5)


def case_prometheus():
    tool("prometheus")
    rules = load_rules()
    dashboard = load_dashboard()
    with tempfile.TemporaryDirectory(prefix="packd_prometheus_") as tmp:
        with Packd(tmp) as packd, Prometheus(tmp, packd.metrics_addr) as prom:

            def up():
                r = prom.query('up{job="packd"}')
                if len(r) != 1 or r[0]["value"][1] != "1":
                    return f"up{{job=\"packd\"}} is {r}"
                if r[0]["metric"].get("instance") != packd.metrics_addr:
                    return f"instance is {r[0]['metric'].get('instance')}, not {packd.metrics_addr}"
                return None
            wait_for("up{job=\"packd\"} == 1 for packd's metrics address", up)

            # Traffic while Prometheus scrapes, so that rates are not zero: a
            # generation, a request with a wrong key, a failed load.
            packd.generate()
            packd.generate(key="not-the-key", expect_ok=False)
            code = packd.fail_a_load()
            packd.fleet_traffic()

            def series(q, pred, want):
                def fn():
                    r = prom.query(q)
                    if not any(pred(s["metric"], float(s["value"][1])) for s in r):
                        return f"{q} has no series with {want}: {r}"
                    return None
                wait_for(f"{q} has a series with {want}", fn)

            series("packd_build_info", lambda m, v: m.get("job") == "packd" and m.get("version")
                   and v == 1, 'job="packd", a version and the value 1')
            series("packd_model_weights_compressed_bytes",
                   lambda m, v: m.get("model") == MODEL and m.get("codec") and v > 0,
                   f'model="{MODEL}", a codec and bytes > 0')
            series("packd_kv_cache_total_bytes",
                   lambda m, v: m.get("model") == MODEL and m.get("model_instance") == "0" and v > 0,
                   f'model="{MODEL}", model_instance="0" and bytes > 0')
            kinds = set()

            def memory_kinds():
                kinds.update(s["metric"].get("kind") for s in prom.query("packd_device_memory_bytes"))
                return None if MEMORY_KINDS <= kinds else f"kinds {sorted(kinds)}"
            wait_for(f"packd_device_memory_bytes has kind {sorted(MEMORY_KINDS)}", memory_kinds)
            series("packd_generated_tokens_total",
                   lambda m, v: m.get("model") == MODEL and m.get("tenant") == "monitoring" and v > 0,
                   f'model="{MODEL}", tenant="monitoring" and a value > 0')
            series("packd_requests_total",
                   lambda m, v: m.get("code") == "UNAUTHENTICATED" and v >= 1,
                   'code="UNAUTHENTICATED" (the wrong key)')
            series("packd_model_load_failures_total",
                   lambda m, v: m.get("model") == BAD_MODEL and m.get("code") == code and v == 1,
                   f'model="{BAD_MODEL}", code="{code}" and the value 1')
            fleet_a, fleet_b, _ = FLEET_MODELS
            series("packd_model_loads_total",
                   lambda m, v: m.get("model") == fleet_b and m.get("from") == "host" and v == 1,
                   f'model="{fleet_b}", from="host" (a wake) and the value 1')
            series('packd_model_unloads_total{reason="evicted"}',
                   lambda m, v: m.get("model") == fleet_a and v == 1,
                   f'model="{fleet_a}" and the value 1')
            series("packd_host_cache_drops_total",
                   lambda m, v: m.get("model") == fleet_a and v == 1,
                   f'model="{fleet_a}" and the value 1')
            series("packd_device_resident_models",
                   lambda m, v: m.get("device") == FLEET_DEVICE and v == 1,
                   f'device="{FLEET_DEVICE}" and the value 1')
            series("packd_host_cache_budget_bytes", lambda m, v: v == HOST_CACHE_BYTES,
                   f"the value {HOST_CACHE_BYTES} (host_cache: {HOST_CACHE})")
            # PackdModelEvictionThrash's input: the evictions select by the
            # reason label value packd writes, per target. A counter's first
            # sample is not an increase: evict again now that Prometheus has
            # the series (a, b, c, b again evicts a model at each request).
            packd.fleet_traffic()
            series("packd:model_evictions:rate5m",
                   lambda m, v: m.get("instance") == packd.metrics_addr and v > 0,
                   f'instance="{packd.metrics_addr}" and a rate > 0')

            # The rules: every group loaded, every rule evaluated without error.
            want_groups = {g["name"]: len(g.get("rules", [])) for g in rules["groups"]}

            def rules_healthy():
                groups = prom.api("rules")["groups"]
                got = {g["name"]: len(g["rules"]) for g in groups}
                if got != want_groups:
                    return f"groups {got}, want {want_groups}"
                bad = [(r["name"], r.get("health"), r.get("lastError")) for g in groups
                       for r in g["rules"] if r.get("health") != "ok"]
                return f"rules not healthy: {bad}" if bad else None
            wait_for(f"/api/v1/rules lists the {len(want_groups)} groups of rules.yml, all health ok",
                     rules_healthy)

            def load_alert():
                alerts = prom.api("alerts")["alerts"]
                firing = [a for a in alerts if a["state"] == "firing"]
                if not any(a["labels"].get("alertname") == "PackdModelLoadFailed" and
                           a["labels"].get("model") == BAD_MODEL for a in firing):
                    return f"firing: {[a['labels'] for a in firing]}"
                return None
            wait_for(f"PackdModelLoadFailed fires for model {BAD_MODEL}", load_alert)
            firing = {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]
                      if a["state"] == "firing"}
            check(firing == {"PackdModelLoadFailed"},
                  f"no other alert fires on a healthy packd (firing: {sorted(firing)})")

            # The dashboard: every expression evaluates, with data.
            exprs = dashboard_exprs(dashboard)

            def dashboard_data():
                empty = []
                for where, e in exprs:
                    if not prom.query(concrete(e)):
                        empty.append(where)
                return f"no data for {empty}" if empty else None
            wait_for(f"all {len(exprs)} dashboard expressions return data", dashboard_data)
            for v in dashboard.get("templating", {}).get("list", []):
                if v.get("type") != "query":
                    continue
                metric, label = template_metric(variable_query(v))
                values = prom.api(f"label/{label}/values", **{"match[]": metric})
                want = MODEL if label == "model" else "cpu"
                check(want in values, f"variable ${v['name']} offers {want} (got {values})")

            prom.stop()
            packd.stop()


# --------------------------------------------------------------------------

CASES = {"rules": case_rules, "dashboard": case_dashboard, "prometheus": case_prometheus}


def main(argv):
    if len(argv) != 2 or argv[1] not in CASES:
        print(f"usage: {argv[0]} {{{'|'.join(CASES)}}}", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        CASES[argv[1]]()
    except Skip as e:
        log(f"SKIP ({argv[1]}): {e}")
        return SKIP
    except Failure as e:
        log(f"FAIL ({argv[1]}): {e}")
        return 1
    log(f"PASS ({argv[1]}, {time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
