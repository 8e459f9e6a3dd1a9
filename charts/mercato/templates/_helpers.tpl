{{/*
Shared pieces of the chart's templates. Each is included with the root context.
*/}}

{{/* The labels every object of the release carries (Kubernetes' recommended labels). */}}
{{- define "mercato.labels" -}}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mercato
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The image of every Mercato process: the operator, the gateway and the workers. */}}
{{- define "mercato.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* The Secret with the engines' addresses. */}}
{{- define "mercato.enginesSecret" -}}
{{ if .Values.engines.existingSecret }}{{ .Values.engines.existingSecret }}{{ else }}{{ .Release.Name }}-engines{{ end }}
{{- end }}
