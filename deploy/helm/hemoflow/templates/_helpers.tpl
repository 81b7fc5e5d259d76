{{/*
Shared names, labels and pod fragments. Every component template builds on these,
so the scheduler and all worker pools stay consistent.
*/}}

{{- define "hemoflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hemoflow.fullname" -}}
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

{{- define "hemoflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that identify every pod of this release (used by the NetworkPolicy). */}}
{{- define "hemoflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hemoflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hemoflow.labels" -}}
helm.sh/chart: {{ include "hemoflow.chart" . }}
{{ include "hemoflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hemoflow
{{- end }}

{{- define "hemoflow.scheduler.fullname" -}}
{{- printf "%s-scheduler" (include "hemoflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hemoflow.scheduler.selectorLabels" -}}
{{ include "hemoflow.selectorLabels" . }}
app.kubernetes.io/component: scheduler
{{- end }}

{{/*
Worker pool helpers take a dict: (dict "root" $ "name" $poolName "pool" $pool).
*/}}
{{- define "hemoflow.worker.fullname" -}}
{{- printf "%s-worker-%s" (include "hemoflow.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by all worker pools (NetworkPolicy target). */}}
{{- define "hemoflow.worker.commonSelectorLabels" -}}
{{ include "hemoflow.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{/* Selector labels of one pool: distinct per pool through hemoflow.io/pool. */}}
{{- define "hemoflow.worker.selectorLabels" -}}
{{ include "hemoflow.worker.commonSelectorLabels" .root }}
hemoflow.io/pool: {{ .name }}
{{- end }}

{{- define "hemoflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hemoflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hemoflow.configMapName" -}}
{{- printf "%s-config" (include "hemoflow.fullname" .) }}
{{- end }}

{{- define "hemoflow.s3SecretName" -}}
{{- if eq .Values.objectStorage.credentials.source "create" }}
{{- printf "%s-s3" (include "hemoflow.fullname" .) }}
{{- else }}
{{- .Values.objectStorage.credentials.existingSecret }}
{{- end }}
{{- end }}

{{/* tcp:// or tls:// */}}
{{- define "hemoflow.protocol" -}}
{{- if .Values.tls.enabled }}tls{{ else }}tcp{{ end }}
{{- end }}

{{- define "hemoflow.schedulerAddress" -}}
{{- printf "%s://%s:%d" (include "hemoflow.protocol" .) (include "hemoflow.scheduler.fullname" .) (int .Values.scheduler.port) }}
{{- end }}

{{/* image reference: takes (dict "image" $img "root" $) */}}
{{- define "hemoflow.imageRef" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "hemoflow.tlsMountPath" -}}/etc/hemoflow/tls{{- end }}

{{/* `dask` TLS flags, one YAML list item per line. */}}
{{- define "hemoflow.tlsArgs" -}}
{{- if .Values.tls.enabled }}
- --tls-ca-file={{ include "hemoflow.tlsMountPath" . }}/{{ .Values.tls.caKey }}
- --tls-cert={{ include "hemoflow.tlsMountPath" . }}/{{ .Values.tls.certKey }}
- --tls-key={{ include "hemoflow.tlsMountPath" . }}/{{ .Values.tls.keyKey }}
{{- end }}
{{- end }}

{{/* Environment shared by every hemoflow container. */}}
{{- define "hemoflow.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .Values.tls.enabled }}
- name: DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION
  value: "True"
{{- end }}
{{- if and (ne .Values.objectStorage.credentials.source "serviceAccount") (ne .Values.objectStorage.credentials.source "none") }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "hemoflow.s3SecretName" . }}
      key: {{ .Values.objectStorage.credentials.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "hemoflow.s3SecretName" . }}
      key: {{ .Values.objectStorage.credentials.secretAccessKeyKey }}
{{- end }}
{{- end }}

{{- define "hemoflow.envFrom" -}}
- configMapRef:
    name: {{ include "hemoflow.configMapName" . }}
{{- end }}

{{/* Writable paths under a read-only root filesystem, plus the TLS material. */}}
{{- define "hemoflow.volumeMounts" -}}
- name: scratch
  mountPath: /scratch
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "hemoflow.tlsMountPath" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* takes (dict "root" $ "scratchSizeLimit" "20Gi") */}}
{{- define "hemoflow.volumes" -}}
- name: scratch
  emptyDir:
    {{- if .scratchSizeLimit }}
    sizeLimit: {{ .scratchSizeLimit }}
    {{- else }}
    {}
    {{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- if .root.Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .root.Values.tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.tls.caKey }}
        path: {{ .root.Values.tls.caKey }}
      - key: {{ .root.Values.tls.certKey }}
        path: {{ .root.Values.tls.certKey }}
      - key: {{ .root.Values.tls.keyKey }}
        path: {{ .root.Values.tls.keyKey }}
{{- end }}
{{- end }}

{{/* Pod-level fields shared by all components. */}}
{{- define "hemoflow.podCommon" -}}
serviceAccountName: {{ include "hemoflow.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* httpGet probe on the named dashboard port: takes (dict "probe" $p "port" "dashboard") */}}
{{- define "hemoflow.httpProbe" -}}
httpGet:
  path: /health
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
