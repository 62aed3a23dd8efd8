{{/* The pod template's metadata, shared by the StatefulSet and the Deployment. */}}
{{- define "parlor.podMetadata" -}}
labels:
  {{- include "parlor.selectorLabels" . | nindent 2 }}
  app.kubernetes.io/component: server
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Config is read at start: a changed ConfigMap or chart Secret rolls the pods.
  checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
  {{- if include "parlor.createSecret" . }}
  checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The pod spec after enableServiceLinks, which each workload file states itself. */}}
{{- define "parlor.podSpec" -}}
serviceAccountName: {{ include "parlor.serviceAccountName" . }}
# The pod never calls the Kubernetes API.
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ include "parlor.terminationGracePeriodSeconds" . }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  fsGroupChangePolicy: OnRootMismatch
  seccompProfile: {type: RuntimeDefault}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  # The container is named parlor whatever the release: the alert rules select it by name.
  - name: parlor
    image: {{ include "parlor.image" . | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["serve"]
    ports:
      - {name: public, containerPort: 8080, protocol: TCP}
      - {name: admin, containerPort: 9090, protocol: TCP}
    envFrom:
      - configMapRef: {name: {{ include "parlor.fullname" . }}}
    env:
      # Unique per pod, as presence and room leases need.
      - name: PARLOR_SERVER__POD_NAME
        valueFrom: {fieldRef: {fieldPath: metadata.name}}
      {{- if eq .Values.profile "cluster" }}
      {{- $secret := include "parlor.backendSecretName" . }}
      {{- if eq .Values.backends.redisMode "cluster" }}
      - name: PARLOR_CLUSTER__REDIS_URLS
        valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.backends.secretKeys.redisUrls }}}}
      {{- else }}
      - name: PARLOR_CLUSTER__REDIS_URL
        valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.backends.secretKeys.redisUrl }}}}
      {{- end }}
      - name: PARLOR_STORE__MONGODB_URI
        valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ .Values.backends.secretKeys.mongodbUri }}}}
      {{- end }}
      {{- if or .Values.sentry.existingSecret .Values.sentry.dsn }}
      - name: PARLOR_SENTRY_DSN
        valueFrom: {secretKeyRef: {name: {{ include "parlor.sentrySecretName" . }}, key: {{ .Values.sentry.key }}}}
      {{- end }}
    startupProbe:
      httpGet: {path: /health/live, port: admin}
      periodSeconds: {{ .Values.probes.startup.periodSeconds }}
      failureThreshold: {{ .Values.probes.startup.failureThreshold }}
    livenessProbe:
      httpGet: {path: /health/live, port: admin}
      periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
      timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
      failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
    readinessProbe:
      httpGet: {path: /health/ready, port: admin}
      periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
      timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
      failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
    {{- if gt (int .Values.drain.preStopSleepSecs) 0 }}
    # The pod turns readiness false itself on SIGTERM, but endpoints, kube-proxy and ingress
    # controllers drop a terminating pod only some seconds later. The sleep keeps it serving
    # meanwhile, so no new connection meets a closed listener, and clients told to reconnect
    # land on other pods. (The sleep action needs Kubernetes 1.30, and no shell in the image.)
    lifecycle:
      preStop:
        sleep: {seconds: {{ .Values.drain.preStopSleepSecs }}}
    {{- end }}
    resources: {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 10001
      runAsGroup: 10001
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts:
      # The only writable paths: the data dir and /tmp.
      - {name: data, mountPath: /data}
      - {name: tmp, mountPath: /tmp}
      {{- if .Values.signingKey.existingSecret }}
      - {name: keys, mountPath: {{ include "parlor.keysDir" . }}, readOnly: true}
      {{- end }}
      {{- range .Values.extraSecretMounts }}
      - {name: {{ printf "secret-%s" .name }}, mountPath: {{ .mountPath }}, readOnly: true}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if eq .Values.profile "cluster" }}
  # Cluster pods keep nothing: their state is in Redis and MongoDB.
  - name: data
    emptyDir: {}
  {{- end }}
  {{- if .Values.signingKey.existingSecret }}
  - name: keys
    projected:
      defaultMode: 0440
      sources:
        - secret:
            name: {{ .Values.signingKey.existingSecret }}
            items: [{key: {{ .Values.signingKey.key }}, path: signing.pem}]
        {{- with .Values.verifyKeys.keys }}
        - secret:
            name: {{ default $.Values.signingKey.existingSecret $.Values.verifyKeys.existingSecret }}
            items:
              {{- range . }}
              - {key: {{ . }}, path: {{ printf "verify/%s" . }}}
              {{- end }}
        {{- end }}
  {{- end }}
  {{- range .Values.extraSecretMounts }}
  - name: {{ printf "secret-%s" .name }}
    secret: {secretName: {{ .secretName }}, defaultMode: 0440}
  {{- end }}
{{- end }}
