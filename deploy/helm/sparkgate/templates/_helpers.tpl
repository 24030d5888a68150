{{/*
Names and labels.
*/}}
{{- define "sparkgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sparkgate.fullname" -}}
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

{{- define "sparkgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sparkgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sparkgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sparkgate.labels" -}}
helm.sh/chart: {{ include "sparkgate.chart" . }}
{{ include "sparkgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sparkgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sparkgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the pod finds its files. The ConfigMap is mounted at /etc/sparkgate (the image's
ENTRYPOINT reads /etc/sparkgate/sparkgate.yaml); Secrets are mounted outside it, because a
mount inside a read-only ConfigMap volume cannot be created.
*/}}
{{- define "sparkgate.tokensDir" -}}/var/run/sparkgate/tokens{{- end }}
{{- define "sparkgate.tlsDir" -}}/var/run/sparkgate/tls{{- end }}

{{- define "sparkgate.hasClientTokens" -}}
{{- if or .Values.secrets.clientTokens .Values.secrets.clientTokensSecret }}true{{ end }}
{{- end }}

{{- define "sparkgate.tokensSecretName" -}}
{{- if .Values.secrets.clientTokensSecret }}
{{- .Values.secrets.clientTokensSecret }}
{{- else }}
{{- printf "%s-tokens" (include "sparkgate.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Checks of values that would otherwise render a pod that cannot work.
*/}}
{{- define "sparkgate.validate" -}}
{{- $g := .Values.gateway }}
{{- range $key := list "drainTimeoutSeconds" "port" }}
{{- if not (regexMatch "^[0-9]+$" (toString (index $g $key))) }}
{{- fail (printf "gateway.%s must be a whole number (got %v)" $key (index $g $key)) }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[0-9]+$" (toString $g.admin.port)) }}
{{- fail (printf "gateway.admin.port must be a whole number (got %v)" $g.admin.port) }}
{{- end }}
{{- if eq (int $g.port) (int $g.admin.port) }}
{{- fail (printf "gateway.port and gateway.admin.port must differ (both %d)" (int $g.port)) }}
{{- end }}
{{- range $key := list "preStopSleepSeconds" "terminationGracePeriodSeconds" }}
{{- if not (regexMatch "^[0-9]+$" (toString (index $.Values $key))) }}
{{- fail (printf "%s must be a whole number of seconds (got %v)" $key (index $.Values $key)) }}
{{- end }}
{{- end }}
{{- $drain := int $g.drainTimeoutSeconds }}
{{- $preStop := int .Values.preStopSleepSeconds }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace (add $drain $preStop) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than gateway.drainTimeoutSeconds (%d) + preStopSleepSeconds (%d): Kubernetes kills the container when the grace period ends, cutting the streams that the drain still waits for" $grace $drain $preStop) }}
{{- end }}
{{- if not $g.clusters }}
{{- fail "gateway.clusters: at least one cluster is required (docs/configuration.md)" }}
{{- end }}
{{- if not $g.routes }}
{{- fail "gateway.routes: at least one route is required (docs/routing.md)" }}
{{- end }}
{{- range $i, $t := .Values.secrets.clientTokens }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" (toString (index $t "sha256"))) }}
{{- fail (printf "secrets.clientTokens[%d].sha256 must be \"sha256:\" and 64 lower-case hex digits (the hash of the token, never the token)" $i) }}
{{- end }}
{{- end }}
{{- if and .Values.secrets.clientTokens .Values.secrets.clientTokensSecret }}
{{- fail "secrets.clientTokens and secrets.clientTokensSecret: give one of them" }}
{{- end }}
{{- if and (include "sparkgate.hasClientTokens" .) (hasKey $g.auth "tokens_file") }}
{{- fail "gateway.auth.tokens_file is set by the chart from secrets.clientTokens or secrets.clientTokensSecret; remove it" }}
{{- end }}
{{- if and $g.tls.clientCA (not $g.tls.secretName) }}
{{- fail "gateway.tls.clientCA needs gateway.tls.secretName" }}
{{- end }}
{{- end }}

{{/*
The gateway configuration (sparkgate.yaml), keys in a fixed order.
*/}}
{{- define "sparkgate.config" -}}
{{- $g := .Values.gateway }}
{{- $host := $g.listenAddress }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- $listener := dict "address" (printf "%s:%d" $host (int $g.port)) }}
{{- if $g.tls.secretName }}
{{- $tls := dict "cert" (printf "%s/tls.crt" (include "sparkgate.tlsDir" .)) "key" (printf "%s/tls.key" (include "sparkgate.tlsDir" .)) }}
{{- if $g.tls.clientCA }}
{{- $_ := set $tls "client_ca" (printf "%s/ca.crt" (include "sparkgate.tlsDir" .)) }}
{{- $_ := set $tls "require_client_cert" $g.tls.requireClientCert }}
{{- end }}
{{- $_ := set $listener "tls" $tls }}
{{- end }}
{{- $adminHost := $g.admin.bindAddress }}
{{- if contains ":" $adminHost }}{{ $adminHost = printf "[%s]" $adminHost }}{{ end }}
{{- $cfg := dict "listeners" (list $listener) "clusters" $g.clusters "routes" $g.routes }}
{{- range $key := list "sessions" "identity" "quotas" "limits" "http2" "upstream" "tracing" }}
{{- with index $g $key }}{{ $_ := set $cfg $key . }}{{ end }}
{{- end }}
{{- $auth := deepCopy (default dict $g.auth) }}
{{- if include "sparkgate.hasClientTokens" . }}
{{- $_ := set $auth "tokens_file" (printf "%s/tokens.yaml" (include "sparkgate.tokensDir" .)) }}
{{- end }}
{{- if $auth }}{{ $_ := set $cfg "auth" $auth }}{{ end }}
{{- $_ := set $cfg "admin" (dict "address" (printf "%s:%d" $adminHost (int $g.admin.port))) }}
{{- $_ := set $cfg "drain" (dict "timeout" (printf "%ds" (int $g.drainTimeoutSeconds))) }}
{{- $_ := set $cfg "log" (dict "level" $g.logLevel) }}
{{- range $key := list "listeners" "admin" "clusters" "routes" "sessions" "auth" "identity" "quotas" "limits" "http2" "upstream" "drain" "log" "tracing" }}
{{- if hasKey $cfg $key }}
{{ dict $key (index $cfg $key) | toYaml }}
{{- end }}
{{- end }}
{{- end }}
