#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# `make images`: builds the vessel-apiserver and vessel-agent OCI images
# without a container daemon. Each image is a base layer (the apiserver's
# distroless-like one from hack/images/apiserver-base.sh, the agent's Debian
# one from hack/images/agent-base.sh, both pinned by lock files) plus one
# layer with the static Go binary, assembled by hack/tools/images
# (go-containerregistry, as ko does). For each NAME, under OUT:
#
#   NAME/             OCI image layout (tag: VERSION)
#   NAME.tar          docker-archive tarball (docker load, skopeo docker-archive:)
#   NAME.spdx.json    SPDX SBOM: Debian packages and Go modules in the image
#   NAME.digest       manifest digest; NAME.ref: REPOSITORY:TAG@DIGEST
#
# Reproducible: the same commit (hack/version.sh) and locks give the same
# digests. Cached: bases are rebuilt only when their script or lock changes,
# images only when a layer or a setting does.
#
# Environment: OUT (default _output/images), CACHE_DIR (base layers and
# downloaded packages, default OUT/cache), IMAGE_REGISTRY (default
# ghcr.io/vessel-vm), VERSION, SOURCE_DATE_EPOCH, UPDATE_LOCK=1 (re-resolve
# the bases' packages and rewrite hack/images/*.lock), DEBIAN_MIRROR.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/version.sh"
OUT="${OUT:-${ROOT}/_output/images}"
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/vessel-vm}"
export CACHE_DIR="${CACHE_DIR:-${OUT}/cache}"
export IMAGES_TOOL="${ROOT}/_output/tools/images"
mkdir -p "${OUT}/bin" "${CACHE_DIR}"
start=${SECONDS}

"${ROOT}/hack/install-image-tools.sh"

GOWORK=off go -C "${ROOT}/hack/tools/images" build -trimpath -o "${IMAGES_TOOL}" .

# Static binaries; -trimpath and no VCS stamping keep them independent of
# where and when they are built.
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go -C "${ROOT}" build -trimpath -buildvcs=false -ldflags "-s -w" \
	-o "${OUT}/bin/" ./cmd/vessel-apiserver ./cmd/vessel-agent

# cached KEYFILE KEY CMD...: runs CMD unless KEYFILE holds KEY from an
# earlier run whose outputs are still there (the caller checks them).
cached() {
	local keyfile=$1 key=$2
	shift 2
	if [[ "${UPDATE_LOCK:-0}" != 1 && -f "${keyfile}" && "$(cat "${keyfile}")" == "${key}" ]]; then
		return 0
	fi
	rm -f "${keyfile}"
	"$@"
	echo "${key}" >"${keyfile}"
}

# base NAME: the base layer, rebuilt when its script, lock or the layer
# writer changes.
base() {
	local name=$1 layer="${CACHE_DIR}/$1-base.tar.gz"
	local key
	base_key() {
		cat "${ROOT}/hack/images/${name}-base.sh" "${ROOT}/hack/images/lib.sh" "${ROOT}/hack/images/${name}-base.lock" \
			"${ROOT}"/hack/tools/images/{go.sum,layer.go} | sha256sum | cut -d' ' -f1
	}
	key=$(base_key)
	[[ -f "${layer}" ]] || rm -f "${layer}.key"
	local t=${SECONDS}
	cached "${layer}.key" "${key}" "${ROOT}/hack/images/${name}-base.sh" "${layer}"
	if [[ "${UPDATE_LOCK:-0}" == 1 ]]; then
		base_key >"${layer}.key"
	fi
	echo "${name} base layer: ${layer} ($((SECONDS - t))s)"
}

# image NAME BASE USER DESCRIPTION: the binary's layer on the base, then
# the image.
image() {
	local name=$1 base_name=$2 user=$3 description=$4
	local bin="${OUT}/bin/${name}" base="${CACHE_DIR}/${base_name}-base.tar.gz" top="${CACHE_DIR}/${name}-bin.tar.gz"
	local bin_key
	bin_key=$( (sha256sum <"${bin}"; echo "${SOURCE_DATE_EPOCH}"; cat "${ROOT}/hack/tools/images/layer.go") | sha256sum | cut -d' ' -f1)
	[[ -f "${top}" ]] || rm -f "${top}.key"
	cached "${top}.key" "${bin_key}" "${IMAGES_TOOL}" layer --file "usr/local/bin/${name}=${bin}:0755" \
		--epoch "${SOURCE_DATE_EPOCH}" --out "${top}" >/dev/null

	local args=(
		--layer "${base}" --history "hack/images/${base_name}-base.sh"
		--layer "${top}" --history "/usr/local/bin/${name}: go build ./cmd/${name}"
		--name "${IMAGE_REGISTRY}/${name}" --tag "${VERSION}" --platform linux/amd64
		--entrypoint "/usr/local/bin/${name}" --workdir /
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		--label "org.opencontainers.image.title=${name}"
		--label "org.opencontainers.image.description=${description}"
		--label "org.opencontainers.image.source=https://github.com/vessel-vm/vessel"
		--label "org.opencontainers.image.version=${VERSION}"
		--label "org.opencontainers.image.revision=${REVISION}"
		--label "org.opencontainers.image.created=$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
		--label "org.opencontainers.image.licenses=Apache-2.0"
		--epoch "${SOURCE_DATE_EPOCH}"
		--oci-layout "${OUT}/${name}" --docker-archive "${OUT}/${name}.tar"
		--sbom "${OUT}/${name}.spdx.json" --digest-file "${OUT}/${name}.digest"
	)
	if [[ -n "${user}" ]]; then
		args+=(--user "${user}")
	fi
	local key
	key=$( (printf '%s\n' "${args[@]}"; sha256sum "${base}" "${top}" "${IMAGES_TOOL}") | sha256sum | cut -d' ' -f1)
	for f in "${OUT}/${name}/index.json" "${OUT}/${name}.tar" "${OUT}/${name}.spdx.json" "${OUT}/${name}.ref"; do
		[[ -f "${f}" ]] || rm -f "${OUT}/${name}.key"
	done
	cached "${OUT}/${name}.key" "${key}" build_image "${name}" "${args[@]}"
	echo "${name}: $(cat "${OUT}/${name}.ref")"
}

build_image() {
	local name=$1
	shift
	"${IMAGES_TOOL}" build "$@" >"${OUT}/${name}.ref.tmp"
	mv "${OUT}/${name}.ref.tmp" "${OUT}/${name}.ref"
}

base apiserver
base agent
# The apiserver runs as nonroot; the agent drives the host's root-owned
# libvirtd socket and /var/lib/vessel, so it runs as root (privileged).
image vessel-apiserver apiserver 65532:65532 "Vessel's aggregated API server for vessel.dev (VirtualMachines as Kubernetes API objects)"
image vessel-agent agent "" "Vessel's node agent: runs the VirtualMachines bound to its Hypervisor with the host's libvirtd"
echo "images ${VERSION} in ${OUT} ($((SECONDS - start))s)"
