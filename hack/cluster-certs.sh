#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Certificates for Vessel in a real cluster, for those who do not use
# cert-manager: makes (or renews) two CAs and their certificates with
# openssl (ECDSA P-256, as the local control plane's launcher/pki), stores
# them as the Secrets manifests/cluster mounts, and sets the APIService's
# caBundle, with kubectl:
#
#   serving CA   -> vessel-apiserver-tls (tls.crt, tls.key): the
#                   vessel-apiserver's serving certificate for
#                   vessel-apiserver.vessel-system.svc; the CA becomes the
#                   caBundle of APIService v1alpha1.vessel.dev
#   agent CA     -> vessel-apiserver-agent-client (ca.crt, tls.crt, tls.key):
#                   the client certificate (CN vessel-apiserver) the
#                   apiserver presents to agents' stream servers, and the CA
#                   that verifies theirs
#                -> vessel-agent-signer (tls.crt, tls.key): the agent CA
#                   itself, with which the vessel-apiserver signs each
#                   agent's own serving certificate, requested through the
#                   CSR API (signer vessel.dev/agent-serving)
#                -> ConfigMap vessel-agent-client-ca (ca.crt): what agents
#                   admit the apiserver's client certificate with
#
# Keys and certificates are kept in DIR (default ./vessel-certs, private):
# a second run keeps the CAs and reissues the leaves, so it is also how to
# renew them. Nodes need nothing from here: each agent gets its own serving
# certificate through the CSR API.
#
#   usage: hack/cluster-certs.sh [--dir DIR] [--namespace NS]
#
# Environment: KUBECTL (default kubectl; honours KUBECONFIG), DAYS (leaf
# validity, default 365).
set -o errexit -o nounset -o pipefail
umask 077

dir=./vessel-certs
namespace=vessel-system
KUBECTL="${KUBECTL:-kubectl}"
DAYS="${DAYS:-365}"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--dir) dir=$2; shift 2 ;;
	--namespace) namespace=$2; shift 2 ;;
	*) echo "usage: $0 [--dir DIR] [--namespace NS]" >&2; exit 2 ;;
	esac
done
service="vessel-apiserver.${namespace}.svc"
log() { echo "cluster-certs: $*"; }
die() { echo "cluster-certs: ERROR: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl is needed"
mkdir -p "${dir}"

# ca NAME CN: a CA, kept when it exists.
ca() {
	local name=$1 cn=$2
	if [[ -s "${dir}/${name}.crt" && -s "${dir}/${name}.key" ]]; then
		return
	fi
	log "new CA ${cn}"
	openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
		-keyout "${dir}/${name}.key" -out "${dir}/${name}.crt" -days 3650 -subj "/CN=${cn}" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
}

# leaf NAME CA CN USAGE [SANS]: a certificate signed by CA, always reissued.
leaf() {
	local name=$1 ca=$2 cn=$3 usage=$4 sans=${5:-}
	local ext="${dir}/${name}.ext"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=${usage}"
		[[ -z "${sans}" ]] || echo "subjectAltName=${sans}"
	} >"${ext}"
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
		-keyout "${dir}/${name}.key" -out "${dir}/${name}.csr" -subj "/CN=${cn}" 2>/dev/null
	openssl x509 -req -in "${dir}/${name}.csr" -CA "${dir}/${ca}.crt" -CAkey "${dir}/${ca}.key" \
		-CAcreateserial -days "${DAYS}" -sha256 -extfile "${ext}" -out "${dir}/${name}.crt" 2>/dev/null
	rm -f "${dir}/${name}.csr" "${ext}"
}

# sans LIST: "DNS:a,IP:1.2.3.4" from "a,1.2.3.4".
sans() {
	local out="" h
	IFS=, read -ra hosts <<<"$1"
	for h in "${hosts[@]}"; do
		if [[ "${h}" =~ ^[0-9.]+$ || "${h}" == *:* ]]; then out+="IP:${h},"; else out+="DNS:${h},"; fi
	done
	echo "${out%,}"
}

ca serving-ca vessel-apiserver-serving-ca
ca agent-ca vessel-agent-ca
leaf apiserver serving-ca vessel-apiserver serverAuth "$(sans "${service},${service}.cluster.local")"
leaf apiserver-agent-client agent-ca vessel-apiserver clientAuth
log "certificates in ${dir}"

# secret NAME KEY=FILE...: created or replaced, as an apply would.
secret() {
	local name=$1
	shift
	local files=()
	for kv in "$@"; do files+=(--from-file="${kv}"); done
	"${KUBECTL}" create secret generic "${name}" -n "${namespace}" "${files[@]}" --dry-run=client -o yaml |
		"${KUBECTL}" apply --server-side --force-conflicts --field-manager=vessel-cluster-certs -f - >/dev/null
	log "secret ${namespace}/${name}"
}

"${KUBECTL}" get namespace "${namespace}" >/dev/null || die "namespace ${namespace} does not exist: kubectl apply -f install.yaml first"
"${KUBECTL}" create secret tls vessel-apiserver-tls -n "${namespace}" \
	--cert="${dir}/apiserver.crt" --key="${dir}/apiserver.key" --dry-run=client -o yaml | "${KUBECTL}" apply --server-side --force-conflicts --field-manager=vessel-cluster-certs -f - >/dev/null
log "secret ${namespace}/vessel-apiserver-tls"
secret vessel-apiserver-agent-client ca.crt="${dir}/agent-ca.crt" tls.crt="${dir}/apiserver-agent-client.crt" tls.key="${dir}/apiserver-agent-client.key"
secret vessel-agent-signer tls.crt="${dir}/agent-ca.crt" tls.key="${dir}/agent-ca.key"
"${KUBECTL}" create configmap vessel-agent-client-ca -n "${namespace}" --from-file=ca.crt="${dir}/agent-ca.crt" --dry-run=client -o yaml |
	"${KUBECTL}" apply --server-side --force-conflicts --field-manager=vessel-cluster-certs -f - >/dev/null
log "configmap ${namespace}/vessel-agent-client-ca"

"${KUBECTL}" patch apiservice v1alpha1.vessel.dev --type=merge \
	-p "{\"spec\":{\"caBundle\":\"$(base64 -w0 <"${dir}/serving-ca.crt")\"}}" >/dev/null
log "APIService v1alpha1.vessel.dev trusts ${dir}/serving-ca.crt"
