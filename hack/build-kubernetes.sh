#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the upstream kube-apiserver and kube-controller-manager from
# hack/tools/kubernetes (its own Go module, so k8s.io/kubernetes stays out of
# Vessel's go.mod) into _output/bin/.
#
# A cold build takes several minutes, so a binary is rebuilt only when it is
# older than a file of the tool module. Set FORCE=1 to rebuild anyway.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_DIR="${ROOT}/hack/tools/kubernetes"
BIN_DIR="${BIN_DIR:-${ROOT}/_output/bin}"

up_to_date() {
	local out=$1
	[[ -x "${out}" ]] || return 1
	local f
	for f in "${TOOL_DIR}"/go.mod "${TOOL_DIR}"/go.sum "${TOOL_DIR}"/*.go "${BASH_SOURCE[0]}"; do
		[[ "${out}" -nt "${f}" ]] || return 1
	done
}

# The tool module must never be built in a workspace that includes Vessel.
export GOWORK=off

# Version strings come from the pinned module itself so that they cannot drift
# from go.mod. Without them the binary reports v0.0.0-master, which breaks
# version-skew checks in clients and aggregated servers.
read -r version build_date < <(
	go -C "${TOOL_DIR}" list -m \
		-f '{{.Version}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes
)
if [[ ! "${version}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+ ]]; then
	echo "unexpected k8s.io/kubernetes version ${version}" >&2
	exit 1
fi
major="${BASH_REMATCH[1]}"
minor="${BASH_REMATCH[2]}"

# Same variables as kubernetes' hack/lib/version.sh, in both packages that
# carry them (client-go's copy is what the User-Agent reports).
ldflags=(-s -w)
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=(
		-X "${pkg}.gitVersion=${version}"
		-X "${pkg}.gitMajor=${major}"
		-X "${pkg}.gitMinor=${minor}"
		-X "${pkg}.gitTreeState=clean"
		-X "${pkg}.buildDate=${build_date}"
	)
done

mkdir -p "${BIN_DIR}"
# kube-apiserver is this module's main package; kube-controller-manager is
# built straight from k8s.io/kubernetes (tools.go pins its dependencies).
for target in kube-apiserver:. kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager; do
	name=${target%%:*}
	pkg=${target#*:}
	out="${BIN_DIR}/${name}"
	if [[ "${FORCE:-0}" != 1 ]] && up_to_date "${out}"; then
		echo "${name} is up to date: ${out}"
		continue
	fi
	echo "building ${name} ${version} (a cold build takes several minutes)"
	start=${SECONDS}
	go -C "${TOOL_DIR}" build -trimpath -ldflags "${ldflags[*]}" -o "${out}" "${pkg}"
	echo "built ${out} in $((SECONDS - start))s"
	"${out}" --version
done
