{{/* Names and labels. */}}
{{- define "lookalike.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lookalike.fullname" -}}
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

{{- define "lookalike.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "lookalike.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "lookalike.selector" -}}
app.kubernetes.io/name: {{ include "lookalike.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "lookalike.secretName" -}}
{{- default (printf "%s-secrets" (include "lookalike.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "lookalike.dataClaim" -}}
{{- default (printf "%s-data" (include "lookalike.fullname" .)) .Values.storage.existingClaim }}
{{- end }}

{{- define "lookalike.headsClaim" -}}
{{- default (printf "%s-heads" (include "lookalike.fullname" .)) .Values.heads.existingClaim }}
{{- end }}

{{/* The worker images' model cache (LOOKALIKE_MODEL_CACHE in deploy/docker/Dockerfile*). */}}
{{- define "lookalike.modelCache" -}}
/opt/lookalike/models
{{- end }}

{{- define "lookalike.redisHost" -}}
{{- if .Values.redis.enabled }}{{ include "lookalike.fullname" . }}-redis{{ else }}{{ required "redis.host is required when redis.enabled is false" .Values.redis.host }}{{ end }}
{{- end }}

{{- define "lookalike.qdrantUrl" -}}
{{- if .Values.qdrant.enabled }}http://{{ include "lookalike.fullname" . }}-qdrant:6333{{ else }}{{ required "qdrant.externalUrl is required when qdrant.enabled is false" .Values.qdrant.externalUrl }}{{ end }}
{{- end }}

{{- define "lookalike.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Pod annotations: config and secret checksums (a change rolls the pods), scraping. */}}
{{- define "lookalike.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
checksum/secret: {{ include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum }}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Environment of every lookalike container: the ConfigMap, the secrets, the Redis URL. */}}
{{- define "lookalike.env" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: { name: {{ include "lookalike.secretName" . }}, key: REDIS_PASSWORD, optional: true }
- name: LOOKALIKE_REDIS_URL
  value: "redis://:$(REDIS_PASSWORD)@{{ include "lookalike.redisHost" . }}:{{ .Values.redis.port }}/{{ .Values.redis.db }}"
- name: LOOKALIKE_QDRANT_API_KEY
  valueFrom:
    secretKeyRef: { name: {{ include "lookalike.secretName" . }}, key: LOOKALIKE_QDRANT_API_KEY, optional: true }
{{- range list "LOOKALIKE_API_KEYS_READ" "LOOKALIKE_API_KEYS_WRITE" "LOOKALIKE_URL_SIGNING_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: { name: {{ include "lookalike.secretName" $ }}, key: {{ . }}, optional: true }
{{- end }}
{{- end }}

{{/* Refuse values that would break the guarantees documented in docs/operations.md. */}}
{{- define "lookalike.validate" -}}
{{- if le (int .Values.workers.terminationGracePeriodSeconds) (int .Values.workers.maxTaskSeconds) }}
{{- fail "workers.terminationGracePeriodSeconds must exceed workers.maxTaskSeconds: a stopped worker must finish its task" }}
{{- end }}
{{- if and .Values.qdrant.enabled (gt (int .Values.qdrant.replicationFactor) (int .Values.qdrant.replicas)) }}
{{- fail "qdrant.replicationFactor cannot exceed qdrant.replicas: each copy of a shard needs its own node" }}
{{- end }}
{{- if and .Values.heads.enabled (hasKey .Values.config.extraEnv "LOOKALIKE_MODEL_CACHE") }}
{{- fail "heads.enabled mounts the heads at the images' model cache: leave LOOKALIKE_MODEL_CACHE out of config.extraEnv" }}
{{- end }}
{{- if hasKey .Values.config.extraEnv "LOOKALIKE_TAGS_PASS" }}
{{- fail "the workers take LOOKALIKE_TAGS_PASS from workers.tagsPass: leave it out of config.extraEnv" }}
{{- end }}
{{- range $name, $pool := .Values.workers.pools }}
{{- if and $pool.enabled (gt (int $pool.gpus) 0) (eq $pool.pool "prefork") }}
{{- fail (printf "workers.pools.%s: a GPU pool must use the threads or solo pool (no fork after CUDA)" $name) }}
{{- end }}
{{- end }}
{{- end }}
