{{/*
Names, labels and the packd config. Everything that turns values into packd's
config and the tenants' key files lives here, so that configmap.yaml,
secret.yaml and the checksums in deployment.yaml render the same text.
*/}}

{{/* The chart name, or nameOverride; 63 characters at most (a DNS label). */}}
{{- define "packd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-NAME, or RELEASE alone when it already contains NAME. */}}
{{- define "packd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "packd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the pods: Deployment, Service, PDB, ServiceMonitor. */}}
{{- define "packd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "packd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "packd.labels" -}}
helm.sh/chart: {{ include "packd.chart" . }}
{{ include "packd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "packd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "packd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "packd.image" -}}
{{- printf "%s:%s" (required "image.repository is required" .Values.image.repository) (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Paths inside the container. */}}
{{- define "packd.configDir" -}}/etc/packd{{- end }}
{{- define "packd.secretsDir" -}}/etc/packd/secrets{{- end }}
{{- define "packd.tlsDir" -}}/etc/packd/tls{{- end }}

{{/*
The Secret key (and file name under packd.secretsDir) that holds a tenant's
API key hashes: "<tenant name>.sha256". Tenant names are [a-zA-Z0-9._-]+
(packd.validate), valid Secret keys and file names.
*/}}
{{- define "packd.keyFileName" -}}{{ printf "%s.sha256" (toString .) }}{{- end }}

{{/* The claim the model volume uses (type pvc). */}}
{{- define "packd.modelClaimName" -}}
{{- .Values.modelVolume.pvc.existingClaim | default (printf "%s-models" (include "packd.fullname" .)) }}
{{- end }}

{{/* The Secret with tls.crt/tls.key/ca.crt. */}}
{{- define "packd.tlsSecretName" -}}
{{- .Values.tls.existingSecret | default (include "packd.fullname" .) }}
{{- end }}

{{/*
Whether the TLS files include a client CA bundle ("true" or ""): tls.clientCA
is the PEM, or, with tls.existingSecret, true when that Secret has ca.crt.
*/}}
{{- define "packd.tlsHasClientCA" -}}
{{- if and .Values.tls.enabled .Values.tls.clientCA }}true{{ end }}
{{- end }}

{{/*
Checks on values that packd cannot make (it never sees the chart) or that are
better refused before anything is deployed. packd validates the rest of its
config at start, with messages that name the key.
*/}}
{{- define "packd.validate" -}}
{{- $p := .Values.packd | default dict }}
{{- $known := list "grpc" "http" "logging" "devices" "models" "tenants" "queue" "drain_timeout" "on_model_load_failure" "host_cache" }}
{{- range $key, $_ := $p }}
{{- if eq $key "metrics" }}
{{- fail "packd.metrics is written by the chart (listen 0.0.0.0:<ports.metrics>); set ports.metrics instead" }}
{{- else if not (has $key $known) }}
{{- fail (printf "packd.%s: not a packd config key the chart passes on; valid: %s" $key (join ", " $known)) }}
{{- end }}
{{- end }}
{{- $grpc := $p.grpc | default dict }}
{{- if hasKey $grpc "listen" }}
{{- fail "packd.grpc.listen is written by the chart (0.0.0.0:<ports.grpc>); set ports.grpc instead" }}
{{- end }}
{{- if hasKey $grpc "tls" }}
{{- fail "packd.grpc.tls is written by the chart; use the tls section of the values" }}
{{- end }}
{{- $http := $p.http | default dict }}
{{- if hasKey $http "listen" }}
{{- fail "packd.http.listen is written by the chart (0.0.0.0:<ports.http>); set ports.http instead (0: no HTTP API)" }}
{{- end }}
{{- if hasKey $http "tls" }}
{{- fail "packd.http.tls is written by the chart; use the tls section of the values" }}
{{- end }}
{{- if not $p.devices }}
{{- fail "packd.devices: at least one device is required (e.g. [{name: cpu, kind: cpu, memory_budget: 3GiB}])" }}
{{- end }}
{{- if not $p.models }}
{{- fail (printf "packd.models: at least one model is required: [{name: NAME, path: PATH relative to %s, device: DEVICE}]" .Values.modelVolume.mountPath) }}
{{- end }}
{{- if not $p.tenants }}
{{- fail "packd.tenants: at least one tenant is required: [{name: NAME, api_key_sha256: [HASH], allowed_models: [\"*\"]}]" }}
{{- end }}
{{- $gpus := int (.Values.gpu.count | default 0) }}
{{- range $i, $d := $p.devices }}
{{- if eq (toString $d.kind) "cuda" }}
{{- $index := int ($d.index | default 0) }}
{{- if ge $index $gpus }}
{{- fail (printf "packd.devices[%d] (%s) is cuda device %d, but gpu.count is %d: the pod would not see that GPU" $i (toString $d.name) $index $gpus) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $i, $m := $p.models }}
{{- if not $m.name }}
{{- fail (printf "packd.models[%d].name is required" $i) }}
{{- end }}
{{- end }}
{{- $tenantNames := list }}
{{- range $i, $t := $p.tenants }}
{{- if not (regexMatch "^[a-zA-Z0-9._-]{1,128}$" (toString $t.name)) }}
{{- fail (printf "packd.tenants[%d].name must be 1 to 128 characters from [a-zA-Z0-9._-] (it names the tenant's key file in the Secret), got %v" $i $t.name) }}
{{- end }}
{{- if has (toString $t.name) $tenantNames }}
{{- fail (printf "packd.tenants[%d].name: %s is already the name of another tenant" $i (toString $t.name)) }}
{{- end }}
{{- $tenantNames = append $tenantNames (toString $t.name) }}
{{- if hasKey $t "api_key_sha256_file" }}
{{- fail (printf "packd.tenants[%d].api_key_sha256_file is written by the chart (%s/<name>.sha256, from api_key_sha256); give the hashes in api_key_sha256" $i (include "packd.secretsDir" $)) }}
{{- end }}
{{- if not $t.api_key_sha256 }}
{{- fail (printf "packd.tenants[%d].api_key_sha256: at least one hash is required" $i) }}
{{- end }}
{{- range $k, $h := $t.api_key_sha256 }}
{{- if not (regexMatch "^[0-9a-f]{64}$" (toString $h)) }}
{{- fail (printf "packd.tenants[%d].api_key_sha256[%d] must be the SHA-256 of an API key, 64 lower-case hex digits in quotes (printf %%s \"$KEY\" | sha256sum), not the key itself" $i $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- if not .Values.tls.existingSecret }}
{{- if or (not .Values.tls.cert) (not .Values.tls.key) }}
{{- fail "tls.enabled needs tls.existingSecret, or tls.cert and tls.key (PEM)" }}
{{- end }}
{{- end }}
{{- if and .Values.tls.requireClientCert (not (include "packd.tlsHasClientCA" .)) }}
{{- fail "tls.requireClientCert needs tls.clientCA (with existingSecret: clientCA: true and a ca.crt key)" }}
{{- end }}
{{- end }}
{{- if not (has .Values.modelVolume.type (list "pvc" "hostPath")) }}
{{- fail (printf "modelVolume.type must be pvc or hostPath, got %v" .Values.modelVolume.type) }}
{{- end }}
{{- end }}

{{/*
The model list as packd reads it: each path resolved against the model
volume's mount (absolute paths are kept).
*/}}
{{- define "packd.models" -}}
{{- $mount := trimSuffix "/" .Values.modelVolume.mountPath }}
{{- $models := list }}
{{- range .Values.packd.models }}
{{- $m := deepCopy . }}
{{- $path := toString ($m.path | default $m.name) }}
{{- if not (hasPrefix "/" $path) }}
{{- $path = printf "%s/%s" $mount $path }}
{{- end }}
{{- $_ := set $m "path" $path }}
{{- $models = append $models $m }}
{{- end }}
{{- toYaml (dict "models" $models) }}
{{- end }}

{{/*
The tenants section of packd.yaml: each tenant as given in values, with its
api_key_sha256 replaced by api_key_sha256_file, the Secret's file of that
tenant's hashes (packd.keyFiles) under packd.secretsDir.
*/}}
{{- define "packd.tenants" -}}
{{- $dir := include "packd.secretsDir" . }}
{{- $tenants := list }}
{{- range .Values.packd.tenants }}
{{- $t := deepCopy . }}
{{- $_ := unset $t "api_key_sha256" }}
{{- $_ := set $t "api_key_sha256_file" (printf "%s/%s" $dir (include "packd.keyFileName" .name)) }}
{{- $tenants = append $tenants $t }}
{{- end }}
{{- toYaml (dict "tenants" $tenants) }}
{{- end }}

{{/*
The tenants' key files, as the Secret's stringData: "<name>.sha256" -> one
SHA-256 hex hash per line (packd's api_key_sha256_file format).
*/}}
{{- define "packd.keyFiles" -}}
{{- $files := dict }}
{{- range .Values.packd.tenants }}
{{- $lines := list (printf "# API key hashes of tenant %s (packd Helm chart, from packd.tenants)" (toString .name)) }}
{{- range .api_key_sha256 }}
{{- $lines = append $lines (toString .) }}
{{- end }}
{{- $_ := set $files (include "packd.keyFileName" .name) (printf "%s\n" (join "\n" $lines)) }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/*
packd.yaml, whole: the ConfigMap's. Tenants name their key files in the
Secret (mounted at packd.secretsDir); the hashes themselves are not here.
Sections in packd.example.yaml's order.
*/}}
{{- define "packd.config" -}}
{{- include "packd.validate" . }}
{{- $p := .Values.packd }}
{{- $grpc := deepCopy ($p.grpc | default dict) }}
{{- $_ := set $grpc "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) }}
{{- if .Values.tls.enabled }}
{{- $dir := include "packd.tlsDir" . }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) }}
{{- if include "packd.tlsHasClientCA" . }}
{{- $_ := set $tls "client_ca_file" (printf "%s/ca.crt" $dir) }}
{{- $_ := set $tls "require_client_cert" (.Values.tls.requireClientCert | default false) }}
{{- end }}
{{- $_ := set $grpc "tls" $tls }}
{{- end }}
{{- $http := deepCopy ($p.http | default dict) }}
{{- if int .Values.ports.http }}
{{- $_ := set $http "listen" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- with $grpc.tls }}
{{- $_ := set $http "tls" (deepCopy .) }}
{{- end }}
{{- end }}
{{- if not $grpc.keepalive }}
{{- $_ := unset $grpc "keepalive" }}
{{- end -}}
# packd serve --config; generated by the packd Helm chart from its values.
# Keys: configs/packd.example.yaml. API key hashes: the Secret, mounted at
# {{ include "packd.secretsDir" . }}.
{{ toYaml (dict "grpc" $grpc) }}
{{- if $http.listen }}
{{ toYaml (dict "http" $http) }}
{{- end }}
{{ toYaml (dict "metrics" (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics)))) }}
{{- with $p.logging }}
{{ toYaml (dict "logging" .) }}
{{- end }}
{{ toYaml (dict "devices" $p.devices) }}
{{ include "packd.models" . }}
{{ include "packd.tenants" . }}
{{- with $p.queue }}
{{ toYaml (dict "queue" .) }}
{{- end }}
{{- if hasKey $p "drain_timeout" }}
{{ toYaml (dict "drain_timeout" $p.drain_timeout) }}
{{- end }}
{{- if hasKey $p "on_model_load_failure" }}
{{ toYaml (dict "on_model_load_failure" $p.on_model_load_failure) }}
{{- end }}
{{- if hasKey $p "host_cache" }}
{{ toYaml (dict "host_cache" $p.host_cache) }}
{{- end }}
{{ end }}
