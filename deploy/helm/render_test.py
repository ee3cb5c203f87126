#!/usr/bin/python3
"""Renders the packd Helm chart and checks the manifests (ctest helm_render_test).

Helm is not needed: deploy/helm/render (Go text/template + sprig, the subset of
`helm template` the chart uses) is built first. The chart is rendered with its
defaults, with ci/gpu-values.yaml, with the optional parts enabled
(ServiceMonitor, HPA, TLS), with an on-demand model fleet (models[].load,
keep_alive, pinned; host_cache) and with bad values that must fail; each test
asserts one property of the output. When the packd binary exists ($PACKD_BIN),
each rendered config (the ConfigMap's packd.yaml, with the Secret's key hash
files written to a temporary directory that stands for the Secret's mount) is
checked with `packd serve --check` and served by the real packd, with
addresses, model paths, devices and key file paths rewritten for this machine,
which validates every key the way packd does at start.

Environment:
  HELM_RENDER_BUILD_DIR  where to build the renderer (default: a temporary dir)
  PACKD_BIN              the packd binary (CMake: $<TARGET_FILE:packd>); optional
  PACKD_SHARED_DIR       the shared test data (default: ../shared beside the repo)

Exit status 77 (ctest SKIP_RETURN_CODE): a prerequisite is missing; the
message names the Debian package (scripts/setup.sh installs them all).
"""

import base64
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "packd")
RENDER_SRC = os.path.join(HERE, "render")
REPO = os.path.dirname(os.path.dirname(HERE))
GOPATH = "/usr/share/gocode"
RELEASE = "test"
FULLNAME = "test-packd"
DEMO_KEY_SHA256 = "275d334e9fa1bc22b3ef7eb8cd73a75b8ace2a661dcef173cba4056f70af2cd4"
SECRETS_DIR = "/etc/packd/secrets"  # where the pod mounts the Secret's key hash files


def skip(message):
    print(f"SKIP: {message}", file=sys.stderr)
    sys.exit(SKIP)


try:
    import yaml
except ImportError:
    skip("PyYAML is missing (Debian package python3-yaml)")

# packd's config schema: the keys server/config.cc accepts at each level
# (configs/packd.example.yaml explains them). A dict is a mapping, [dict] a
# list of mappings, None a scalar or a list of scalars. REQUIRED: keys packd
# refuses to start without.
PACKD_SCHEMA = {
    "grpc": {
        "listen": None,
        "tls": {"cert_file": None, "key_file": None, "client_ca_file": None,
                "require_client_cert": None},
        "keepalive": {"time": None, "timeout": None, "permit_without_calls": None},
        "max_receive_message_size": None,
        "max_send_message_size": None,
    },
    "http": {
        "listen": None,
        "tls": {"cert_file": None, "key_file": None, "client_ca_file": None,
                "require_client_cert": None},
        "max_body_bytes": None, "threads": None, "read_timeout": None, "idle_timeout": None,
    },
    "metrics": {"listen": None},
    "logging": {"format": None, "level": None},
    "devices": [{"name": None, "kind": None, "index": None, "memory_budget": None}],
    "models": [{"name": None, "path": None, "codec": None, "device": None, "instances": None,
                "kv_cache": None, "max_batch": None, "max_batch_tokens": None,
                "max_context": None, "max_prompt_bytes": None, "threads": None,
                "matmul": None, "chat_template": None, "prefix_cache": None,
                "fused_max_batch": None, "load": None, "keep_alive": None, "pinned": None,
                "map_weights": None}],
    "tenants": [{"name": None, "api_key_sha256": None, "api_key_sha256_file": None, "admin": None,
                 "allowed_models": None, "max_concurrent_requests": None,
                 "tokens_per_minute": None}],
    "queue": {"max_queued_per_instance": None, "max_wait": None},
    "drain_timeout": None,
    "on_model_load_failure": None,
    "host_cache": None,
}
REQUIRED = {
    "": {"devices", "tenants"},
    "grpc.tls": {"cert_file", "key_file"},
    "devices[]": {"name", "kind", "memory_budget"},
    "models[]": {"name", "path", "device"},
    "tenants[]": {"name"},  # and api_key_sha256 or api_key_sha256_file (checked apart)
}


def schema_key_sets(schema):
    """Every mapping level of `schema` as a frozenset of its keys."""
    sets = [frozenset(schema)]
    for value in schema.values():
        if isinstance(value, list):
            value = value[0]
        if isinstance(value, dict):
            sets += schema_key_sets(value)
    return sets


def schema_errors(obj, schema=PACKD_SCHEMA, path=""):
    """Where `obj` (a parsed packd.yaml) departs from PACKD_SCHEMA, as strings."""
    if not isinstance(obj, dict):
        return [f"{path or 'top level'}: expected a mapping, got {type(obj).__name__}"]
    errors = []
    for key in sorted(set(REQUIRED.get(path, ())) - set(obj)):
        errors.append(f"{path + '.' if path else ''}{key}: required, missing")
    for key, value in obj.items():
        where = f"{path}.{key}" if path else key
        if key not in schema:
            errors.append(f"{where}: unknown key (valid: {', '.join(schema)})")
            continue
        sub = schema[key]
        if isinstance(sub, dict):
            errors += schema_errors(value, sub, where)
        elif isinstance(sub, list):
            if not isinstance(value, list):
                errors.append(f"{where}: expected a list")
                continue
            for i, item in enumerate(value):
                item_errors = schema_errors(item, sub[0], f"{where}[]")
                errors += [e.replace(f"{where}[]", f"{where}[{i}]", 1) for e in item_errors]
        elif isinstance(value, dict):
            errors.append(f"{where}: expected a scalar or a list, got a mapping")
    return errors


class Renderer:
    """The built renderer binary and the renders of this run."""

    binary = None
    workdir = None

    @classmethod
    def build(cls):
        if shutil.which("go") is None:
            skip("the Go toolchain is missing (Debian package golang-go)")
        for package, src in [("golang-github-masterminds-sprig-dev", "github.com/Masterminds/sprig"),
                             ("golang-gopkg-yaml.v3-dev", "gopkg.in/yaml.v3")]:
            if not os.path.isdir(os.path.join(GOPATH, "src", src)):
                skip(f"Go library {src} is missing under {GOPATH} (Debian package {package})")
        build_dir = os.environ.get("HELM_RENDER_BUILD_DIR")
        cls.workdir = tempfile.mkdtemp(prefix="helm_render_test.")
        if not build_dir:
            build_dir = os.path.join(cls.workdir, "build")
        os.makedirs(build_dir, exist_ok=True)
        cls.binary = os.path.join(build_dir, "render")
        env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="",
                   GOCACHE=os.path.join(build_dir, "gocache"), GOENV="off")
        result = subprocess.run(["go", "build", "-o", cls.binary, "."], cwd=RENDER_SRC, env=env,
                                capture_output=True, text=True, timeout=240)
        if result.returncode != 0:
            raise RuntimeError(f"go build of {RENDER_SRC} failed:\n{result.stderr}")

    @classmethod
    def run(cls, *args):
        """Runs the renderer on the chart; returns (returncode, stdout, stderr)."""
        result = subprocess.run([cls.binary, "--name", RELEASE, "--namespace", "ns", *args, CHART],
                                capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout, result.stderr

    @classmethod
    def values_file(cls, name, values):
        path = os.path.join(cls.workdir, name)
        with open(path, "w") as f:
            yaml.safe_dump(values, f)
        return path


class Render:
    """One successful render: the documents, by kind."""

    def __init__(self, *args):
        code, out, err = Renderer.run(*args)
        if code != 0:
            raise AssertionError(f"render {' '.join(args) or '(defaults)'} failed ({code}):\n{err}")
        self.text = out
        self.docs = [d for d in yaml.safe_load_all(out) if d is not None]
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        docs = self.by_kind.get(kind, [])
        if len(docs) != 1:
            raise AssertionError(f"expected one {kind}, got {len(docs)}; kinds: {sorted(self.by_kind)}")
        return docs[0]

    @property
    def pod(self):
        return self.one("Deployment")["spec"]["template"]["spec"]

    @property
    def packd(self):
        containers = {c["name"]: c for c in self.pod["containers"]}
        return containers["packd"]

    @property
    def config_text(self):
        return self.one("ConfigMap")["data"]["packd.yaml"]

    @property
    def secret_files(self):
        """The Secret's stringData: the tenants' key hash files, by name."""
        return self.one("Secret").get("stringData", {})

    @property
    def config(self):
        return yaml.safe_load(self.config_text)

    def key_hashes(self, tenant):
        """The hashes in `tenant`'s key file in the Secret (packd's format:
        one per line, blank lines and # comments ignored)."""
        path = tenant["api_key_sha256_file"]
        if not path.startswith(SECRETS_DIR + "/"):
            raise AssertionError(f"{tenant['name']}: key file {path} is not under {SECRETS_DIR}")
        text = self.secret_files[path[len(SECRETS_DIR) + 1:]]
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return [line for line in lines if line]

    def volume(self, name):
        for v in self.pod["volumes"]:
            if v["name"] == name:
                return v
        raise AssertionError(f"no pod volume {name!r}; volumes: {[v['name'] for v in self.pod['volumes']]}")


def values_tenants(values_file):
    """packd.tenants as a values file gives them."""
    with open(values_file) as f:
        return yaml.safe_load(f)["packd"]["tenants"]


def mounts(container):
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


class ChartChecks:
    """Checks every render must pass; subclasses set `r` and the expectations."""

    r = None
    expected_kinds = set()

    def test_every_document_is_a_kubernetes_object(self):
        self.assertGreater(len(self.r.docs), 0)
        for d in self.r.docs:
            self.assertIsInstance(d, dict)
            for key in ("apiVersion", "kind", "metadata"):
                self.assertIn(key, d, f"a {d.get('kind')} document lacks {key}")
            self.assertTrue(d["metadata"]["name"].startswith(FULLNAME), d["metadata"])
        sources = re.findall(r"^# Source: (\S+)$", self.r.text, re.M)
        self.assertEqual(len(sources), len(self.r.docs), "one # Source comment per document")
        for s in sources:
            self.assertRegex(s, r"^packd/templates/[a-z]+\.yaml$")

    def test_expected_kinds(self):
        self.assertEqual(set(self.r.by_kind), self.expected_kinds)
        for kind, docs in self.r.by_kind.items():
            self.assertEqual(len(docs), 1, f"{kind} appears {len(docs)} times")

    def test_container_ports(self):
        ports = {p["name"]: p for p in self.r.packd["ports"]}
        self.assertEqual(set(ports), {"grpc", "http", "metrics"})
        self.assertEqual(ports["grpc"]["containerPort"], 50051)
        self.assertEqual(ports["http"]["containerPort"], 8000)
        self.assertEqual(ports["metrics"]["containerPort"], 9090)
        service_ports = {p["name"]: p for p in self.r.one("Service")["spec"]["ports"]}
        self.assertEqual(service_ports["grpc"]["targetPort"], "grpc")
        self.assertEqual(service_ports["http"]["targetPort"], "http")
        self.assertEqual(service_ports["metrics"]["targetPort"], "metrics")
        self.assertEqual(service_ports["grpc"]["port"], 50051)
        self.assertEqual(service_ports["http"]["port"], 8000)
        self.assertEqual(service_ports["metrics"]["port"], 9090)

    def test_no_http_api(self):
        r = Render("--set", "ports.http=0")
        self.assertNotIn("http", r.config)
        self.assertNotIn("http", {p["name"] for p in r.packd["ports"]})
        self.assertNotIn("http", {p["name"] for p in r.one("Service")["spec"]["ports"]})

    def test_probes(self):
        c = self.r.packd
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertIn(probe, c)
            self.assertEqual(c[probe].get("grpc"), {"port": 50051, "service": ""},
                             f"{probe} is not a gRPC probe on 50051: {c[probe]}")
            self.assertNotIn("httpGet", c[probe])
        startup = c["startupProbe"]
        # Slow model loads: at least 10 minutes before a restart.
        self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 600)
        self.assertLessEqual(c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"], 60)

    def test_security_context(self):
        pod_sc = self.r.pod["securityContext"]
        self.assertIs(pod_sc["runAsNonRoot"], True)
        self.assertEqual(pod_sc["runAsUser"], 10001)
        for c in self.r.pod["containers"] + self.r.pod.get("initContainers", []):
            sc = c["securityContext"]
            self.assertIs(sc["runAsNonRoot"], True, c["name"])
            self.assertEqual(sc["runAsUser"], 10001, c["name"])
            self.assertIs(sc["readOnlyRootFilesystem"], True, c["name"])
            self.assertIs(sc["allowPrivilegeEscalation"], False, c["name"])
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"], c["name"])

    def test_tmp_is_an_emptydir(self):
        m = mounts(self.r.packd)
        self.assertIn("/tmp", m)
        self.assertIn("emptyDir", self.r.volume(m["/tmp"]["name"]))

    def test_config_addresses(self):
        config = self.r.config
        self.assertEqual(config["grpc"]["listen"], "0.0.0.0:50051")
        self.assertEqual(config["http"]["listen"], "0.0.0.0:8000")
        self.assertEqual(config["metrics"]["listen"], "0.0.0.0:9090")

    def test_config_keys_match_packd_schema(self):
        self.assertEqual(schema_errors(self.r.config), [])
        for t in self.r.config["tenants"]:
            self.assertNotIn("api_key_sha256", t, "key hashes belong in the Secret")
            self.assertEqual(t["api_key_sha256_file"], f"{SECRETS_DIR}/{t['name']}.sha256")
        self.assertNotRegex(self.r.config_text, r"[0-9a-f]{64}", "a hash in the ConfigMap")

    def test_key_files_hold_the_tenants_hashes(self):
        values_tenants = {t["name"]: t for t in self.values_tenants}
        config_tenants = self.r.config["tenants"]
        self.assertEqual([t["name"] for t in config_tenants], list(values_tenants))
        for t in config_tenants:
            self.assertEqual(self.r.key_hashes(t), values_tenants[t["name"]]["api_key_sha256"])
            # Everything else is passed on as given.
            expected = dict(values_tenants[t["name"]])
            del expected["api_key_sha256"]
            self.assertEqual({k: v for k, v in t.items() if k != "api_key_sha256_file"}, expected)
        self.assertEqual(set(self.r.secret_files),
                         {f"{t['name']}.sha256" for t in config_tenants})

    def test_model_paths_are_under_the_model_mount(self):
        model_mount = [m for m in self.r.packd["volumeMounts"] if m["name"] == "models"]
        self.assertEqual(len(model_mount), 1)
        self.assertEqual(model_mount[0]["mountPath"], "/models")
        self.assertIs(model_mount[0]["readOnly"], True)
        models = self.r.config["models"]
        self.assertEqual([m["path"] for m in models], self.expected_model_paths)

    def test_devices(self):
        self.assertEqual([(d["name"], d["kind"]) for d in self.r.config["devices"]],
                         self.expected_devices)

    def test_secret_and_configmap_are_the_config(self):
        secret = self.r.one("Secret")["metadata"]["name"]
        configmap = self.r.one("ConfigMap")["metadata"]["name"]
        m = mounts(self.r.packd)
        # The ConfigMap's packd.yaml is the file the image's command reads.
        self.assertNotIn("initContainers", self.r.pod)
        config_mount = m["/etc/packd/packd.yaml"]
        self.assertEqual(config_mount["subPath"], "packd.yaml")
        self.assertIs(config_mount["readOnly"], True)
        config_volume = self.r.volume(config_mount["name"])
        self.assertEqual(config_volume["configMap"]["name"], configmap)
        self.assertEqual(config_volume["configMap"]["items"], [{"key": "packd.yaml", "path": "packd.yaml"}])
        # The Secret's key files at SECRETS_DIR, read-only, each tenant's there.
        secrets_mount = m[SECRETS_DIR]
        self.assertIs(secrets_mount["readOnly"], True)
        secrets_volume = self.r.volume(secrets_mount["name"])["secret"]
        self.assertEqual(secrets_volume["secretName"], secret)
        self.assertEqual(secrets_volume["defaultMode"], 0o440)
        items = {i["key"]: i["path"] for i in secrets_volume["items"]}
        self.assertEqual(items, {name: name for name in self.r.secret_files})
        for t in self.r.config["tenants"]:
            mounted = f"{SECRETS_DIR}/{items[os.path.basename(t['api_key_sha256_file'])]}"
            self.assertEqual(t["api_key_sha256_file"], mounted)
        # No command/args: the image runs `packd serve --config /etc/packd/packd.yaml`.
        self.assertNotIn("command", self.r.packd)
        self.assertNotIn("args", self.r.packd)
        annotations = self.r.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        self.assertRegex(annotations["checksum/config"], r"^[0-9a-f]{64}$")
        self.assertRegex(annotations["checksum/secret"], r"^[0-9a-f]{64}$")

    def test_labels_and_selectors_match(self):
        deployment = self.r.one("Deployment")
        selector = deployment["spec"]["selector"]["matchLabels"]
        self.assertEqual(selector, {"app.kubernetes.io/name": "packd",
                                    "app.kubernetes.io/instance": RELEASE})
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(selector.items(), pod_labels.items())
        self.assertEqual(self.r.one("Service")["spec"]["selector"], selector)
        self.assertEqual(self.r.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], selector)
        for d in self.r.docs:
            self.assertLessEqual(selector.items(), d["metadata"]["labels"].items(), d["kind"])


class DefaultValuesTest(ChartChecks, unittest.TestCase):
    expected_kinds = {"ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
                      "Deployment", "PodDisruptionBudget"}
    expected_model_paths = ["/models/stories260K/stories260K.gguf"]
    expected_devices = [("cpu", "cpu")]
    values_tenants = values_tenants(os.path.join(CHART, "values.yaml"))

    @classmethod
    def setUpClass(cls):
        cls.notes = os.path.join(Renderer.workdir, "notes.txt")
        cls.r = Render("--notes", cls.notes)

    def test_no_gpu(self):
        resources = self.r.packd["resources"]
        for section in ("requests", "limits"):
            self.assertNotIn("nvidia.com/gpu", resources.get(section, {}))
        self.assertNotIn("nodeSelector", self.r.pod)
        self.assertEqual(resources["limits"]["memory"], "4Gi")

    def test_model_volume_is_the_created_claim(self):
        claim = self.r.one("PersistentVolumeClaim")
        volume = self.r.volume("models")
        self.assertEqual(volume["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"])
        self.assertEqual(claim["metadata"]["annotations"]["helm.sh/resource-policy"], "keep")

    def test_replicas_and_pdb(self):
        self.assertEqual(self.r.one("Deployment")["spec"]["replicas"], 1)
        self.assertEqual(self.r.one("PodDisruptionBudget")["spec"], {
            "maxUnavailable": 1,
            "selector": self.r.one("Deployment")["spec"]["selector"]})

    def test_demo_tenant_and_notes(self):
        tenants = self.r.config["tenants"]
        self.assertEqual(tenants[0]["api_key_sha256_file"], f"{SECRETS_DIR}/demo.sha256")
        self.assertEqual(self.r.key_hashes(tenants[0]), [DEMO_KEY_SHA256])
        with open(self.notes) as f:
            notes = f.read()
        self.assertIn("deployment/test-packd", notes)
        self.assertIn('"model": "stories260K"', notes)
        self.assertIn("WARNING: tenant \"demo\" accepts the public demo key", notes)

    def test_fleet_defaults(self):
        # values.yaml documents host_cache with its default, 0 (no host
        # cache), which the chart passes on; the demo model has no fleet keys,
        # so packd's defaults apply (at_start, never unloaded when idle).
        self.assertEqual(self.r.config["host_cache"], 0)
        for m in self.r.config["models"]:
            self.assertFalse({"load", "keep_alive", "pinned"} & set(m), m)

    def test_set_overrides_values(self):
        r = Render("--set", "replicaCount=3,ports.grpc=6000,service.grpcPort=7000")
        self.assertEqual(r.one("Deployment")["spec"]["replicas"], 3)
        ports = {p["name"]: p["containerPort"] for p in r.packd["ports"]}
        self.assertEqual(ports["grpc"], 6000)
        self.assertEqual(r.config["grpc"]["listen"], "0.0.0.0:6000")
        self.assertEqual(r.packd["readinessProbe"]["grpc"]["port"], 6000)
        service_ports = {p["name"]: p["port"] for p in r.one("Service")["spec"]["ports"]}
        self.assertEqual(service_ports["grpc"], 7000)


class GpuValuesTest(ChartChecks, unittest.TestCase):
    expected_kinds = {"ServiceAccount", "Secret", "ConfigMap", "Service", "Deployment",
                      "PodDisruptionBudget"}
    expected_model_paths = ["/models/llama-3.1-8b-tiled"]
    expected_devices = [("gpu0", "cuda")]
    values_tenants = values_tenants(os.path.join(CHART, "ci", "gpu-values.yaml"))

    @classmethod
    def setUpClass(cls):
        cls.r = Render("-f", os.path.join(CHART, "ci", "gpu-values.yaml"))

    def test_gpu_resources(self):
        resources = self.r.packd["resources"]
        self.assertEqual(resources["requests"]["nvidia.com/gpu"], 1)
        self.assertEqual(resources["limits"]["nvidia.com/gpu"], 1)
        self.assertEqual(resources["requests"]["memory"], "16Gi")

    def test_gpu_scheduling(self):
        self.assertEqual(self.r.pod["nodeSelector"], {"nvidia.com/gpu.present": "true"})
        self.assertIn({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                      self.r.pod["tolerations"])

    def test_cuda_device_config(self):
        device = self.r.config["devices"][0]
        self.assertEqual(device, {"name": "gpu0", "kind": "cuda", "index": 0, "memory_budget": "90%"})
        self.assertEqual(self.r.config["models"][0]["device"], "gpu0")

    def test_host_path_model_volume(self):
        self.assertEqual(self.r.volume("models")["hostPath"],
                         {"path": "/var/lib/packd/models", "type": "Directory"})

    def test_update_strategy_needs_no_extra_gpu(self):
        self.assertEqual(self.r.one("Deployment")["spec"]["strategy"], {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})

    def test_longer_startup(self):
        startup = self.r.packd["startupProbe"]
        self.assertEqual(startup["periodSeconds"] * startup["failureThreshold"], 3600)


# Parts that are off by default: metrics scraping, autoscaling, TLS.
OPTIONAL_VALUES = {
    "replicaCount": 3,  # ignored: the HPA owns the replica count
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6,
                    "targetAverageValue": 8},
    "tls": {"enabled": True, "cert": "CERT-PEM", "key": "KEY-PEM", "clientCA": "CA-PEM",
            "requireClientCert": True},
    "podDisruptionBudget": {"minAvailable": 1},
}


class OptionalPartsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.r = Render("-f", Renderer.values_file("optional.yaml", OPTIONAL_VALUES),
                       "--api-versions", "monitoring.coreos.com/v1")

    def test_kinds(self):
        self.assertEqual(set(self.r.by_kind), {
            "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
            "Deployment", "PodDisruptionBudget", "ServiceMonitor", "HorizontalPodAutoscaler"})

    def test_service_monitor(self):
        sm = self.r.one("ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["spec"]["selector"]["matchLabels"],
                         self.r.one("Deployment")["spec"]["selector"]["matchLabels"])
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": ["ns"]})
        self.assertEqual(sm["metadata"]["labels"]["release"], "prometheus")
        endpoint = sm["spec"]["endpoints"][0]
        self.assertEqual((endpoint["port"], endpoint["path"]), ("metrics", "/metrics"))
        service_labels = self.r.one("Service")["metadata"]["labels"]
        self.assertLessEqual(sm["spec"]["selector"]["matchLabels"].items(), service_labels.items())
        # Prometheus's job label comes from this Service label: "packd", the
        # job deploy/prometheus/rules.yml's PackdDown and PackdAbsent select.
        self.assertEqual(service_labels[sm["spec"]["jobLabel"]], "packd")

    def test_hpa_on_queue_depth(self):
        hpa = self.r.one("HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        spec = hpa["spec"]
        self.assertEqual(spec["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME})
        self.assertEqual((spec["minReplicas"], spec["maxReplicas"]), (2, 6))
        self.assertEqual(spec["metrics"], [{
            "type": "Pods",
            "pods": {"metric": {"name": "packd_requests_waiting"},
                     "target": {"type": "AverageValue", "averageValue": "8"}}}])
        self.assertNotIn("replicas", self.r.one("Deployment")["spec"])

    def test_hpa_external_metric(self):
        r = Render("--set", "autoscaling.enabled=true,autoscaling.metric.type=External,"
                   "autoscaling.metric.selector.matchLabels.model=stories260K")
        metric = r.one("HorizontalPodAutoscaler")["spec"]["metrics"][0]
        self.assertEqual(metric["type"], "External")
        self.assertEqual(metric["external"]["metric"], {
            "name": "packd_requests_waiting",
            "selector": {"matchLabels": {"model": "stories260K"}}})
        self.assertEqual(metric["external"]["target"], {"type": "AverageValue", "averageValue": "4"})

    def test_tls_config_points_at_the_mounted_secret(self):
        tls = self.r.config["grpc"]["tls"]
        self.assertEqual(tls, {"cert_file": "/etc/packd/tls/tls.crt",
                               "key_file": "/etc/packd/tls/tls.key",
                               "client_ca_file": "/etc/packd/tls/ca.crt",
                               "require_client_cert": True})
        self.assertEqual(self.r.config["http"]["tls"], tls, "HTTPS with the same certificate")
        self.assertEqual(schema_errors(self.r.config), [])
        mount = mounts(self.r.packd)["/etc/packd/tls"]
        volume = self.r.volume(mount["name"])
        self.assertEqual(volume["secret"]["secretName"], self.r.one("Secret")["metadata"]["name"])
        self.assertEqual({i["path"] for i in volume["secret"]["items"]}, {"tls.crt", "tls.key", "ca.crt"})
        data = self.r.one("Secret")["data"]
        self.assertEqual(base64.b64decode(data["tls.crt"]), b"CERT-PEM")
        self.assertEqual(base64.b64decode(data["tls.key"]), b"KEY-PEM")
        self.assertEqual(base64.b64decode(data["ca.crt"]), b"CA-PEM")

    def test_tls_probes_are_tcp(self):
        # Kubernetes gRPC probes cannot speak TLS.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(self.r.packd[probe].get("tcpSocket"), {"port": "grpc"}, probe)
            self.assertNotIn("grpc", self.r.packd[probe])

    def test_tls_existing_secret(self):
        r = Render("--set", "tls.enabled=true,tls.existingSecret=packd-cert")
        volume = r.volume(mounts(r.packd)["/etc/packd/tls"]["name"])
        self.assertEqual(volume["secret"]["secretName"], "packd-cert")
        self.assertEqual({i["path"] for i in volume["secret"]["items"]}, {"tls.crt", "tls.key"})
        self.assertNotIn("tls.crt", r.one("Secret").get("data", {}))
        self.assertNotIn("client_ca_file", r.config["grpc"]["tls"])

    def test_pdb_min_available(self):
        self.assertEqual(self.r.one("PodDisruptionBudget")["spec"]["minAvailable"], 1)
        self.assertNotIn("maxUnavailable", self.r.one("PodDisruptionBudget")["spec"])


# An on-demand model fleet (issue 15): one pinned at_start model, two
# on_demand ones (one never unloaded when idle), and a host cache.
FLEET_MODELS = [
    {"name": "stories260K", "path": "stories260K/stories260K.gguf", "device": "cpu",
     "kv_cache": "16MiB", "load": "at_start", "pinned": True},
    {"name": "story-b", "path": "stories260K/stories260K.gguf", "device": "cpu",
     "kv_cache": "16MiB", "load": "on_demand", "keep_alive": "10m"},
    {"name": "story-c", "path": "/models-extra/story-c.gguf", "device": "cpu",
     "kv_cache": "16MiB", "load": "on_demand", "keep_alive": 0, "pinned": False},
]
FLEET_VALUES = {"packd": {"models": FLEET_MODELS, "host_cache": "512MiB"}}


class FleetValuesTest(unittest.TestCase):
    """The fleet keys (models[].load, keep_alive, pinned; host_cache) reach
    packd.yaml as given."""

    @classmethod
    def setUpClass(cls):
        cls.r = Render("-f", Renderer.values_file("fleet.yaml", FLEET_VALUES))

    def test_model_keys_passed_on(self):
        models = self.r.config["models"]
        self.assertEqual([m["name"] for m in models], [m["name"] for m in FLEET_MODELS])
        for got, given in zip(models, FLEET_MODELS):
            expected = dict(given)
            if not expected["path"].startswith("/"):
                expected["path"] = "/models/" + expected["path"]
            self.assertEqual(got, expected)
        # YAML types survive the round trip: a bool stays a bool, 0 an integer
        # (packd reads keep_alive 0 as "never").
        self.assertIs(models[0]["pinned"], True)
        self.assertIs(models[2]["pinned"], False)
        self.assertEqual(models[2]["keep_alive"], 0)

    def test_host_cache_top_level(self):
        self.assertEqual(self.r.config["host_cache"], "512MiB")
        # A top-level key of packd.yaml, after the others (config.cc's order).
        self.assertRegex(self.r.config_text, r"(?m)^host_cache: 512MiB$")

    def test_schema(self):
        self.assertEqual(schema_errors(self.r.config), [])

    def test_set_host_cache(self):
        r = Render("--set", "packd.host_cache=2GiB")
        self.assertEqual(r.config["host_cache"], "2GiB")
        r = Render("--set", "packd.host_cache=null")
        self.assertNotIn("host_cache", r.config)

    def test_schema_refuses_a_misspelt_fleet_key(self):
        config = self.r.config
        config["models"][1]["keepalive"] = "5m"
        config["hostCache"] = "1GiB"
        self.assertEqual(schema_errors(config), [
            "models[1].keepalive: unknown key (valid: " + ", ".join(PACKD_SCHEMA["models"][0]) + ")",
            "hostCache: unknown key (valid: " + ", ".join(PACKD_SCHEMA) + ")"])


class BadValuesTest(unittest.TestCase):
    """Values that must fail the render, with a message that says why."""

    def assert_fails(self, expected_message, *args):
        code, out, err = Renderer.run(*args)
        self.assertNotEqual(code, 0, f"render {args} succeeded:\n{out[:2000]}")
        self.assertIn(expected_message, err)
        return err

    def test_no_models(self):
        err = self.assert_fails(
            "packd.models: at least one model is required",
            "-f", Renderer.values_file("no-models.yaml", {"packd": {"models": []}}))
        # The error names the template and the line.
        self.assertRegex(err, r"packd/templates/[\w.]+:\d+:\d+")

    def test_no_tenants(self):
        self.assert_fails("packd.tenants: at least one tenant is required", "--set", "packd.tenants=null")

    def test_no_devices(self):
        self.assert_fails("packd.devices: at least one device is required", "--set", "packd.devices=null")

    def test_raw_api_key_instead_of_hash(self):
        values = {"packd": {"tenants": [{"name": "t", "api_key_sha256": ["my-secret-key"]}]}}
        self.assert_fails("packd.tenants[0].api_key_sha256[0] must be the SHA-256 of an API key",
                          "-f", Renderer.values_file("raw-key.yaml", values))

    def test_tenant_names_name_key_files(self):
        hashes = [DEMO_KEY_SHA256]
        values = {"packd": {"tenants": [{"name": "a/b", "api_key_sha256": hashes}]}}
        self.assert_fails("packd.tenants[0].name must be 1 to 128 characters from [a-zA-Z0-9._-]",
                          "-f", Renderer.values_file("bad-name.yaml", values))
        values = {"packd": {"tenants": [{"name": "a", "api_key_sha256": hashes},
                                        {"name": "a", "api_key_sha256": hashes}]}}
        self.assert_fails("packd.tenants[1].name: a is already the name of another tenant",
                          "-f", Renderer.values_file("dup-name.yaml", values))
        values = {"packd": {"tenants": [{"name": "a", "api_key_sha256_file": "/x"}]}}
        self.assert_fails("packd.tenants[0].api_key_sha256_file is written by the chart",
                          "-f", Renderer.values_file("key-file.yaml", values))

    def test_cuda_device_without_gpu(self):
        self.assert_fails("is cuda device 0, but gpu.count is 0",
                          "-f", os.path.join(CHART, "ci", "gpu-values.yaml"), "--set", "gpu.count=0")

    def test_chart_owned_keys(self):
        self.assert_fails("packd.metrics is written by the chart", "--set", "packd.metrics.listen=x:1")
        self.assert_fails("packd.grpc.listen is written by the chart", "--set", "packd.grpc.listen=x:1")
        self.assert_fails("packd.http.listen is written by the chart", "--set", "packd.http.listen=x:1")
        self.assert_fails("packd.http.tls is written by the chart", "--set", "packd.http.tls.cert_file=x")
        self.assert_fails("packd.bogus: not a packd config key", "--set", "packd.bogus=1")
        # The chart's values use packd's own key names: host_cache, not hostCache.
        self.assert_fails("packd.hostCache: not a packd config key", "--set", "packd.hostCache=1GiB")

    def test_tls_without_material(self):
        self.assert_fails("tls.enabled needs tls.existingSecret, or tls.cert and tls.key",
                          "--set", "tls.enabled=true")

    def test_bad_hpa(self):
        self.assert_fails("autoscaling.minReplicas (5) is above autoscaling.maxReplicas (4)",
                          "--set", "autoscaling.enabled=true,autoscaling.minReplicas=5")
        self.assert_fails("autoscaling.metric.type must be Pods or External",
                          "--set", "autoscaling.enabled=true,autoscaling.metric.type=Object")

    def test_kubernetes_too_old_for_grpc_probes(self):
        self.assert_fails("incompatible with Kubernetes v1.23.0", "--kube-version", "v1.23.0")


# A small chart that exercises the renderer's Helm features one by one.
FIXTURE_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: fix\nversion: 1.2.3\nappVersion: \"9.9\"\n",
    "values.yaml": (
        "a: {b: 1, c: [1, 2], d: keep}\n"
        "big: 1000000\n"
        "s: x\n"
        "tplText: '{{ .Release.Name }}-{{ .Values.s }}-{{ include \"fix.name\" . }}'\n"),
    "templates/_helpers.tpl": '{{- define "fix.name" -}}{{ .Chart.Name }}-named{{- end }}\n',
    # File order puts the Service first; Helm's install order puts ConfigMaps first.
    "templates/a-service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\n",
    "templates/cm.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "fix.name" . }}
data:
  template: {{ .Template.Name }}
  basePath: {{ .Template.BasePath }}
  release: {{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Release.Service }}/{{ .Release.IsInstall }}
  chart: {{ .Chart.Name }}-{{ .Chart.Version }}-{{ .Chart.AppVersion }}
  kube: {{ .Capabilities.KubeVersion.Version }}
  hasApps: {{ .Capabilities.APIVersions.Has "apps/v1" | quote }}
  hasMonitoring: {{ .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" | quote }}
  tpl: {{ tpl .Values.tplText . }}
  toYaml: {{ toYaml .Values.a | quote }}
  big: {{ toYaml .Values.big | quote }}
  fromYaml: {{ (fromYaml "x: 5").x | quote }}
  toJson: {{ toJson .Values.a | quote }}
  lookup: {{ lookup "v1" "Secret" "ns" "name" | len | quote }}
  missing: "{{ .Values.nope }}"
  kindOfB: {{ kindOf .Values.a.b }}
  kindOfN: {{ kindOf .Values.n }}
  d: {{ .Values.a.d | default "deleted" }}
  upper: {{ "sprig" | upper }}
---
# only a comment
---
""",
    "templates/empty.yaml": "{{- if false }}\napiVersion: v1\nkind: Secret\n{{- end }}\n",
}


class RendererTest(unittest.TestCase):
    """The renderer on a fixture chart: the Helm features the packd chart relies on."""

    @classmethod
    def setUpClass(cls):
        cls.chart = os.path.join(Renderer.workdir, "fix")
        for name, text in FIXTURE_FILES.items():
            path = os.path.join(cls.chart, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

    def render(self, *args, chart=None):
        result = subprocess.run([Renderer.binary, "--name", "rel", "--namespace", "ns", *args,
                                 chart or self.chart], capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout, result.stderr

    def test_objects(self):
        code, out, err = self.render("--set", "n=5")
        self.assertEqual(code, 0, err)
        # Helm's stream: a --- line and a # Source line before each document,
        # in install order (ConfigMap before Service), empty documents dropped.
        self.assertEqual(re.findall(r"^---\n# Source: (\S+)$", out, re.M),
                         ["fix/templates/cm.yaml", "fix/templates/a-service.yaml"])
        cm = next(yaml.safe_load_all(out))
        self.assertEqual(cm["metadata"]["name"], "fix-named")
        self.assertEqual(cm["data"], {
            "template": "fix/templates/cm.yaml",
            "basePath": "fix/templates",
            "release": "rel/ns/Helm/true",
            "chart": "fix-1.2.3-9.9",
            "kube": "v1.29.0",
            "hasApps": "true",
            "hasMonitoring": "false",
            "tpl": "rel-x-fix-named",
            "toYaml": "b: 1\nc:\n  - 1\n  - 2\nd: keep",
            "big": "1000000",  # Helm prints integral floats as integers, not 1e+06
            "fromYaml": "5",
            "toJson": '{"b":1,"c":[1,2],"d":"keep"}',
            "lookup": "0",
            "missing": "",  # Helm prints a missing value as nothing, not <no value>
            "kindOfB": "float64",  # values from files are float64, as in Helm
            "kindOfN": "int64",  # --set integers are int64, as in Helm
            "d": "keep",
            "upper": "SPRIG",
        })

    def test_values_merge(self):
        override = os.path.join(Renderer.workdir, "fix-override.yaml")
        with open(override, "w") as f:
            f.write("a: {b: 2, d: null}\ns: from-file\n")
        code, out, err = self.render("-f", override, "--set", "s=from-set",
                                     "--api-versions", "monitoring.coreos.com/v1")
        self.assertEqual(code, 0, err)
        data = next(yaml.safe_load_all(out))["data"]
        self.assertEqual(data["toYaml"], "b: 2\nc:\n  - 1\n  - 2")  # merged; d deleted by null
        self.assertEqual(data["d"], "deleted")
        self.assertEqual(data["tpl"], "rel-from-set-fix-named")  # --set wins over -f
        self.assertEqual(data["hasMonitoring"], "true")

    def write_broken(self, name, template):
        chart = os.path.join(Renderer.workdir, name)
        shutil.copytree(self.chart, chart)
        with open(os.path.join(chart, "templates", "broken.yaml"), "w") as f:
            f.write(template)
        return chart

    def test_errors_name_the_template_and_line(self):
        chart = self.write_broken("fix-required", "apiVersion: v1\nkind: ConfigMap\n"
                                  "metadata:\n  name: {{ required \"name.is.needed\" .Values.name }}\n")
        code, _, err = self.render(chart=chart)
        self.assertEqual(code, 1)
        self.assertIn("fix/templates/broken.yaml:4:", err)
        self.assertIn("name.is.needed", err)
        chart = self.write_broken("fix-fail", "{{ fail \"failed on purpose\" }}\n")
        code, _, err = self.render(chart=chart)
        self.assertEqual(code, 1)
        self.assertIn("failed on purpose", err)
        chart = self.write_broken("fix-syntax", "kind: {{ .Values.s \n")
        code, _, err = self.render(chart=chart)
        self.assertEqual(code, 1)
        self.assertIn("fix/templates/broken.yaml:1", err)

    def test_bad_yaml_is_an_error(self):
        chart = self.write_broken("fix-yaml", "apiVersion: v1\nkind: [ConfigMap\n")
        code, _, err = self.render(chart=chart)
        self.assertEqual(code, 1)
        self.assertIn("YAML parse error on fix/templates/broken.yaml", err)

    def test_bad_arguments(self):
        code, _, err = self.render("--set", "a[0]=1")
        self.assertEqual(code, 1)
        self.assertIn("list indices are not supported", err)
        code, _, err = self.render("-f", os.path.join(Renderer.workdir, "does-not-exist.yaml"))
        self.assertEqual(code, 1)
        self.assertIn("does-not-exist.yaml", err)


class SchemaSourceTest(unittest.TestCase):
    """PACKD_SCHEMA is what server/config.cc accepts (catches a key added to packd)."""

    def test_schema_matches_config_cc(self):
        source = os.path.join(REPO, "server", "config.cc")
        if not os.path.exists(source):
            self.skipTest(f"{source} not found")
        with open(source) as f:
            text = f.read()
        levels = {frozenset(re.findall(r'"([a-z0-9_]+)"', m.group(1)))
                  for m in re.finditer(r"ReadMap\([^;{]*\{([^}]*)\}\)", text)}
        self.assertGreaterEqual(len(levels), 9, "config.cc's ReadMap calls changed shape")
        self.assertEqual(levels, set(schema_key_sets(PACKD_SCHEMA)))


def shared_model():
    shared = os.environ.get("PACKD_SHARED_DIR") or os.path.join(os.path.dirname(REPO), "shared")
    return os.path.join(shared, "models", "stories260K", "stories260K.gguf")


class PackdAcceptsConfigTest(unittest.TestCase):
    """The real packd checks (`serve --check`) and starts with each rendered config.

    Rewritten for this machine: listen addresses to 127.0.0.1:0, every model
    to stories260K with a small KV cache (codec, max_context dropped), cuda
    devices to cpu (index dropped: this packd serves on the CPU only), TLS
    files to a fresh self-signed certificate, and the tenants' key files from
    the Secret's mount (/etc/packd/secrets) to a temporary directory holding
    the Secret's files as rendered. Every other key is passed to packd as
    rendered.
    """

    @classmethod
    def setUpClass(cls):
        cls.packd = os.environ.get("PACKD_BIN", "")
        cls.model = shared_model()

    def setUp(self):
        # Run by hand without PACKD_BIN: skipped. Under ctest (which sets
        # PACKD_BIN) a missing binary or model is a failure, not a pass.
        if not self.packd:
            self.skipTest("PACKD_BIN is not set")
        if not os.access(self.packd, os.X_OK):
            self.fail(f"PACKD_BIN={self.packd!r} is not an executable")
        if not os.path.exists(self.model):
            self.fail(f"no test model at {self.model} (../shared beside the checkout)")

    @staticmethod
    def write_secret_files(render):
        """Writes the Secret's key files to a fresh directory (the Secret's
        mount as this machine has it); returns the directory."""
        secrets = tempfile.mkdtemp(dir=Renderer.workdir)
        for name, text in render.secret_files.items():
            with open(os.path.join(secrets, name), "w") as f:
                f.write(text)
        return secrets

    def rewrite(self, render, tls_files=None):
        """`render`'s packd.yaml as a dict, rewritten for this machine."""
        config = render.config
        config["grpc"]["listen"] = "127.0.0.1:0"
        config["metrics"]["listen"] = "127.0.0.1:0"
        if "http" in config:
            config["http"]["listen"] = "127.0.0.1:0"
        for d in config["devices"]:
            if d["kind"] == "cuda":
                d.update(kind="cpu", memory_budget="1GiB")
                d.pop("index", None)
        for m in config["models"]:
            m.update(path=self.model, kv_cache="16MiB")
            m.pop("codec", None)
            m.pop("max_context", None)
        secrets = self.write_secret_files(render)
        for t in config["tenants"]:
            self.assertTrue(t["api_key_sha256_file"].startswith(SECRETS_DIR + "/"), t)
            t["api_key_sha256_file"] = secrets + t["api_key_sha256_file"][len(SECRETS_DIR):]
        for api in ("grpc", "http"):
            if "tls" in config.get(api, {}):
                config[api]["tls"].update(tls_files)
        return config

    def write_config(self, config):
        workdir = tempfile.mkdtemp(dir=Renderer.workdir)
        path = os.path.join(workdir, "packd.yaml")
        if not isinstance(config, str):
            config = yaml.safe_dump(config)
        with open(path, "w") as f:
            f.write(config)
        return path, config

    def check(self, config, expected_counts):
        """`packd serve --check` on `config` must print "PATH: ok (...)" and exit 0."""
        path, text = self.write_config(config)
        result = subprocess.run([self.packd, "serve", "--config", path, "--check"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0,
                         f"packd serve --check refused the rendered config:\n{result.stderr}"
                         f"\nconfig:\n{text}")
        self.assertEqual(result.stdout, f"{path}: ok ({expected_counts})\n")

    @staticmethod
    def read_stderr(proc, sel, output, until=None, seconds=60):
        """Appends what `proc` writes to stderr to `output` (bytes) for up to
        `seconds`, until `until` appears in it or stderr closes; returns it."""
        deadline = time.monotonic() + seconds
        while (until is None or until not in output) and time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                break
            output += chunk
        return output

    def serve(self, config):
        """Starts packd with `config` (a dict or YAML text); asserts that it
        listens, then stops it with SIGTERM and expects exit status 0."""
        path, config = self.write_config(config)
        proc = subprocess.Popen([self.packd, "serve", "--config", path], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        try:
            sel = selectors.DefaultSelector()
            sel.register(proc.stderr, selectors.EVENT_READ)
            output = self.read_stderr(proc, sel, b"", until=b"listening on port")
            self.assertIn(b"listening on port", output,
                          f"packd did not start with the rendered config:\n{output.decode(errors='replace')}"
                          f"\nconfig:\n{config}")
            proc.send_signal(signal.SIGTERM)
            # Read stderr until it closes: a full pipe would block packd's
            # logging and so its exit.
            output = self.read_stderr(proc, sel, output)
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.fail("packd did not exit within 60 s of SIGTERM; its stderr:\n"
                          + output.decode(errors="replace")[-4000:])
            self.assertEqual(code, 0, "packd did not exit 0 after SIGTERM; its stderr:\n"
                             + output.decode(errors="replace")[-4000:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()

    def test_default_config(self):
        # The rendered text itself, with only addresses, the model path and
        # the Secret's mount replaced, so that packd's YAML parser reads the
        # chart's own quoting.
        r = Render()
        text = r.config_text
        secrets = self.write_secret_files(r)
        for old, new in [("0.0.0.0:50051", "127.0.0.1:0"), ("0.0.0.0:9090", "127.0.0.1:0"),
                         ("/models/stories260K/stories260K.gguf", self.model),
                         (f"{SECRETS_DIR}/demo.sha256", f"{secrets}/demo.sha256")]:
            self.assertEqual(text.count(old), 1, f"{old!r} in the rendered packd.yaml")
            text = text.replace(old, new)
        self.check(text, "1 models, 1 tenants, 1 devices")
        self.serve(text)

    def test_check_refuses_a_key_file_the_secret_lacks(self):
        # The Secret's files, one missing: --check names the tenant's key.
        r = Render()
        config = self.rewrite(r)
        os.remove(config["tenants"][0]["api_key_sha256_file"])
        path, _ = self.write_config(config)
        result = subprocess.run([self.packd, "serve", "--config", path, "--check"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertEqual(result.stdout, "")
        self.assertIn("tenants[0].api_key_sha256_file: ", result.stderr)
        self.assertIn("demo.sha256' does not exist", result.stderr)

    def test_gpu_config(self):
        config = self.rewrite(Render("-f", os.path.join(CHART, "ci", "gpu-values.yaml")))
        self.check(config, f"{len(config['models'])} models, {len(config['tenants'])} tenants, "
                   f"{len(config['devices'])} devices")
        self.serve(config)

    def test_fleet_config(self):
        # on_demand models' files are checked at start, not loaded; packd
        # listens once the at_start one is loaded.
        config = self.rewrite(Render("-f", Renderer.values_file("fleet.yaml", FLEET_VALUES)))
        self.assertEqual([m.get("load") for m in config["models"]],
                         ["at_start", "on_demand", "on_demand"])
        self.assertEqual(config["host_cache"], "512MiB")
        self.check(config, "3 models, 1 tenants, 1 devices")
        self.serve(config)

    def test_fleet_config_refused_values(self):
        # packd, not the chart, validates the fleet keys' values; its message
        # names the key.
        for model_key, value, message in [("load", "lazy", "models[1].load"),
                                          ("keep_alive", "soon", "models[1].keep_alive"),
                                          ("pinned", "maybe", "models[1].pinned")]:
            models = [dict(m) for m in FLEET_MODELS]
            models[1][model_key] = value
            values = Renderer.values_file("fleet-bad.yaml", {"packd": {"models": models}})
            config = self.rewrite(Render("-f", values))
            path, _ = self.write_config(config)
            result = subprocess.run([self.packd, "serve", "--config", path, "--check"],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 1, f"{model_key}: {value}: {result.stdout}")
            self.assertIn(message, result.stderr)

    def test_tls_and_optional_config(self):
        if shutil.which("openssl") is None:
            self.fail("openssl is missing (scripts/setup.sh installs it): no certificate for "
                      "the TLS config")
        certdir = tempfile.mkdtemp(dir=Renderer.workdir)
        cert, key = os.path.join(certdir, "tls.crt"), os.path.join(certdir, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                       check=True, capture_output=True, timeout=60)
        values = Renderer.values_file("optional.yaml", OPTIONAL_VALUES)
        config = self.rewrite(Render("-f", values),
                              {"cert_file": cert, "key_file": key, "client_ca_file": cert})
        self.check(config, "1 models, 1 tenants, 1 devices")
        self.serve(config)


def main():
    Renderer.build()
    try:
        program = unittest.main(exit=False, verbosity=2)
    finally:
        shutil.rmtree(Renderer.workdir, ignore_errors=True)
    sys.exit(0 if program.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
