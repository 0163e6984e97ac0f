#!/usr/bin/env bash
# Fails when the generated code in the tree is not what hack/update-codegen.sh
# produces: generated code is never edited by hand.
#
# With --fresh-module-cache the generators run against an empty, temporary
# Go module cache, as on a new machine: a script that only works because a
# module happens to be cached already (`go list -m` does not download)
# fails here instead of on a user's first `make test`. CI runs it this way.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"

if [[ "${1:-}" == "--fresh-module-cache" ]]; then
    GOMODCACHE=$(mktemp -d "${TMPDIR:-/tmp}/vessel-modcache.XXXXXX")
    export GOMODCACHE
    # Module files are read-only; -modcacherw lets the trap remove them.
    export GOFLAGS="${GOFLAGS:-} -modcacherw"
    trap 'rm -rf "${GOMODCACHE}"' EXIT
    echo "verifying generated code with an empty module cache (${GOMODCACHE})"
fi

"${ROOT}/hack/update-codegen.sh" >/dev/null
changed=$(git status --porcelain -- apis generated hack/api-rules-violations.list)
if [[ -n "${changed}" ]]; then
    echo "Generated code is stale; run 'make generate' and commit:" >&2
    echo "${changed}" >&2
    git --no-pager diff --stat -- apis generated >&2
    exit 1
fi
echo "generated code is up to date"
