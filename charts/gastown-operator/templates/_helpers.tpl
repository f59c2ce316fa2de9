{{/* Chart name, overridable with nameOverride. */}}
{{- define "gastown-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: fullnameOverride, else the release name if it already contains the chart name,
else "<release>-<chart>". Truncated to 63 characters (DNS-1123 label).
*/}}
{{- define "gastown-operator.fullname" -}}
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

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "gastown-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "gastown-operator.labels" -}}
helm.sh/chart: {{ include "gastown-operator.chart" . }}
{{ include "gastown-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gastown-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the controller pods (immutable once installed). */}}
{{- define "gastown-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gastown-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller's ServiceAccount name. */}}
{{- define "gastown-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gastown-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the controller runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Kubernetes user name of the controller, as the policy sees it in admission requests. */}}
{{- define "gastown-operator.controllerUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "gastown-operator.serviceAccountName" .) }}
{{- end }}

{{/* The controller image reference: digest wins over tag; tag defaults to appVersion. */}}
{{- define "gastown-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: forced by the value or implied by replicas > 1. */}}
{{- define "gastown-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/* The Lease name. */}}
{{- define "gastown-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "gastown-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* "cluster" or "namespaced": where the Automaton rules are granted. */}}
{{- define "gastown-operator.rbacScope" -}}
{{- if eq .Values.rbac.scope "auto" }}
{{- if .Values.watchNamespaces }}namespaced{{ else }}cluster{{ end }}
{{- else }}
{{- .Values.rbac.scope }}
{{- end }}
{{- end }}

{{/*
The namespaces the controller watches, as a JSON list; empty means all. A namespaced scope
without a list watches the release namespace only (that is where its Role would be).
*/}}
{{- define "gastown-operator.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else if eq (include "gastown-operator.rbacScope" .) "namespaced" }}
{{- list .Release.Namespace | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/* True when the proxy transport is used. */}}
{{- define "gastown-operator.useProxy" -}}
{{- if eq .Values.gastown.transport "proxy" }}true{{ end }}
{{- end }}

{{/* The gt-proxy-server URL; rendering fails with a clear message when it is missing. */}}
{{- define "gastown-operator.proxyUrl" -}}
{{- required "gastown.proxy.url is required with gastown.transport=proxy: set it to the gt-proxy-server URL, e.g. --set gastown.proxy.url=https://gastown.example.com:9876" .Values.gastown.proxy.url }}
{{- end }}

{{/* The Secret with the proxy client certificate; rendering fails when it is missing. */}}
{{- define "gastown-operator.proxySecret" -}}
{{- required "gastown.proxy.existingSecret is required with gastown.transport=proxy: name a Secret in the release namespace with the keys tls.crt, tls.key and ca.crt" .Values.gastown.proxy.existingSecret }}
{{- end }}

{{/* The TCP port of the gt-proxy-server URL (443 when the URL names none). */}}
{{- define "gastown-operator.proxyPort" -}}
{{- $host := (urlParse (include "gastown-operator.proxyUrl" .)).host }}
{{- $port := regexFind ":[0-9]+$" $host | trimPrefix ":" }}
{{- default "443" $port }}
{{- end }}

{{/* The Kubewarden policy module reference. */}}
{{- define "gastown-operator.policyModule" -}}
{{- default (printf "registry://ghcr.io/gastown-operator/policies/gastown-claim:v%s" .Chart.AppVersion) .Values.policy.module }}
{{- end }}

{{/* "true" when the policy counts claims: the single-town limit or any town's. */}}
{{- define "gastown-operator.claimLimit" -}}
{{- $s := .Values.policy.settings }}
{{- if not (kindIs "invalid" $s.maxActiveClaimsPerNamespace) }}true{{ end }}
{{- range ($s.towns | default list) }}{{ if not (kindIs "invalid" .maxActiveClaims) }}true{{ end }}{{ end }}
{{- end }}

{{/*
Fails on policy.settings the chart can tell are wrong before the policy loads them: the
single-town fields next to towns (the policy refuses the mix), a town without controllerUsers
(the chart cannot know other releases' ServiceAccounts), and this release's own town missing or
not listing this release's controller. The policy checks the rest (duplicate names, a rig in two
towns, defaultTown naming no town).
*/}}
{{- define "gastown-operator.checkTowns" -}}
{{- $s := .Values.policy.settings }}
{{- $towns := $s.towns | default list }}
{{- if not $towns }}
{{- if $s.defaultTown }}
{{- fail "policy.settings.defaultTown needs policy.settings.towns: with a single town every claim goes to gastown.claimer" }}
{{- end }}
{{- else }}
{{- range $field, $perTown := dict "allowedUsers" "allowedUsers" "allowedGroups" "allowedGroups" "extraControllerUsers" "controllerUsers" }}
{{- if index $s $field }}
{{- fail (printf "policy.settings.%s cannot be combined with policy.settings.towns: set towns[].%s for each town instead" $field $perTown) }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" $s.maxActiveClaimsPerNamespace) }}
{{- fail "policy.settings.maxActiveClaimsPerNamespace cannot be combined with policy.settings.towns: set towns[].maxActiveClaims for each town instead" }}
{{- end }}
{{- $own := "" }}
{{- range $i, $town := $towns }}
{{- if not $town.controllerUsers }}
{{- fail (printf "policy.settings.towns[%d] (%s) has no controllerUsers: list the user its controller runs as, system:serviceaccount:<that town's release namespace>:<its ServiceAccount> (NOTES of its release print it as Identity)" $i $town.name) }}
{{- end }}
{{- if eq $town.name $.Values.gastown.claimer }}{{ $own = $town }}{{ end }}
{{- end }}
{{- $me := include "gastown-operator.controllerUser" . }}
{{- if not $own }}
{{- fail (printf "policy.settings.towns has no town named %q (gastown.claimer): list this release's own town too" .Values.gastown.claimer) }}
{{- end }}
{{- if not (has $me $own.controllerUsers) }}
{{- fail (printf "policy.settings.towns: town %q does not list this release's controller %q in controllerUsers: the policy would refuse its status writes" $own.name $me) }}
{{- end }}
{{- end }}
{{- end }}
