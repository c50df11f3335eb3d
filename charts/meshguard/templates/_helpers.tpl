{{/* Chart name. */}}
{{- define "meshguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: resource name prefix. */}}
{{- define "meshguard.fullname" -}}
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

{{/* Common labels. */}}
{{- define "meshguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "meshguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshguard
{{- end }}

{{/* Selector labels. */}}
{{- define "meshguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meshguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "meshguard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the serving certificate (tls.crt, tls.key). */}}
{{- define "meshguard.tlsSecretName" -}}
{{- if .Values.certificates.existingSecret.name }}
{{- .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "meshguard.fullname" .) }}
{{- end }}
{{- end }}

{{/* The namespaced name of the cert-manager Certificate, for cert-manager.io/inject-ca-from. */}}
{{- define "meshguard.certificateRef" -}}
{{- printf "%s/%s-serving" .Release.Namespace (include "meshguard.fullname" .) }}
{{- end }}

{{/* DNS names of the webhook Service. */}}
{{- define "meshguard.dnsNames" -}}
{{- $svc := include "meshguard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.config.clusterDomain) (printf "%s.%s" $svc $ns) $svc | toJson }}
{{- end }}

{{/*
Checks of value combinations the schema cannot express. Included by every template that
depends on them so that a bad combination fails the whole render.
*/}}
{{- define "meshguard.validate" -}}
{{- $c := .Values.certificates }}
{{- $sources := list }}
{{- if $c.certManager.enabled }}{{ $sources = append $sources "certificates.certManager.enabled" }}{{ end }}
{{- if $c.generate.enabled }}{{ $sources = append $sources "certificates.generate.enabled" }}{{ end }}
{{- if $c.existingSecret.name }}{{ $sources = append $sources "certificates.existingSecret.name" }}{{ end }}
{{- if ne (len $sources) 1 }}
{{- fail (printf "meshguard: exactly one certificate source must be set (certificates.certManager.enabled, certificates.generate.enabled or certificates.existingSecret.name); got %d: %s" (len $sources) (join ", " $sources)) }}
{{- end }}
{{- if and $c.existingSecret.name (not $c.existingSecret.caBundle) }}
{{- fail "meshguard: certificates.existingSecret.caBundle is required with certificates.existingSecret.name (base64 of the PEM CA; `meshguard certs` prints it)" }}
{{- end }}
{{- if and $c.existingSecret.caBundle (not $c.existingSecret.name) }}
{{- fail "meshguard: certificates.existingSecret.caBundle is set but certificates.existingSecret.name is empty" }}
{{- end }}
{{- if and (eq .Values.config.mode "audit") (eq .Values.webhook.failurePolicy "Fail") }}
{{- fail "meshguard: config.mode=audit is a dry run and must not register a fail-closed webhook: set webhook.failurePolicy=Ignore" }}
{{- end }}
{{- if and (gt (int .Values.preStopSleepSeconds) 0) (le (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds))) }}
{{- fail (printf "meshguard: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds))) }}
{{- end }}
{{- end }}

{{/* Namespace selector shared by both webhooks. */}}
{{- define "meshguard.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- $excluded := concat (list "kube-system" "kube-node-lease" .Release.Namespace) .Values.webhook.excludeNamespaces | uniq }}
        {{- range $excluded }}
        - {{ . | quote }}
        {{- end }}
    {{- if .Values.webhook.optOutLabel }}
    - key: {{ .Values.webhook.optOutLabel | quote }}
      operator: NotIn
      values: ["true"]
    {{- end }}
{{- end }}

{{/* Effective failure policy. */}}
{{- define "meshguard.failurePolicy" -}}
{{- if eq .Values.config.mode "audit" }}Ignore{{ else }}{{ .Values.webhook.failurePolicy }}{{ end }}
{{- end }}
