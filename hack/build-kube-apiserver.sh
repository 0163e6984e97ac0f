#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the upstream kube-apiserver from hack/tools/kube-apiserver (its own
# Go module, so k8s.io/kubernetes stays out of Vessel's go.mod) into
# _output/bin/kube-apiserver.
#
# A cold build takes several minutes, so the build is skipped when the binary
# is newer than every file of the tool module. Set FORCE=1 to rebuild anyway.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_DIR="${ROOT}/hack/tools/kube-apiserver"
OUT="${OUT:-${ROOT}/_output/bin/kube-apiserver}"

up_to_date() {
	[[ -x "${OUT}" ]] || return 1
	local f
	for f in "${TOOL_DIR}"/go.mod "${TOOL_DIR}"/go.sum "${TOOL_DIR}"/*.go "${BASH_SOURCE[0]}"; do
		[[ "${OUT}" -nt "${f}" ]] || return 1
	done
}

if [[ "${FORCE:-0}" != 1 ]] && up_to_date; then
	echo "kube-apiserver is up to date: ${OUT}"
	exit 0
fi

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

mkdir -p "$(dirname "${OUT}")"
echo "building kube-apiserver ${version} (a cold build takes several minutes)"
start=${SECONDS}
go -C "${TOOL_DIR}" build -trimpath -ldflags "${ldflags[*]}" -o "${OUT}" .
echo "built ${OUT} in $((SECONDS - start))s"
"${OUT}" --version
