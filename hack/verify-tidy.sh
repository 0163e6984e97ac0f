#!/usr/bin/env bash
# Fails when `go mod tidy` would change go.mod or go.sum of Vessel's module
# or of the tool modules under hack/tools (a dependency imported directly
# but marked indirect, a missing checksum, a module no longer used).
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
status=0
for dir in "${ROOT}" "${ROOT}"/hack/tools/*/; do
    [[ -f "${dir}/go.mod" ]] || continue
    if ! diff=$(cd "${dir}" && GOWORK=off go mod tidy -diff 2>&1); then
        echo "go mod tidy would change ${dir#"${ROOT}"/}go.mod/go.sum; run it there and commit:" >&2
        echo "${diff}" >&2
        status=1
    fi
done
[[ ${status} -eq 0 ]] && echo "go.mod and go.sum are tidy"
exit ${status}
