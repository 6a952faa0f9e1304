{{/*
Base name of the operator's objects: dr-syncer-operator, as in deploy/.
*/}}
{{- define "dr-syncer.fullname" -}}
{{- default "dr-syncer-operator" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dr-syncer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The selector labels, exactly as in deploy/ (the Deployment's selector is immutable: keep them).
*/}}
{{- define "dr-syncer.selectorLabels" -}}
app.kubernetes.io/name: dr-syncer
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Helm's standard labels, added on top of deploy/'s.
*/}}
{{- define "dr-syncer.standardLabels" -}}
helm.sh/chart: {{ include "dr-syncer.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | trunc 63 | trimSuffix "-" | quote }}
{{- end }}
{{- end -}}

{{- define "dr-syncer.labels" -}}
{{ include "dr-syncer.selectorLabels" . }}
{{ include "dr-syncer.standardLabels" . }}
{{- end -}}

{{/* An IntOrString value: a number printed as an integer, a string (a percentage) quoted. */}}
{{- define "dr-syncer.intOrString" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int64 . }}{{ end -}}
{{- end -}}

{{- define "dr-syncer.serviceAccountName" -}}
{{- default (include "dr-syncer.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's own namespace (--operator-namespace, else the release namespace). */}}
{{- define "dr-syncer.operatorNamespace" -}}
{{- default .Release.Namespace .Values.operator.operatorNamespace -}}
{{- end -}}

{{- define "dr-syncer.metricsReaderName" -}}
{{- if .Values.rbac.metricsReader.name -}}
{{- .Values.rbac.metricsReader.name -}}
{{- else if .Values.fullnameOverride -}}
{{- printf "%s-metrics-reader" (include "dr-syncer.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
dr-syncer-metrics-reader
{{- end -}}
{{- end -}}

{{- define "dr-syncer.metricsPortName" -}}
{{- if .Values.metrics.secure -}}https-metrics{{- else -}}http-metrics{{- end -}}
{{- end -}}

{{- define "dr-syncer.metricsServiceName" -}}
{{- printf "%s-metrics" (include "dr-syncer.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dr-syncer.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The operator's arguments, as a YAML list. Named values left empty (or null) pass nothing: the
operator's own defaults apply. Numbers go through int64 so that large values are not printed as 1e+06.
*/}}
{{- define "dr-syncer.args" -}}
{{- $v := .Values -}}
{{- $o := .Values.operator -}}
{{- $args := list -}}
{{- if and $v.leaderElection.enabled (not $o.shards) }}{{ $args = append $args "--leader-elect" }}{{ end -}}
{{- with $o.shards }}{{ $args = append $args (printf "--shards=%d" (int64 .)) }}{{ end -}}
{{- with $v.leaderElection.id }}{{ $args = append $args (printf "--leader-election-id=%s" .) }}{{ end -}}
{{- with $v.leaderElection.namespace }}{{ $args = append $args (printf "--leader-election-namespace=%s" .) }}{{ end -}}
{{- with $v.leaderElection.leaseDuration }}{{ $args = append $args (printf "--lease-duration=%s" .) }}{{ end -}}
{{- with $v.leaderElection.renewDeadline }}{{ $args = append $args (printf "--renew-deadline=%s" .) }}{{ end -}}
{{- with $v.leaderElection.retryPeriod }}{{ $args = append $args (printf "--retry-period=%s" .) }}{{ end -}}
{{- if not $v.metrics.enabled -}}
{{- $args = append $args "--metrics-bind-address=0" -}}
{{- else -}}
{{- if ne (int64 $v.metrics.port) 8080 }}{{ $args = append $args (printf "--metrics-bind-address=:%d" (int64 $v.metrics.port)) }}{{ end -}}
{{- if $v.metrics.secure }}{{ $args = append $args "--metrics-secure" }}{{ end -}}
{{- if $v.metrics.tlsSecret -}}
{{- $args = append $args "--metrics-cert-file=/etc/dr-syncer/metrics-tls/tls.crt" -}}
{{- $args = append $args "--metrics-key-file=/etc/dr-syncer/metrics-tls/tls.key" -}}
{{- else if or $v.metrics.certFile $v.metrics.keyFile -}}
{{- if not (and $v.metrics.certFile $v.metrics.keyFile) }}{{ fail "metrics.certFile and metrics.keyFile go together: set both or neither" }}{{ end -}}
{{- $args = append $args (printf "--metrics-cert-file=%s" $v.metrics.certFile) -}}
{{- $args = append $args (printf "--metrics-key-file=%s" $v.metrics.keyFile) -}}
{{- end -}}
{{- end -}}
{{- if ne (int64 $v.health.port) 8081 }}{{ $args = append $args (printf "--health-probe-bind-address=:%d" (int64 $v.health.port)) }}{{ end -}}
{{- with $o.watchNamespace }}{{ $args = append $args (printf "--watch-namespace=%s" .) }}{{ end -}}
{{- with $o.operatorNamespace }}{{ $args = append $args (printf "--operator-namespace=%s" .) }}{{ end -}}
{{- range $o.allowReferenceNamespaces }}{{ $args = append $args (printf "--allow-reference-namespace=%s" .) }}{{ end -}}
{{- range $o.protectedNamespaces }}{{ $args = append $args (printf "--protected-namespace=%s" .) }}{{ end -}}
{{- if $o.allowKubeconfigExec }}{{ $args = append $args "--allow-kubeconfig-exec" }}{{ end -}}
{{- if $o.ignoreCert }}{{ $args = append $args "--ignore-cert" }}{{ end -}}
{{- if not (kindIs "invalid" $o.maxConcurrentSyncs) }}{{ $args = append $args (printf "--max-concurrent-syncs=%d" (int64 $o.maxConcurrentSyncs)) }}{{ end -}}
{{- if not (kindIs "invalid" $o.applyConcurrency) }}{{ $args = append $args (printf "--apply-concurrency=%d" (int64 $o.applyConcurrency)) }}{{ end -}}
{{- with $o.defaultSchedule }}{{ $args = append $args (printf "--default-schedule=%s" .) }}{{ end -}}
{{- with $o.recheckInterval }}{{ $args = append $args (printf "--recheck-interval=%s" .) }}{{ end -}}
{{- with $o.unhealthyRecheckInterval }}{{ $args = append $args (printf "--unhealthy-recheck-interval=%s" .) }}{{ end -}}
{{- with $o.debounce }}{{ $args = append $args (printf "--debounce=%s" .) }}{{ end -}}
{{- with $o.dataWaitTimeout }}{{ $args = append $args (printf "--data-wait-timeout=%s" .) }}{{ end -}}
{{- with $o.shutdownTimeout }}{{ $args = append $args (printf "--shutdown-timeout=%s" .) }}{{ end -}}
{{- with $o.requestTimeout }}{{ $args = append $args (printf "--request-timeout=%s" .) }}{{ end -}}
{{- with $o.syncTimeout }}{{ $args = append $args (printf "--sync-timeout=%s" .) }}{{ end -}}
{{- if not (kindIs "invalid" $o.stalePeriods) }}{{ $args = append $args (printf "--stale-periods=%d" (int64 $o.stalePeriods)) }}{{ end -}}
{{- with $o.staleAfter }}{{ $args = append $args (printf "--stale-after=%s" .) }}{{ end -}}
{{- with $o.pluginDir }}{{ $args = append $args (printf "--plugin-dir=%s" .) }}{{ end -}}
{{- with $o.pluginTimeout }}{{ $args = append $args (printf "--plugin-timeout=%s" .) }}{{ end -}}
{{- if not (kindIs "invalid" $o.qps) }}{{ $args = append $args (printf "--qps=%s" (toString $o.qps)) }}{{ end -}}
{{- if not (kindIs "invalid" $o.burst) }}{{ $args = append $args (printf "--burst=%d" (int64 $o.burst)) }}{{ end -}}
{{- range $v.extraArgs }}{{ $args = append $args . }}{{ end -}}
{{- toYaml $args -}}
{{- end -}}

{{/*
Fail early on combinations that would break the operator.
*/}}
{{- define "dr-syncer.validate" -}}
{{- if and (gt (int64 .Values.replicas) 1) (not .Values.leaderElection.enabled) (not .Values.operator.shards) -}}
{{- fail "replicas > 1 needs leaderElection.enabled or operator.shards: two replicas without either would both sync every mapping" -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled (not (and .Values.metrics.enabled .Values.metrics.service.enabled)) -}}
{{- fail "serviceMonitor.enabled needs metrics.enabled and metrics.service.enabled" -}}
{{- end -}}
{{- end -}}
