{{- define "spawner.name" -}}spawner{{- end -}}

{{- define "spawner.fullname" -}}
{{- if contains "spawner" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-spawner" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "spawner.backendNamespace" -}}
{{- default .Release.Namespace .Values.backendNamespace -}}
{{- end -}}

{{- define "spawner.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spawner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spawner
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator") */}}
{{- define "spawner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spawner.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "spawner.componentLabels" -}}
{{ include "spawner.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference: (dict "ctx" $ "image" .Values.images.operator) */}}
{{- define "spawner.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "spawner.apiTokensSecret" -}}
{{- default (printf "%s-api-tokens" (include "spawner.fullname" .)) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "spawner.signingSecret" -}}
{{- default (printf "%s-signing" (include "spawner.fullname" .)) .Values.api.signingSecret.existingSecret -}}
{{- end -}}

{{- define "spawner.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
