{{/* The chart name, or nameOverride. */}}
{{- define "parlor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource names: the release name, suffixed with the chart name unless it holds it already. */}}
{{- define "parlor.fullname" -}}
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

{{/* The admin Service's name. */}}
{{- define "parlor.adminName" -}}
{{- printf "%s-admin" (include "parlor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "parlor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels. They are immutable on a StatefulSet, so they match chart 0.1.0's. */}}
{{- define "parlor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parlor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "parlor.labels" -}}
helm.sh/chart: {{ include "parlor.chart" . }}
{{ include "parlor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "parlor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "parlor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "parlor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The pod's grace period: the preStop sleep runs inside it, then the drain, then a margin
for the last flush and exit, so SIGKILL never cuts a drain short. */}}
{{- define "parlor.terminationGracePeriodSeconds" -}}
{{- add .Values.drain.preStopSleepSecs .Values.drain.graceSecs .Values.drain.marginSecs }}
{{- end }}

{{/* The Secret holding what the chart was given inline (backend URIs, Sentry DSN). */}}
{{- define "parlor.secretName" -}}
{{- printf "%s-secrets" (include "parlor.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "parlor.backendSecretName" -}}
{{- default (include "parlor.secretName" .) .Values.backends.existingSecret }}
{{- end }}

{{- define "parlor.sentrySecretName" -}}
{{- default (include "parlor.secretName" .) .Values.sentry.existingSecret }}
{{- end }}

{{/* True when the chart must create its own Secret. */}}
{{- define "parlor.createSecret" -}}
{{- if or (and (eq .Values.profile "cluster") (not .Values.backends.existingSecret)) (and (not .Values.sentry.existingSecret) .Values.sentry.dsn) }}true{{ end }}
{{- end }}

{{/* Where the signing key and the verify keys are mounted. */}}
{{- define "parlor.keysDir" -}}/etc/parlor/keys{{- end }}

{{/* Every setting the chart decides, merged over .Values.config. */}}
{{- define "parlor.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- $server := dict "data_dir" "/data" "shutdown_grace_secs" .Values.drain.graceSecs }}
{{- $auth := dict }}
{{- if .Values.signingKey.existingSecret }}
{{- $_ := set $auth "signing_key" (printf "%s/signing.pem" (include "parlor.keysDir" .)) }}
{{- $paths := list }}
{{- range .Values.verifyKeys.keys }}
{{- $paths = append $paths (printf "%s/verify/%s" (include "parlor.keysDir" $) .) }}
{{- end }}
{{- $_ := set $auth "verify_keys" $paths }}
{{- end }}
{{- $owned := dict "server" $server "auth" $auth }}
{{- if eq .Values.profile "cluster" }}
{{- $_ := set $owned "cluster" (dict "kind" "redis" "redis_mode" .Values.backends.redisMode) }}
{{- $_ := set $owned "store" (dict "kind" "mongodb") }}
{{- else }}
{{- $_ := set $owned "cluster" (dict "kind" "memory") }}
{{- $_ := set $owned "store" (dict "kind" "embedded") }}
{{- end }}
{{- toYaml (mergeOverwrite $cfg $owned) }}
{{- end }}

{{/* PARLOR_* variables of a config map: nested maps join with "__"; null drops a key. */}}
{{- define "parlor.configEnv" -}}
{{- $prefix := .prefix }}
{{- range $k, $v := .values }}
{{- $name := printf "%s%s" $prefix (upper $k) }}
{{- if kindIs "map" $v }}
{{- include "parlor.configEnv" (dict "prefix" (printf "%s__" $name) "values" $v) }}
{{- else if not (kindIs "invalid" $v) }}
{{ $name }}: {{ include "parlor.envValue" $v | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A value as the pod's env parser (figment) reads it: strings as they are, the rest as JSON
(toJson also keeps 1048576 from turning into 1.048576e+06), maps in lists as {"k"=v}. */}}
{{- define "parlor.envValue" -}}
{{- if kindIs "string" . }}{{ . }}{{ else }}{{ include "parlor.envItem" . }}{{ end }}
{{- end }}

{{- define "parlor.envItem" -}}
{{- if kindIs "map" . -}}
{ {{- range $i, $k := keys . | sortAlpha }}{{ if $i }},{{ end }}{{ toJson $k }}={{ include "parlor.envItem" (get $ $k) }}{{ end -}} }
{{- else if kindIs "slice" . -}}
[ {{- range $i, $e := . }}{{ if $i }},{{ end }}{{ include "parlor.envItem" $e }}{{ end -}} ]
{{- else -}}
{{ toJson . }}
{{- end }}
{{- end }}

{{/* Refuses values that would render a broken release. */}}
{{- define "parlor.validate" -}}
{{- if eq .Values.profile "cluster" }}
{{- if not .Values.signingKey.existingSecret }}
{{- fail "profile cluster needs signingKey.existingSecret: every pod must sign with the same key (docs/operations.md)" }}
{{- end }}
{{- if not .Values.backends.existingSecret }}
{{- if and (eq .Values.backends.redisMode "standalone") (not .Values.backends.redisUrl) }}
{{- fail "profile cluster needs backends.existingSecret (preferred) or backends.redisUrl" }}
{{- end }}
{{- if and (eq .Values.backends.redisMode "cluster") (not .Values.backends.redisUrls) }}
{{- fail "profile cluster with backends.redisMode cluster needs backends.existingSecret (preferred) or backends.redisUrls" }}
{{- end }}
{{- if not .Values.backends.mongodbUri }}
{{- fail "profile cluster needs backends.existingSecret (preferred) or backends.mongodbUri" }}
{{- end }}
{{- end }}
{{- else }}
{{- if .Values.autoscaling.enabled }}
{{- fail "autoscaling needs profile cluster: the single profile's embedded store allows one pod" }}
{{- end }}
{{- end }}
{{- if and .Values.verifyKeys.keys (not .Values.signingKey.existingSecret) }}
{{- fail "verifyKeys needs signingKey.existingSecret: a generated key has no rotation set" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if not (or .Values.autoscaling.cpu.enabled .Values.autoscaling.connections.enabled) }}
{{- fail "autoscaling needs autoscaling.cpu or autoscaling.connections enabled" }}
{{- end }}
{{- if and .Values.autoscaling.cpu.enabled (not (dig "requests" "cpu" "" .Values.resources)) }}
{{- fail "autoscaling.cpu needs resources.requests.cpu: utilization is a share of the request" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
{{- end }}
