{{/* Names: <release>-dass (or the release name when it already says dass), per component. */}}
{{- define "dass.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dass.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dass.hub.name" -}}{{ include "dass.fullname" . }}-hub{{- end -}}
{{- define "dass.proxy.name" -}}{{ include "dass.fullname" . }}-proxy{{- end -}}
{{- define "dass.proxyApi.name" -}}{{ include "dass.fullname" . }}-proxy-api{{- end -}}
{{- define "dass.service.name" -}}{{ include "dass.fullname" . }}-service{{- end -}}
{{- define "dass.culler.name" -}}{{ include "dass.fullname" . }}-culler{{- end -}}
{{- define "dass.postgresql.name" -}}{{ include "dass.fullname" . }}-postgresql{{- end -}}
{{- define "dass.config.name" -}}{{ include "dass.fullname" . }}-config{{- end -}}
{{- define "dass.secret.name" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "dass.fullname" .)) -}}
{{- end -}}

{{/* Labels every object carries; selectorLabels pick one component's pods. */}}
{{- define "dass.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "dass.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dass.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dass.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A dass image: images.registry + name + ":" + (images.tag or appVersion). */}}
{{- define "dass.image" -}}
{{- $registry := .root.Values.images.registry -}}
{{- $prefix := ternary "" (printf "%s/" (trimSuffix "/" $registry)) (eq $registry "") -}}
{{- printf "%s%s:%s" $prefix .name (.root.Values.images.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{- define "dass.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The in-cluster URLs of the components. */}}
{{- define "dass.hub.url" -}}http://{{ include "dass.hub.name" . }}.{{ .Release.Namespace }}.svc:8081{{- end -}}
{{- define "dass.service.url" -}}http://{{ include "dass.service.name" . }}.{{ .Release.Namespace }}.svc:{{ .Values.service.port }}/services/dass/{{- end -}}

{{/* The non-root, unprivileged security context of every dass container. */}}
{{- define "dass.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "dass.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.sessions.uid }}
runAsGroup: {{ .Values.sessions.gid }}
fsGroup: {{ .Values.sessions.fsGid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Database URLs as environment variables (from the generated password or the external Secret). */}}
{{- define "dass.databaseEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: DASS_DB_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "dass.secret.name" . }}, key: postgres-password}
- name: DASS_HUB_DB_URL
  value: "postgresql+psycopg://dass:$(DASS_DB_PASSWORD)@{{ include "dass.postgresql.name" . }}:5432/jupyterhub"
- name: DASS_CATALOG_DB_URL
  value: "postgresql+psycopg://dass:$(DASS_DB_PASSWORD)@{{ include "dass.postgresql.name" . }}:5432/dass"
{{- else }}
- name: DASS_HUB_DB_URL
  valueFrom:
    secretKeyRef: {name: {{ required "set externalDatabase.existingSecret, or postgresql.enabled" .Values.externalDatabase.existingSecret }}, key: hub-db-url}
- name: DASS_CATALOG_DB_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.externalDatabase.existingSecret }}, key: catalog-db-url}
{{- end }}
{{- end -}}

{{/* Egress rules of sessions and job pods: the hub, the proxy, the dass service, DNS. */}}
{{- define "dass.egressToPlatform" -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "dass.selectorLabels" (dict "root" . "component" "hub") | nindent 10 }}
  ports:
    - {port: 8081, protocol: TCP}
- to:
    - podSelector:
        matchLabels:
          {{- include "dass.selectorLabels" (dict "root" . "component" "proxy") | nindent 10 }}
  ports:
    - {port: 8000, protocol: TCP}
- to:
    - podSelector:
        matchLabels:
          {{- include "dass.selectorLabels" (dict "root" . "component" "service") | nindent 10 }}
  ports:
    - {port: {{ .Values.service.port }}, protocol: TCP}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
{{- end -}}
