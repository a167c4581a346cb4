{{/*
Names, labels and shared snippets (the `helm create` skeleton's helpers, extended per component).
*/}}

{{/* The chart name (app.kubernetes.io/name is always llm-in-the-chat unless overridden). */}}
{{- define "llmchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified app name: truncated at 63 chars (DNS names); the release name alone when it
already contains the chart name.
*/}}
{{- define "llmchat.fullname" -}}
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

{{/* A component's resource name: `<fullname>-<component>`. */}}
{{- define "llmchat.componentName" -}}
{{- printf "%s-%s" (include "llmchat.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "llmchat.labels" -}}
helm.sh/chart: {{ include "llmchat.chart" . }}
{{ include "llmchat.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-in-the-chat
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels. */}}
{{- define "llmchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmchat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* A component's labels: include "llmchat.componentLabels" (dict "root" $ "component" "redis") */}}
{{- define "llmchat.componentLabels" -}}
{{ include "llmchat.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "llmchat.componentSelectorLabels" -}}
{{ include "llmchat.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image of every llm-in-the-chat component. */}}
{{- define "llmchat.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "llmchat.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "llmchat.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmchat.chatService.serviceAccountName" -}}
{{- if .Values.chatService.serviceAccount.create }}
{{- default (include "llmchat.componentName" (dict "root" . "component" "chat-service")) .Values.chatService.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.chatService.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmchat.rooms.serviceAccountName" -}}
{{- if .Values.rooms.serviceAccount.create }}
{{- default (include "llmchat.componentName" (dict "root" . "component" "room")) .Values.rooms.serviceAccount.name }}
{{- else }}
{{- .Values.rooms.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret of chat-service's token-signing key and admin token. */}}
{{- define "llmchat.auth.secretName" -}}
{{- default (include "llmchat.componentName" (dict "root" . "component" "auth")) .Values.auth.existingSecret }}
{{- end }}

{{/*
"true" when the generated auth Secret outlives `helm uninstall`: as long as the conversations do
(the in-cluster Redis' volume is kept, or the Redis is external), so that members' tokens stay
valid on a reinstall.
*/}}
{{- define "llmchat.auth.keep" -}}
{{- if or (not .Values.redis.enabled) (and .Values.redis.persistence.enabled (not .Values.redis.persistence.deleteOnUninstall)) }}true{{- end }}
{{- end }}

{{/* chat-service's authentication env: the keys only through secretKeyRef, never as values. */}}
{{- define "llmchat.authEnv" -}}
- name: LLMCHAT_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "llmchat.auth.secretName" . }}
      key: {{ .Values.auth.tokenSecretKey }}
- name: LLMCHAT_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "llmchat.auth.secretName" . }}
      key: {{ .Values.auth.adminTokenKey }}
      # an existing Secret may have no admin token (then there is no admin)
      optional: true
- name: LLMCHAT_OPEN_SIGNUP
  value: {{ .Values.auth.openSignup | quote }}
{{- end }}

{{/* Service names. */}}
{{- define "llmchat.redis.host" -}}
{{- include "llmchat.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{- define "llmchat.ollama.url" -}}
{{- printf "http://%s:%v" (include "llmchat.componentName" (dict "root" . "component" "ollama")) .Values.ollama.port }}
{{- end }}

{{/* The Secret with Redis' password and the URL that carries it (redis.auth.enabled). */}}
{{- define "llmchat.redis.secretName" -}}
{{- include "llmchat.componentName" (dict "root" . "component" "redis") }}
{{- end }}

{{/* The plain Redis URL (no password in it), when there is one. */}}
{{- define "llmchat.redis.url" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s.%s.svc:%v/0" (include "llmchat.redis.host" .) .Release.Namespace .Values.redis.port }}
{{- else }}
{{- .Values.externalRedis.url }}
{{- end }}
{{- end }}

{{/*
The Secret (name and key) that holds the Redis URL, when it comes from one: the generated
password of the in-cluster Redis, or externalRedis.existingSecret. Empty: a plain URL.
*/}}
{{- define "llmchat.redis.urlSecret" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled }}
{{- toJson (dict "name" (include "llmchat.redis.secretName" .) "key" "redis-url") }}
{{- else if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- toJson (dict "name" .Values.externalRedis.existingSecret "key" .Values.externalRedis.existingSecretKey) }}
{{- end }}
{{- end }}

{{/* The env var LLMCHAT_REDIS_URL: from its Secret (a password in it), else the plain URL. */}}
{{- define "llmchat.redisUrlEnv" -}}
- name: LLMCHAT_REDIS_URL
{{- with include "llmchat.redis.urlSecret" . }}
{{- $ref := fromJson . }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- else }}
  value: {{ include "llmchat.redis.url" . | quote }}
{{- end }}
{{- end }}

{{/*
What the operator passes on to the room pods: the Secret of the Redis URL (they read it by
secretKeyRef in their own namespace; the operator itself never sees the password), else the URL.
*/}}
{{- define "llmchat.operator.redisEnv" -}}
{{- with include "llmchat.redis.urlSecret" . }}
{{- $ref := fromJson . }}
- name: LLMCHAT_CHILD_REDIS_SECRET
  value: {{ $ref.name | quote }}
- name: LLMCHAT_CHILD_REDIS_SECRET_KEY
  value: {{ $ref.key | quote }}
{{- else }}
- name: LLMCHAT_REDIS_URL
  value: {{ include "llmchat.redis.url" . | quote }}
{{- end }}
{{- end }}

{{/* The /tmp emptyDir every read-only-root container mounts. */}}
{{- define "llmchat.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{/*
Values the schema cannot check (cross-field rules): fail with a message naming the value.
*/}}
{{- define "llmchat.validateValues" -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) (not .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled is false, so set externalRedis.url (e.g. redis://my-redis:6379/0) or externalRedis.existingSecret" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "externalRedis is set but redis.enabled is true: set redis.enabled=false to use the external Redis" }}
{{- end }}
{{- if not (lt (float64 .Values.operator.lease.renewSeconds) (float64 .Values.operator.lease.durationSeconds)) }}
{{- fail (printf "operator.lease.renewSeconds (%v) must be shorter than operator.lease.durationSeconds (%v)" .Values.operator.lease.renewSeconds .Values.operator.lease.durationSeconds) }}
{{- end }}
{{- if and .Values.ollama.enabled (not .Values.ollama.models) }}
{{- fail "ollama.enabled is true but ollama.models is empty: list at least one model to pull (e.g. qwen2.5:0.5b)" }}
{{- end }}
{{- end }}

{{/* What the operator needs where rooms live, verb by verb from its code (kopf's watches and
operator/chatroom_operator/kube.py): the rooms, their children, the Secrets they reference (read,
to check the keys exist) and Events. Nothing else: no pods, no nodes, no wildcards. */}}
{{- define "llmchat.operator.roomRules" -}}
- apiGroups: ["llmchat.io"]
  resources: ["chatrooms"]
  # list/watch: kopf; patch: kopf's annotations (progress, last-handled configuration)
  verbs: ["list", "watch", "patch"]
- apiGroups: ["llmchat.io"]
  resources: ["chatrooms/status"]
  verbs: ["patch"]
- apiGroups: ["llmchat.io"]
  resources: ["chatrooms/finalizers"]
  # the children's ownerReferences set blockOwnerDeletion, which API servers with the
  # OwnerReferencesPermissionEnforcement admission plugin allow only with this
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  # list/watch: kopf's index; create + patch: server-side apply; delete: a model removed
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  # server-side apply of the room's config
  verbs: ["create", "patch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  # list/watch: kopf's index (who leads); create: a room's Leases (their holders write them)
  verbs: ["list", "watch", "create"]
- apiGroups: [""]
  resources: ["secrets"]
  # one by name: does the Secret a room names exist, with its key? (never list)
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  # kopf's and the reconciler's core/v1 Events
  verbs: ["create"]
{{- end }}

{{/* Ollama's environment: models on the volume, its key and state under /tmp (read-only root). */}}
{{- define "llmchat.ollama.env" -}}
- name: OLLAMA_HOST
  value: {{ printf "0.0.0.0:%v" .Values.ollama.port | quote }}
- name: OLLAMA_MODELS
  value: /models
- name: HOME
  value: /tmp
- name: OLLAMA_KEEP_ALIVE
  value: {{ .Values.ollama.keepAlive | quote }}
- name: OLLAMA_NUM_PARALLEL
  value: {{ .Values.ollama.numParallel | quote }}
{{- end }}
