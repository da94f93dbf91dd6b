{{/* Names, labels and the parts every tracker pod shares. */}}

{{- define "tracker.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-tracker, or the release name alone when it holds "tracker" already. */}}
{{- define "tracker.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* A component's resource name: <fullname>-collector. 50 + 10 characters: a worker
pod's name (StatefulSet name, "-", ordinal) stays a valid label value. */}}
{{- define "tracker.component" -}}
{{- printf "%s-%s" (include "tracker.fullname" .root) .component }}
{{- end }}

{{- define "tracker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tracker.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tracker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "tracker.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "tracker.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* TRACKER_* variables from a values map; anything else is refused, as no tracker
process reads it. */}}
{{- define "tracker.envFromMap" -}}
{{- range $name, $value := .env }}
{{- if not (hasPrefix "TRACKER_" $name) }}
{{- fail (printf "%s: %s is not a tracker setting (TRACKER_*, see README \"Settings\")" $.where $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The shared settings, then the Secrets of every process, then the component's. */}}
{{- define "tracker.envFrom" -}}
- configMapRef:
    name: {{ include "tracker.fullname" .root }}
{{- range (concat .root.Values.envFromSecrets .values.envFromSecrets) }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/* Pod metadata every component shares: a changed ConfigMap rolls the pods. */}}
{{- define "tracker.podMetadata" -}}
metadata:
  labels:
    {{- include "tracker.labels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
    {{- with .values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Pod spec fields every component shares; the caller adds containers and volumes. */}}
{{- define "tracker.podCommon" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.spreadAcrossNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tracker.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{/* Container fields every tracker container shares. */}}
{{- define "tracker.containerCommon" -}}
image: {{ include "tracker.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.securityContext | nindent 2 }}
resources:
  {{- toYaml .values.resources | nindent 2 }}
envFrom:
  {{- include "tracker.envFrom" . | nindent 2 }}
{{- end }}

{{/* Writable places on a read-only root (/tmp and the image's working directory), and
the Kafka and Redis TLS Secrets that are named. */}}
{{- define "tracker.mounts" -}}
- name: tmp
  mountPath: /tmp
- name: work
  mountPath: /var/lib/tracker
{{- range $service := list "kafka" "redis" }}
{{- if (index $.root.Values $service).tlsSecret }}
- name: {{ $service }}-tls
  mountPath: /etc/tracker/{{ $service }}-tls
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "tracker.volumes" -}}
- name: tmp
  emptyDir: {}
- name: work
  emptyDir: {}
{{- range $service := list "kafka" "redis" }}
{{- with (index $.root.Values $service).tlsSecret }}
- name: {{ $service }}-tls
  secret:
    secretName: {{ . }}
    # Group-readable (a client's key may be in it): the pod's fsGroup is the image's user.
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget from {enabled, minAvailable, maxUnavailable}: one of the two. */}}
{{- define "tracker.pdb" -}}
{{- $budget := .values.podDisruptionBudget }}
{{- if $budget.enabled }}
{{- if and (not (kindIs "invalid" $budget.minAvailable)) (not (kindIs "invalid" $budget.maxUnavailable)) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable, not both (null the other)" .component) }}
{{- end }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "tracker.component" . }}
  labels:
    {{- include "tracker.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $budget.minAvailable) }}
  minAvailable: {{ $budget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ required (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable" .component) $budget.maxUnavailable }}
  {{- end }}
  # A pod that never got ready may be evicted all the same: a drain is not stuck on it.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "tracker.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
