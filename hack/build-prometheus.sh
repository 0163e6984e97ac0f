#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the upstream Prometheus server and promtool from hack/tools/prometheus
# (their own Go module, so Prometheus' large dependency graph stays out of
# Vessel's go.mod) into _output/bin. e2e/metrics scrapes the local system with
# them. Skipped when both binaries are newer than the tool module; FORCE=1
# rebuilds anyway. The web UI's assets are not embedded (no builtinassets
# tag): the HTTP API, which the tests use, works without them. A cold build
# takes about 20 CPU-minutes (34 min wall on a busy 2-core machine).
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOL_DIR="${ROOT}/hack/tools/prometheus"
OUT_DIR="${OUT_DIR:-${ROOT}/_output/bin}"

up_to_date() {
	local bin f
	for bin in prometheus promtool; do
		[[ -x "${OUT_DIR}/${bin}" ]] || return 1
		for f in "${TOOL_DIR}"/go.mod "${TOOL_DIR}"/go.sum "${BASH_SOURCE[0]}"; do
			[[ "${OUT_DIR}/${bin}" -nt "${f}" ]] || return 1
		done
	done
}

if [[ "${FORCE:-0}" != 1 ]] && up_to_date; then
	echo "prometheus and promtool are up to date in ${OUT_DIR}"
	exit 0
fi

export GOWORK=off
mkdir -p "${OUT_DIR}"
version=$(go -C "${TOOL_DIR}" list -m -f '{{.Version}}' github.com/prometheus/prometheus)
start=${SECONDS}
# Prometheus' module versions are v0.3xx for Prometheus 3.x; the version it
# reports is set the way its own build (promu) sets it.
go -C "${TOOL_DIR}" build -trimpath \
	-ldflags "-s -w -X github.com/prometheus/common/version.Version=${version}" \
	-o "${OUT_DIR}/" \
	github.com/prometheus/prometheus/cmd/prometheus \
	github.com/prometheus/prometheus/cmd/promtool
echo "built prometheus and promtool ${version} in $((SECONDS - start))s"
