#!/usr/bin/env bash
# Fails when the generated code in the tree is not what hack/update-codegen.sh
# produces: generated code is never edited by hand.
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
"${ROOT}/hack/update-codegen.sh" >/dev/null
changed=$(git status --porcelain -- apis generated hack/api-rules-violations.list)
if [[ -n "${changed}" ]]; then
    echo "Generated code is stale; run 'make generate' and commit:" >&2
    echo "${changed}" >&2
    git --no-pager diff --stat -- apis generated >&2
    exit 1
fi
echo "generated code is up to date"
