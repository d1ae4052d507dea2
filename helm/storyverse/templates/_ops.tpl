{{/* Operations pieces (mail, public URLs, scheduled jobs, validation of these values). */}}

{{/* Mail and public-URL environment of the auth service (and every pod that runs its code). The SMTP login comes
     from an existing Secret only: the chart never holds it. */}}
{{- define "storyverse.auth.mailEnv" -}}
{{- $s := .Values.mail.smtp -}}
- name: MAIL_BACKEND
  value: smtp
- name: MAIL_SENDER
  value: {{ .Values.mail.sender | quote }}
- name: SMTP_HOST
  value: {{ $s.host | quote }}
- name: SMTP_PORT
  value: {{ $s.port | quote }}
- name: SMTP_SECURITY
  value: {{ $s.security | quote }}
{{- with $s.existingSecret }}
- name: SMTP_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $s.usernameKey }}
- name: SMTP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $s.passwordKey }}
{{- end }}
- name: RESET_URL
  value: {{ .Values.publicUrls.resetUrl | quote }}
- name: FAMILY_INVITE_URL
  value: {{ .Values.publicUrls.familyInviteUrl | quote }}
- name: DEVICE_VERIFICATION_URI
  value: {{ .Values.publicUrls.deviceVerificationUri | quote }}
# prometheus_client multiprocess mode: gunicorn's workers write their samples here (the /tmp emptyDir).
- name: PROMETHEUS_MULTIPROC_DIR
  value: /tmp/prometheus-metrics
{{- end }}

{{/* Problems with the operations values, one line each (appended to storyverse.validateValues' list). */}}
{{- define "storyverse.ops.problems" -}}
{{- $s := .Values.mail.smtp -}}
{{- if not $s.host -}}
mail: set mail.smtp.host (e.g. email-smtp.eu-west-1.amazonaws.com); production refuses the in-memory outbox
{{ end -}}
{{- if not (has $s.security (list "starttls" "tls")) -}}
mail: mail.smtp.security must be starttls or tls (mail carries password-reset links)
{{ end -}}
{{- if and .Values.networkPolicy.enabled (not $s.cidrs) -}}
mail: networkPolicy.enabled needs mail.smtp.cidrs (the SMTP endpoint's CIDR blocks; SES has none fixed: 0.0.0.0/0)
{{ end -}}
{{- range $key := list "resetUrl" "familyInviteUrl" "deviceVerificationUri" -}}
{{- $url := index $.Values.publicUrls $key -}}
{{- if or (not (hasPrefix "https://" $url)) (regexMatch "^https://(localhost|127\\.|\\[::1\\]|0\\.0\\.0\\.0)" $url) -}}
publicUrls: publicUrls.{{ $key }} must be a public https URL, not {{ $url | quote }}
{{ end -}}
{{- end -}}
{{- end }}
