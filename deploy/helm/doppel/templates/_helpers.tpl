{{/*
Names and labels shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "doppel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name (fullnameOverride, or release-chart unless the release name already
contains the chart name). Truncated to 63 characters: some Kubernetes name fields are limited.
*/}}
{{- define "doppel.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "doppel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "doppel.labels" -}}
helm.sh/chart: {{ include "doppel.chart" . }}
{{ include "doppel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: doppel
{{- end }}

{{/* Labels that select the nodes' pods (never change them on upgrade: selectors are immutable). */}}
{{- define "doppel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "doppel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end }}

{{/* The headless Service that gives each pod a stable DNS name. */}}
{{- define "doppel.headlessName" -}}
{{- printf "%s-headless" (include "doppel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "doppel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "doppel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "doppel.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Fails rendering unless the node is either served with TLS (tls.secretName) and API keys
(apiKeys.secretName) or explicitly insecure: a node on a pod network binds a non-loopback address,
and Doppel refuses to start there without both (docs/security.md).
*/}}
{{- define "doppel.validate" -}}
{{- if and (not .Values.insecure) (not .Values.tls.secretName) }}
{{- fail "doppel: tls.secretName is required (a kubernetes.io/tls Secret with the node's certificate and key): the node binds a non-loopback address and serves TLS unless you set insecure=true, which serves plaintext gRPC without API keys (only for a private network you trust; see docs/security.md)" }}
{{- end }}
{{- if and (not .Values.insecure) (not .Values.apiKeys.secretName) }}
{{- fail "doppel: apiKeys.secretName is required (a Secret holding the API keys file that `doppel keys create` writes): the node binds a non-loopback address and requires API keys there unless you set insecure=true (see docs/security.md)" }}
{{- end }}
{{- if and .Values.insecure .Values.tls.secretName }}
{{- fail "doppel: set either insecure=true or tls.secretName, not both" }}
{{- end }}
{{- $_ := required "doppel: nats.url is required (DOPPEL_NATS, e.g. nats://nats:4222)" .Values.nats.url }}
{{- $_ := required "doppel: redis.url is required (DOPPEL_REDIS, e.g. redis://redis:6379)" .Values.redis.url }}
{{- $_ := required "doppel: cassandra.contactPoints is required (DOPPEL_CASSANDRA, e.g. cassandra:9042)" .Values.cassandra.contactPoints }}
{{- if not (has .Values.probes.type (list "auto" "grpc" "tcp")) }}
{{- fail (printf "doppel: probes.type must be auto, grpc or tcp, got %v" .Values.probes.type) }}
{{- end }}
{{- end }}

{{/* The node configuration file (ConfigMap), or "" when values.config is empty. */}}
{{- define "doppel.configJson" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if hasKey $config "nats" }}
{{- $_ := set $config.nats "servers" (splitList "," .Values.nats.url) }}
{{- end }}
{{- if $config }}
{{- toPrettyJson $config }}
{{- end }}
{{- end }}

{{/* grpc or tcp: the kind of kubelet probe (see probes in values.yaml). */}}
{{- define "doppel.probeType" -}}
{{- if eq .Values.probes.type "auto" }}
{{- if or .Values.insecure .Values.probes.port }}grpc{{ else }}tcp{{ end }}
{{- else }}
{{- .Values.probes.type }}
{{- end }}
{{- end }}

{{/* The probe action (grpc or tcpSocket) on the probe port. */}}
{{- define "doppel.probeAction" -}}
{{- $port := .Values.probes.port | default .Values.grpc.port | int }}
{{- if eq (include "doppel.probeType" .) "grpc" }}
grpc:
  port: {{ $port }}
{{- else }}
tcpSocket:
  port: {{ $port }}
{{- end }}
{{- end }}
