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

{{/*
The Ingress's public base URL (scheme://host), "" without an Ingress or with a wildcard host. https when an ingress.tls
entry covers the host (by name, by a "*." wildcard, or naming no hosts); otherwise http.
*/}}
{{- define "spawner.ingressBaseUrl" -}}
{{- if .Values.ingress.enabled -}}
{{- $host := .Values.ingress.host -}}
{{- if not (contains "*" $host) -}}
{{- $https := false -}}
{{- range .Values.ingress.tls -}}
{{- if not .hosts -}}
{{- $https = true -}}
{{- end -}}
{{- range .hosts -}}
{{- if or (eq . $host) (and (hasPrefix "*." .) (eq (trimPrefix "*" .) (regexReplaceAll "^[^.]+" $host ""))) -}}
{{- $https = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- printf "%s://%s" (ternary "https" "http" $https) $host -}}
{{- end -}}
{{- end -}}
{{- end -}}
