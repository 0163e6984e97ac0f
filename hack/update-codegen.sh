#!/usr/bin/env bash
# Regenerates everything under generated/ and the zz_generated files in apis/
# with k8s.io/code-generator (the version pinned in go.mod).
set -o errexit -o nounset -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${ROOT}"
# `go list -m` never downloads: on an empty module cache it prints an empty
# directory. Download the pinned generator first (a no-op when cached), then
# ask where it is.
go mod download k8s.io/code-generator
CODEGEN_PKG=$(go list -m -f '{{.Dir}}' k8s.io/code-generator)
if [[ -z "${CODEGEN_PKG}" || ! -f "${CODEGEN_PKG}/kube_codegen.sh" ]]; then
    echo "k8s.io/code-generator is not in the module cache (${CODEGEN_PKG:-no directory}) after go mod download" >&2
    exit 1
fi
# Generators go to a private bin so a stale global one is never picked up.
export GOBIN="${ROOT}/_output/codegen-bin"
mkdir -p "${GOBIN}"
source "${CODEGEN_PKG}/kube_codegen.sh"

PKG=github.com/vessel-vm/vessel
BOILERPLATE="${ROOT}/hack/boilerplate.go.txt"

kube::codegen::gen_helpers --boilerplate "${BOILERPLATE}" "${ROOT}/apis"

kube::codegen::gen_openapi \
    --output-dir "${ROOT}/generated/openapi" \
    --output-pkg "${PKG}/generated/openapi" \
    --report-filename "${ROOT}/hack/api-rules-violations.list" \
    --update-report \
    --output-model-name-file "zz_generated.model_name.go" \
    --boilerplate "${BOILERPLATE}" \
    --extra-pkgs k8s.io/api/autoscaling/v1 \
    "${ROOT}/apis"

kube::codegen::gen_client \
    --with-watch \
    --with-applyconfig \
    --applyconfig-openapi-schema <(go run "${PKG}/generated/openapi/cmd/models-schema") \
    --output-dir "${ROOT}/generated" \
    --output-pkg "${PKG}/generated" \
    --boilerplate "${BOILERPLATE}" \
    "${ROOT}/apis"
