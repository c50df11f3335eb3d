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

{{/* The auditor's labels: another app name, so that the webhook's selectors never match it. */}}
{{- define "meshguard.auditorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "meshguard.name" . }}-auditor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshguard.auditorLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "meshguard.auditorSelectorLabels" . }}
app.kubernetes.io/component: auditor
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshguard
{{- end }}

{{- define "meshguard.auditorServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-auditor" (include "meshguard.fullname" .) }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
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
{{- $root := include "meshguard.meshRootNamespace" . }}
{{- if or (eq .Release.Namespace .Values.istioNamespace) (eq .Release.Namespace $root) }}
{{- fail (printf "meshguard: refusing to install into %s, the Istio namespace or the mesh's root namespace: meshguard exempts its own namespace, which would exempt Istio's control plane or the mesh-wide policies there. Install it into a namespace of its own (e.g. meshguard)" .Release.Namespace) }}
{{- end }}
{{- if and .Values.hostNetwork (ne .Values.podAntiAffinity "hard") (gt (int .Values.replicaCount) 1) }}
{{- fail "meshguard: hostNetwork binds ports.https and ports.admin on the node: two replicas on one node would collide; set podAntiAffinity=hard" }}
{{- end }}
{{- if and (eq .Values.config.mode "audit") (eq .Values.webhook.servicesFailurePolicy "Fail") }}
{{- fail "meshguard: config.mode=audit is a dry run and must not register a fail-closed webhook: set webhook.servicesFailurePolicy=Ignore" }}
{{- end }}
{{- if and (gt (int .Values.preStopSleepSeconds) 0) (le (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds))) }}
{{- fail (printf "meshguard: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainTimeoutSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int .Values.drainTimeoutSeconds))) }}
{{- end }}
{{- end }}

{{/* A webhook's namespaceSelector: never kube-system, kube-node-lease, the release namespace and
webhook.excludeNamespaces, nor namespaces carrying the opt-out label; with .engineExempt also
every namespace meshguard's engine exempts as a whole (config.exemptNamespaces, the root and
Istio namespaces). */}}
{{- define "meshguard.namespaceSelector" -}}
{{- $ctx := .ctx }}
{{- $excluded := concat (list "kube-system" "kube-node-lease" $ctx.Release.Namespace) $ctx.Values.webhook.excludeNamespaces }}
{{- if .engineExempt }}
{{- $excluded = concat $excluded (include "meshguard.engineExemptNamespaces" $ctx | fromJsonArray) }}
{{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- range ($excluded | uniq) }}
        - {{ . | quote }}
        {{- end }}
    {{- if $ctx.Values.webhook.optOutLabel }}
    - key: {{ $ctx.Values.webhook.optOutLabel | quote }}
      operator: NotIn
      values: ["true"]
    {{- end }}
{{- end }}

{{/* A webhook's clientConfig: the Service, and the CA bundle unless cert-manager injects it. */}}
{{- define "meshguard.clientConfig" -}}
service:
  name: {{ include "meshguard.fullname" .ctx }}
  namespace: {{ .ctx.Release.Namespace }}
  path: {{ .path }}
  port: {{ .ctx.Values.service.port }}
{{- if .caBundle }}
caBundle: {{ .caBundle }}
{{- end }}
{{- end }}

{{/* Effective failure policy. */}}
{{- define "meshguard.failurePolicy" -}}
{{- if eq .Values.config.mode "audit" }}Ignore{{ else }}{{ .Values.webhook.failurePolicy }}{{ end }}
{{- end }}

{{/* A CEL list literal of strings, as meshguard writes it: ["a", "b"]. */}}
{{- define "meshguard.celList" -}}
{{- $items := list }}
{{- range . }}{{ $items = append $items (toJson .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- end }}

{{/* The mesh's root namespace as far as Helm can tell: config.rootNamespace, else MeshConfig's
rootNamespace (ConfigMap istio in istioNamespace, read at install and upgrade), else the Istio
namespace. */}}
{{- define "meshguard.meshRootNamespace" -}}
{{- if .Values.config.rootNamespace }}
{{- .Values.config.rootNamespace }}
{{- else }}
{{- (include "meshguard.meshConfig" . | fromJson).rootNamespace | default .Values.istioNamespace }}
{{- end }}
{{- end }}

{{/* The mesh's MeshConfig (ConfigMap istio in istioNamespace, key mesh) as JSON; {} when there is
none or Helm cannot look it up (helm template). */}}
{{- define "meshguard.meshConfig" -}}
{{- $mesh := dict }}
{{- $cm := lookup "v1" "ConfigMap" .Values.istioNamespace "istio" }}
{{- if and $cm $cm.data (hasKey $cm.data "mesh") }}
{{- $parsed := (index $cm.data "mesh") | fromYaml }}
{{- if and $parsed (not (hasKey $parsed "Error")) }}{{ $mesh = $parsed }}{{ end }}
{{- end }}
{{- $mesh | toJson }}
{{- end }}

{{/* Istio's root namespace for the generated policies: config.rootNamespace, else the Istio
namespace (meshguard's default when no MeshConfig sets one). */}}
{{- define "meshguard.rootNamespace" -}}
{{- include "meshguard.meshRootNamespace" . }}
{{- end }}

{{/* The namespaces meshguard's engine exempts as a whole, sorted: exemptNamespaces, the root and
Istio namespaces, and the release namespace. */}}
{{- define "meshguard.engineExemptNamespaces" -}}
{{- $all := concat (.Values.config.exemptNamespaces | default list) (list (include "meshguard.rootNamespace" .) .Values.istioNamespace .Release.Namespace) }}
{{- $out := list }}
{{- range $all }}{{ if . }}{{ $out = append $out . }}{{ end }}{{ end }}
{{- $out | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The settings the generated policies' CEL reads, as CEL literals (JSON object). */}}
{{- define "meshguard.celSettings" -}}
{{- $c := .Values.config }}
{{- $mesh := include "meshguard.meshConfig" . | fromJson }}
{{- $td := $c.trustDomain | default $mesh.trustDomain | default "cluster.local" }}
{{- $aliases := $mesh.trustDomainAliases | default list }}
{{- if kindIs "slice" $c.trustDomainAliases }}{{ $aliases = $c.trustDomainAliases }}{{ end }}
{{- $tds := list "cluster.local" }}
{{- range (concat (list $td) $aliases) }}{{ if not (has . $tds) }}{{ $tds = append $tds . }}{{ end }}{{ end }}
{{- $suffixes := list }}
{{- range ($c.meshHostSuffixes | default list) }}
{{- $s := regexReplaceAll "^\\.+" (lower .) "" }}
{{- if $s }}{{ $suffixes = append $suffixes $s }}{{ end }}
{{- end }}
{{- $label := "istio-injection: enabled" }}
{{- if $c.injectionRevision }}{{ $label = printf "istio.io/rev: %s" $c.injectionRevision }}{{ end }}
{{- $platform := $c.platform | default dict }}
{{- $groups := list "system:masters" }}
{{- if hasKey $platform "groups" }}{{ $groups = $platform.groups | default list }}{{ end }}
{{- dict "rootNamespace" (include "meshguard.rootNamespace" . | toJson) "trustDomain" (toJson $td) "trustDomains" (include "meshguard.celList" $tds) "clusterDomain" (trimAll "." $c.clusterDomain | lower | toJson) "meshHostSuffixes" (include "meshguard.celList" $suffixes) "injectionLabel" (toJson $label) "platformLabels" (include "meshguard.celList" ($platform.labels | default list)) "platformUsers" (include "meshguard.celList" ($platform.users | default list)) "platformGroups" (include "meshguard.celList" $groups) | toJson }}
{{- end }}

{{/* A rule's action under the policy: its own action, else its default capped by the mode
(an override's: its action, else its mode's cap; "enforce" leaves the default). */}}
{{- define "meshguard.ruleAction" -}}
{{- if .set }}{{ .set }}
{{- else if eq .default "off" }}off
{{- else if eq .mode "audit" }}audit
{{- else if and (eq .mode "warn") (eq .default "deny") }}warn
{{- else }}{{ .default }}
{{- end }}
{{- end }}

{{/* A label selector as a CEL condition on the labels `.labels` (a CEL expression). */}}
{{- define "meshguard.selectorCel" -}}
{{- $conds := list }}
{{- range $k, $v := (.sel.matchLabels | default dict) }}
{{- $conds = append $conds (printf "%s in l && l[%s] == %s" (toJson $k) (toJson $k) (toJson $v)) }}
{{- end }}
{{- range (.sel.matchExpressions | default list) }}
{{- $k := toJson .key }}
{{- $values := include "meshguard.celList" (.values | default list) }}
{{- if eq .operator "In" }}{{ $conds = append $conds (printf "%s in l && l[%s] in %s" $k $k $values) }}
{{- else if eq .operator "NotIn" }}{{ $conds = append $conds (printf "!(%s in l && l[%s] in %s)" $k $k $values) }}
{{- else if eq .operator "Exists" }}{{ $conds = append $conds (printf "%s in l" $k) }}
{{- else }}{{ $conds = append $conds (printf "!(%s in l)" $k) }}
{{- end }}
{{- end }}
{{- if $conds }}{{ printf "[%s].all(l, %s)" .labels (join " && " $conds) }}{{ else }}true{{ end }}
{{- end }}

{{/* A rule's exemptions as one CEL condition (true: exempt), or nothing. */}}
{{- define "meshguard.exemptionsCel" -}}
{{- $any := list }}
{{- $root := . }}
{{- range .exemptions }}
{{- $all := list }}
{{- if .namespaces }}{{ $all = append $all (printf "request.namespace in %s" (include "meshguard.celList" .namespaces)) }}{{ end }}
{{- if and (hasKey . "objectSelector") (ne (toJson .objectSelector) "null") }}{{ $all = append $all (include "meshguard.selectorCel" (dict "sel" .objectSelector "labels" $root.subject)) }}{{ end }}
{{- if and (hasKey . "namespaceSelector") (ne (toJson .namespaceSelector) "null") }}
{{- if $root.namespaceKind }}
{{- $all = append $all (printf "(request.operation == 'UPDATE' && %s)" (include "meshguard.selectorCel" (dict "sel" .namespaceSelector "labels" "oldObject.metadata.?labels.orValue({})"))) }}
{{- else }}
{{- $all = append $all (printf "(namespaceObject != null && %s)" (include "meshguard.selectorCel" (dict "sel" .namespaceSelector "labels" "namespaceObject.metadata.?labels.orValue({})"))) }}
{{- end }}
{{- end }}
{{- if $all }}{{ $any = append $any (printf "(%s)" (join " && " $all)) }}{{ end }}
{{- end }}
{{- join " || " $any }}
{{- end }}

{{/* Where a rule takes which action (meshguard's ActionPlan): the overrides that concern it in
the order meshguard tries them (Policy::overrides_in_order: the rule's own and the top-level
ones listing it, by name then by selector; then, unless the rule sets its own action, the
top-level ones for every rule, by name then by selector), each as {cond, action} with its
condition in CEL, and the action elsewhere. JSON. */}}
{{- define "meshguard.actionPlan" -}}
{{- $c := .config }}
{{- $id := .id }}
{{- $default := .default }}
{{- $rc := get ($c.rules | default dict) $id | default dict }}
{{- $named := $rc.overrides | default list }}
{{- $every := list }}
{{- range ($c.overrides | default list) }}
{{- if .rules }}{{ if has $id .rules }}{{ $named = append $named . }}{{ end }}
{{- else }}{{ $every = append $every . }}{{ end }}
{{- end }}
{{- $ordered := list }}
{{- if ne $id "ns-platform-label-change" }}
{{- range $named }}{{ if .namespaces }}{{ $ordered = append $ordered . }}{{ end }}{{ end }}
{{- range $named }}{{ if not .namespaces }}{{ $ordered = append $ordered . }}{{ end }}{{ end }}
{{- if not $rc.action }}
{{- range $every }}{{ if .namespaces }}{{ $ordered = append $ordered . }}{{ end }}{{ end }}
{{- range $every }}{{ if not .namespaces }}{{ $ordered = append $ordered . }}{{ end }}{{ end }}
{{- end }}
{{- end }}
{{- $steps := list }}
{{- range $ordered }}
{{- $cond := "" }}
{{- if .namespaces }}{{ $cond = printf "request.namespace in %s" (include "meshguard.celList" .namespaces) }}
{{- else }}{{ $cond = include "meshguard.selectorCel" (dict "sel" .namespaceSelector "labels" "variables.namespaceLabels") }}{{ end }}
{{- $steps = append $steps (dict "cond" $cond "action" (include "meshguard.ruleAction" (dict "mode" (.mode | default "enforce") "default" $default "set" (.action | default "")))) }}
{{- end }}
{{- dict "steps" $steps "elsewhere" (include "meshguard.ruleAction" (dict "mode" $c.mode "default" $default "set" ($rc.action | default ""))) | toJson }}
{{- end }}

{{/* The policy's exceptions of rule .id that are active now, as one CEL condition (true:
excepted), and the earliest end among them: {cel, until}. JSON. */}}
{{- define "meshguard.exceptionsCel" -}}
{{- $root := . }}
{{- $any := list }}
{{- $until := "" }}
{{- $untilUnix := 0 }}
{{- $now := now | unixEpoch | atoi }}
{{- range ($root.config.exceptions | default list) }}
{{- $e := . }}
{{- if has $root.id ($e.rules | default list) }}
{{- $text := toString $e.expires }}
{{- if eq (len $text) 10 }}{{ $text = printf "%sT00:00:00Z" $text }}{{ end }}
{{- $end := toDate "2006-01-02T15:04:05Z07:00" $text }}
{{- $endUnix := $end | unixEpoch | atoi }}
{{- if gt $endUnix $now }}
{{- $all := list }}
{{- if $e.namespaces }}{{ $all = append $all (printf "request.namespace in %s" (include "meshguard.celList" $e.namespaces)) }}{{ end }}
{{- if $e.names }}
{{- $alts := list }}
{{- range $e.names }}
{{- if hasSuffix "*" . }}{{ $alts = append $alts (printf "n.startsWith(%s)" (trimSuffix "*" . | toJson)) }}
{{- else }}{{ $alts = append $alts (printf "n == %s" (toJson .)) }}{{ end }}
{{- end }}
{{- $all = append $all (printf "[(request.name != '' ? request.name : %s.metadata.?name.orValue(%s.metadata.?generateName.orValue('')))].exists(n, %s)" $root.subject $root.subject (join " || " $alts)) }}
{{- end }}
{{- if $e.kinds }}{{ $all = append $all (printf "request.kind.kind in %s" (include "meshguard.celList" $e.kinds)) }}{{ end }}
{{- if and (hasKey $e "objectSelector") (ne (toJson $e.objectSelector) "null") }}{{ $all = append $all (include "meshguard.selectorCel" (dict "sel" $e.objectSelector "labels" $root.subjectLabels)) }}{{ end }}
{{- if and (hasKey $e "namespaceSelector") (ne (toJson $e.namespaceSelector) "null") }}{{ $all = append $all (include "meshguard.selectorCel" (dict "sel" $e.namespaceSelector "labels" "variables.namespaceLabels")) }}{{ end }}
{{- if $all }}{{ $any = append $any (printf "(%s)" (join " && " $all)) }}{{ end }}
{{- if or (eq $untilUnix 0) (lt $endUnix $untilUnix) }}
{{- $untilUnix = $endUnix }}
{{- $until = dateInZone "2006-01-02T15:04:05.999999999Z07:00" $end "UTC" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- dict "cel" (join " || " $any) "until" $until | toJson }}
{{- end }}
