{{/* Service discovery and TLS to the services (gateway-config renders kong.yml from the `discovery` values:
`sv-gateway-config render --helm-values values.yaml --helm-values my-values.yaml --release R --namespace NS`).
The chart checks that the kong.yml it is given targets what these values say, and mounts the services' CA. */}}

{{/* backend name -> "host:port" as the generator computes it ({release}/{namespace} filled, .svc + clusterDomain). */}}
{{- define "storyverse.discovery.targets" -}}
{{- $d := .Values.discovery -}}
{{- range $name, $b := $d.backends }}
{{- $host := $b.host | replace "{release}" $.Release.Name | replace "{namespace}" $.Release.Namespace }}
{{- if hasSuffix ".svc" $host }}{{ $host = printf "%s.%s" $host $d.clusterDomain }}{{ end }}
{{ $name }}: {{ printf "%s:%v" $host $b.port | quote }}
{{- end }}
{{- end }}

{{/* One line per contradiction between gateway.declarativeConfig and the discovery values. */}}
{{- define "storyverse.discovery.problems" -}}
{{- with .Values.gateway.declarativeConfig -}}
{{- $kong := fromYaml . -}}
{{- $want := include "storyverse.discovery.targets" $ | fromYaml -}}
{{- $probesHttps := false -}}
{{- range $u := ($kong.upstreams | default list) -}}
{{- $targets := list -}}
{{- range $t := ($u.targets | default list) }}{{ $targets = append $targets $t.target }}{{ end -}}
{{- $expected := index $want (trimSuffix ".upstream" $u.name) -}}
{{- if and $expected (not (has $expected $targets)) }}
discovery: kong.yml's upstream {{ $u.name }} targets {{ join ", " $targets }} but the discovery values say {{ $expected }}: render kong.yml from these values (sv-gateway-config render --helm-values ... --release {{ $.Release.Name }} --namespace {{ $.Release.Namespace }})
{{- end -}}
{{- if and $u.healthchecks $u.healthchecks.active (eq (toString $u.healthchecks.active.type) "https") -}}
{{- $probesHttps = true -}}
{{- end -}}
{{- end -}}
{{- if and $probesHttps $kong.ca_certificates (not $.Values.internalTls.enabled) }}
discovery: kong.yml probes the services over https and trusts a private CA (ca_certificates): enable internalTls (internalTls.caSecretName) so Kong's active health checks trust it too (else every target is marked unhealthy)
{{- end -}}
{{- end -}}
{{- end }}

{{/* The services' CA for Kong's Lua TLS clients (active https health checks): the system store plus the internal CA
(internalTls.caSecretName, the same file nginx verifies proxied requests against). */}}
{{- define "storyverse.discovery.trustedCertificates" -}}
{{- if .Values.internalTls.enabled -}}
system,/etc/storyverse/internal-ca/ca.crt
{{- else -}}
system
{{- end -}}
{{- end }}
