{{/* Names and labels (helm create's helpers). */}}
{{- define "storyverse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "storyverse.fullname" -}}
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

{{- define "storyverse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "storyverse.labels" -}}
helm.sh/chart: {{ include "storyverse.chart" .ctx }}
{{ include "storyverse.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: storyverse
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "storyverse.selectorLabels" -}}
{{- with include "storyverse.seedApp" . -}}
app: {{ . }}{{ "\n" }}
{{- end -}}
app.kubernetes.io/name: {{ include "storyverse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The seed's `app` label of the three services (empty for the chart's other components). */}}
{{- define "storyverse.seedApp" -}}
{{- get (dict "gateway" "api-gateway" "auth" "authentication" "rate-limiting" "rate-limiting") .component }}
{{- end }}

{{/* Values of a component: the rate-limiting component's live under `rateLimiting`. */}}
{{- define "storyverse.valuesKey" -}}
{{- ternary "rateLimiting" .component (eq .component "rate-limiting") }}
{{- end }}

{{/* The seed's Deployment name of a component (values <component>.deploymentName). */}}
{{- define "storyverse.deploymentName" -}}
{{- (index .ctx.Values (include "storyverse.valuesKey" .)).deploymentName | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <fullname>-<component>, e.g. storyverse-gateway. */}}
{{- define "storyverse.componentName" -}}
{{- printf "%s-%s" (include "storyverse.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "storyverse.serviceAccountName" -}}
{{- $sa := index .ctx.Values (include "storyverse.valuesKey" .) "serviceAccount" }}
{{- if $sa.create }}
{{- default (include "storyverse.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{- define "storyverse.image" -}}
{{- printf "%s:%s" .repository .tag }}
{{- end }}

{{/* The chart's own Secret (only the values not taken from an existingSecret). */}}
{{- define "storyverse.secretName" -}}
{{- printf "%s-secrets" (include "storyverse.fullname" .) }}
{{- end }}

{{- define "storyverse.chartSecretNeeded" -}}
{{- if or (not .Values.database.existingSecret) (not .Values.redis.existingSecret) (not .Values.keyEncryption.existingSecret) }}true{{ end }}
{{- end }}

{{/* secretKeyRef for one credential. Call with (dict "ctx" $ "cred" .Values.database "key" "database-url"). */}}
{{- define "storyverse.secretKeyRef" -}}
secretKeyRef:
  name: {{ .cred.existingSecret | default (include "storyverse.secretName" .ctx) }}
  key: {{ ternary .cred.existingSecretKey .key (ne .cred.existingSecret "") }}
{{- end }}

{{/* Environment of the auth service and its migration Job. */}}
{{- define "storyverse.auth.env" -}}
- name: AUTH_ENV
  value: production
- name: FLASK_APP
  value: wsgi:app
- name: DATABASE_URL
  valueFrom:
    {{- include "storyverse.secretKeyRef" (dict "ctx" . "cred" .Values.database "key" "database-url") | nindent 4 }}
- name: REDIS_URL
  valueFrom:
    {{- include "storyverse.secretKeyRef" (dict "ctx" . "cred" .Values.redis "key" "redis-url") | nindent 4 }}
- name: KEY_ENCRYPTION_KEY
  valueFrom:
    {{- include "storyverse.secretKeyRef" (dict "ctx" . "cred" .Values.keyEncryption "key" "key-encryption-key") | nindent 4 }}
- name: ISSUER
  value: {{ .Values.auth.issuer | quote }}
- name: AUDIENCE
  value: {{ .Values.auth.audience | quote }}
- name: GUNICORN_CMD_ARGS
  value: {{ .Values.auth.gunicornArgs | quote }}
{{ include "storyverse.auth.mailEnv" . }}
{{- with .Values.auth.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Zone spread exactly as the seed (maxSkew, zone key, `app` selector; minDomains only with DoNotSchedule, the
     only policy Kubernetes allows it with), then a node spread of the chart's own.
     Call with (dict "ctx" $ "component" "gateway" "spread" .Values.gateway.spread). */}}
{{- define "storyverse.topologySpread" -}}
- maxSkew: {{ .spread.zoneSkew }}
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ .spread.zoneWhenUnsatisfiable }}
  {{- if eq .spread.zoneWhenUnsatisfiable "DoNotSchedule" }}
  minDomains: {{ .spread.minZones }}
  {{- end }}
  labelSelector:
    matchLabels:
      app: {{ include "storyverse.seedApp" . }}
- topologyKey: kubernetes.io/hostname
  maxSkew: {{ .spread.hostnameSkew }}
  whenUnsatisfiable: {{ .spread.hostnameWhenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "storyverse.selectorLabels" . | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}

{{/* Restricted pod security (non-root, seccomp) and container security (read-only root, no capabilities). */}}
{{- define "storyverse.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "storyverse.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* Plugin server keys for one plugin. Call with (dict "ctx" $ "name" "sv-jwt"). */}}
{{- define "storyverse.pluginEnv" -}}
{{- $p := .ctx.Values.gateway.plugins }}
{{- $key := .name | replace "-" "_" | upper }}
{{- $entry := printf "%s %s/%s.py" $p.python $p.directory .name }}
- name: KONG_PLUGINSERVER_{{ $key }}_SOCKET
  value: {{ printf "/kong_prefix/%s.sock" .name | quote }}
{{- if not $p.sidecars }}
- name: KONG_PLUGINSERVER_{{ $key }}_START_CMD
  value: {{ printf "%s %s -p /kong_prefix/" $entry (join " " $p.serverArgs) | quote }}
{{- end }}
- name: KONG_PLUGINSERVER_{{ $key }}_QUERY_CMD
  value: {{ printf "%s --dump" $entry | quote }}
{{- end }}

{{/* Loud validation: every contradiction is listed, then the render fails. */}}
{{- define "storyverse.validateValues" -}}
{{- $m := list -}}
{{- range $name := list "database" "redis" "keyEncryption" -}}
{{- $c := index $.Values $name -}}
{{- $plain := ternary "key" "url" (eq $name "keyEncryption") -}}
{{- if and (not (index $c $plain)) (not $c.existingSecret) -}}
{{- $m = append $m (printf "%s: set %s.%s or %s.existingSecret (no secret and no existingSecret)" $name $name $plain $name) -}}
{{- end -}}
{{- if and (index $c $plain) $c.existingSecret -}}
{{- $m = append $m (printf "%s: %s.%s and %s.existingSecret are both set; choose one" $name $name $plain $name) -}}
{{- end -}}
{{- end -}}
{{- with .Values.keyEncryption.key -}}
{{- if or (lt (len .) 43) (not (regexMatch "^[A-Za-z0-9+/_-]+=*$" .)) -}}
{{- $m = append $m "keyEncryption: keyEncryption.key must be base64 of at least 32 random bytes (openssl rand -base64 32)" -}}
{{- end -}}
{{- end -}}
{{- with .Values.database.url -}}
{{- if not (hasPrefix "postgresql" .) -}}
{{- $m = append $m "database: database.url must be a PostgreSQL SQLAlchemy URL (postgresql+psycopg2://...)" -}}
{{- end -}}
{{- end -}}
{{- with .Values.redis.url -}}
{{- if not (regexMatch "^rediss?://" .) -}}
{{- $m = append $m "redis: redis.url must start with redis:// or rediss://" -}}
{{- end -}}
{{- end -}}
{{- $g := .Values.gateway -}}
{{- if and (not $g.declarativeConfig) (not $g.existingConfigMap) -}}
{{- $m = append $m "gateway: set gateway.declarativeConfig (--set-file gateway.declarativeConfig=kong.yml) or gateway.existingConfigMap" -}}
{{- end -}}
{{- if and $g.declarativeConfig $g.existingConfigMap -}}
{{- $m = append $m "gateway: gateway.declarativeConfig and gateway.existingConfigMap are both set; choose one" -}}
{{- end -}}
{{- range $name, $_ := $g.plugins.resourcesByPlugin -}}
{{- if not (has $name $g.plugins.servers) -}}
{{- $m = append $m (printf "gateway: gateway.plugins.resourcesByPlugin names %q, which is not in gateway.plugins.servers" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $g.plugins.metricsPorts -}}
{{- if not (has $name $g.plugins.servers) -}}
{{- $m = append $m (printf "gateway: gateway.plugins.metricsPorts names %q, which is not in gateway.plugins.servers" $name) -}}
{{- end -}}
{{- end -}}
{{- range $c := list "gateway" "auth" "rateLimiting" -}}
{{- $s := (index $.Values $c).spread -}}
{{- if and (eq $s.zoneWhenUnsatisfiable "DoNotSchedule") (lt (int $s.minZones) 1) -}}
{{- $m = append $m (printf "%s: %s.spread.minZones must be at least 1 with DoNotSchedule" $c $c) -}}
{{- end -}}
{{- end -}}
{{- if not (hasPrefix "/" $g.plugins.python) -}}
{{- $m = append $m "gateway: gateway.plugins.python must be an absolute path (plugin servers run with a minimal PATH)" -}}
{{- end -}}
{{- if not (hasPrefix "/" $g.plugins.directory) -}}
{{- $m = append $m "gateway: gateway.plugins.directory must be an absolute path" -}}
{{- end -}}
{{- if $g.tls.enabled -}}
{{- if not $g.tls.secretName -}}
{{- $m = append $m "gateway: gateway.tls.enabled needs gateway.tls.secretName (an existing kubernetes.io/tls Secret, or the one cert-manager fills)" -}}
{{- end -}}
{{- if regexMatch "(SSLv|TLSv1(\\.[01])?( |$))" $g.tls.protocols -}}
{{- $m = append $m (printf "gateway: gateway.tls.protocols %q allows a version below TLS 1.2" $g.tls.protocols) -}}
{{- end -}}
{{- if and $g.tls.certManager.enabled (or (not $g.tls.certManager.issuerName) (not $g.tls.certManager.dnsNames)) -}}
{{- $m = append $m "gateway: gateway.tls.certManager.enabled needs gateway.tls.certManager.issuerName and dnsNames" -}}
{{- end -}}
{{- else if $g.tls.certManager.enabled -}}
{{- $m = append $m "gateway: gateway.tls.certManager.enabled needs gateway.tls.enabled" -}}
{{- end -}}
{{- if and (eq (int $g.service.httpPort) 0) (not $g.tls.enabled) -}}
{{- $m = append $m "gateway: gateway.service.httpPort is 0 and TLS is disabled: the proxy would expose no port" -}}
{{- end -}}
{{- if and .Values.internalTls.enabled (not .Values.internalTls.caSecretName) -}}
{{- $m = append $m "internalTls: internalTls.enabled needs internalTls.caSecretName (a Secret with ca.crt)" -}}
{{- end -}}
{{- range $c := list "gateway" "auth" "rateLimiting" -}}
{{- $w := index $.Values $c -}}
{{- if $w.autoscaling.enabled -}}
{{- if gt (int $w.autoscaling.minReplicas) (int $w.autoscaling.maxReplicas) -}}
{{- $m = append $m (printf "%s: %s.autoscaling.minReplicas (%v) is above maxReplicas (%v)" $c $c $w.autoscaling.minReplicas $w.autoscaling.maxReplicas) -}}
{{- end -}}
{{- if not (and $w.resources.requests $w.resources.requests.cpu) -}}
{{- $m = append $m (printf "%s: %s.autoscaling.enabled needs %s.resources.requests.cpu (the HPA scales on CPU utilisation)" $c $c $c) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $g.autoscaling.enabled $g.plugins.sidecars -}}
{{- range $name := $g.plugins.servers -}}
{{- $r := include "storyverse.pluginResources" (dict "ctx" $ "name" $name) | fromYaml -}}
{{- if not (and $r.requests $r.requests.cpu) -}}
{{- $m = append $m (printf "gateway: gateway.autoscaling.enabled needs a CPU request for the %s plugin server (gateway.plugins.resources or resourcesByPlugin)" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .Values.auth.autoscaling.requestRate -}}
{{- if and .enabled (not .metricName) -}}
{{- $m = append $m "auth: auth.autoscaling.requestRate.enabled needs auth.autoscaling.requestRate.metricName" -}}
{{- end -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if not .Values.database.cidrs -}}
{{- $m = append $m "networkPolicy: networkPolicy.enabled needs database.cidrs (the PostgreSQL endpoint's CIDR blocks)" -}}
{{- end -}}
{{- if not .Values.redis.cidrs -}}
{{- $m = append $m "networkPolicy: networkPolicy.enabled needs redis.cidrs (the Redis endpoint's CIDR blocks)" -}}
{{- end -}}
{{- end -}}
{{- range $line := splitList "\n" (include "storyverse.discovery.problems" .) -}}
{{- if $line }}{{ $m = append $m $line }}{{ end -}}
{{- end -}}
{{- range $line := splitList "\n" (include "storyverse.ops.problems" .) -}}
{{- if $line }}{{ $m = append $m $line }}{{ end -}}
{{- end -}}
{{- if $m -}}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $m) | fail -}}
{{- end -}}
{{- end }}

{{/* NetworkPolicy pieces: DNS egress, an external endpoint (CIDRs + port), the Prometheus namespace. */}}
{{- define "storyverse.np.dns" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dnsNamespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dnsPodLabels | nindent 10 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end }}
{{- define "storyverse.np.external" -}}
- to:
    {{- range .cred.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ .cred.port }}
{{- end }}
{{- define "storyverse.np.metricsFrom" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.networkPolicy.metricsNamespace }}
{{- end }}

{{/* Requests/limits of one plugin-server container. Call with (dict "ctx" $ "name" "sv-jwt"). */}}
{{- define "storyverse.pluginResources" -}}
{{- $p := .ctx.Values.gateway.plugins }}
{{- toYaml (get $p.resourcesByPlugin .name | default $p.resources) }}
{{- end }}

{{/* Environment of the rate limiting service. */}}
{{- define "storyverse.rateLimiting.env" -}}
- name: DATABASE_URL
  valueFrom:
    {{- include "storyverse.secretKeyRef" (dict "ctx" . "cred" .Values.database "key" "database-url") | nindent 4 }}
- name: REDIS_URL
  valueFrom:
    {{- include "storyverse.secretKeyRef" (dict "ctx" . "cred" .Values.redis "key" "redis-url") | nindent 4 }}
- name: JWKS_URL
  value: {{ printf "%s://%s:%v/.well-known/jwks.json" (include "storyverse.internalTls.url" .) (include "storyverse.componentName" (dict "ctx" . "component" "auth")) .Values.auth.servicePort | quote }}
- name: ISSUER
  value: {{ .Values.auth.issuer | quote }}
- name: AUDIENCE
  value: {{ .Values.auth.audience | quote }}
- name: USAGE_SYNC_INTERVAL
  value: {{ .Values.rateLimiting.usageSyncInterval | quote }}
- name: GUNICORN_CMD_ARGS
  value: {{ .Values.rateLimiting.gunicornArgs | quote }}
{{- with .Values.rateLimiting.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Internal TLS (internalTls): gunicorn's HTTPS flags, the probe scheme, the CA other processes trust, the mounts.
     Call the server parts with (dict "ctx" $ "secret" <kubernetes.io/tls Secret name>). */}}
{{- define "storyverse.internalTls.gunicornArgs" -}}
{{- if .Values.internalTls.enabled }}, --certfile, /etc/storyverse/tls/tls.crt, --keyfile, /etc/storyverse/tls/tls.key{{ end }}
{{- end }}

{{- define "storyverse.internalTls.scheme" -}}
{{ ternary "HTTPS" "HTTP" .Values.internalTls.enabled }}
{{- end }}

{{- define "storyverse.internalTls.url" -}}
{{ ternary "https" "http" .Values.internalTls.enabled }}
{{- end }}

{{/* SSL_CERT_FILE: Python's default trust store (urllib, urllib3, PyJWKClient) becomes the internal CA. */}}
{{- define "storyverse.internalTls.caEnv" -}}
{{- if .Values.internalTls.enabled }}
- name: SSL_CERT_FILE
  value: /etc/storyverse/internal-ca/ca.crt
{{- end }}
{{- end }}

{{- define "storyverse.internalTls.caMount" -}}
{{- if .Values.internalTls.enabled }}
- name: internal-ca
  mountPath: /etc/storyverse/internal-ca/
  readOnly: true
{{- end }}
{{- end }}

{{- define "storyverse.internalTls.caVolume" -}}
{{- if .Values.internalTls.enabled }}
- name: internal-ca
  secret:
    secretName: {{ .Values.internalTls.caSecretName }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{- define "storyverse.internalTls.serverMount" -}}
{{- if .ctx.Values.internalTls.enabled }}
- name: server-tls
  mountPath: /etc/storyverse/tls/
  readOnly: true
{{- end }}
{{- end }}

{{- define "storyverse.internalTls.serverVolume" -}}
{{- if .ctx.Values.internalTls.enabled }}
- name: server-tls
  secret:
    secretName: {{ .secret }}
{{- end }}
{{- end }}
