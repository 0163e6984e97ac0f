#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the upstream etcd server from hack/tools/etcd (its own Go module, so
# etcd's main package and dependencies stay out of Vessel's go.mod) into
# _output/bin/etcd. The build is skipped when the binary is newer than the
# tool module; set FORCE=1 to rebuild anyway.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_DIR="${ROOT}/hack/tools/etcd"
OUT="${OUT:-${ROOT}/_output/bin/etcd}"

up_to_date() {
	[[ -x "${OUT}" ]] || return 1
	local f
	for f in "${TOOL_DIR}"/go.mod "${TOOL_DIR}"/go.sum "${BASH_SOURCE[0]}"; do
		[[ "${OUT}" -nt "${f}" ]] || return 1
	done
}

if [[ "${FORCE:-0}" != 1 ]] && up_to_date; then
	echo "etcd is up to date: ${OUT}"
	exit 0
fi

export GOWORK=off
mkdir -p "$(dirname "${OUT}")"
start=${SECONDS}
# etcd's version is a constant in its api module, so no -X flags are needed.
go -C "${TOOL_DIR}" build -trimpath -ldflags "-s -w" -o "${OUT}" go.etcd.io/etcd/server/v3
echo "built ${OUT} in $((SECONDS - start))s"
"${OUT}" --version
