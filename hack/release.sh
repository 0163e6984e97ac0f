#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# `make release` (after `make images`): everything a GitHub release of
# VERSION carries, in OUT (default _output/release, replaced):
#
#   kubectl-vm_VERSION_OS_ARCH.tar.gz  the plugin for linux/darwin, amd64/arm64
#   vm.yaml                            krew plugin manifest (kubectl krew install --manifest=vm.yaml)
#   install.yaml                       manifests/cluster rendered by kustomize, with
#                                      the images just built pinned by digest
#   cluster-certs.sh                   hack/cluster-certs.sh: the certificates the
#                                      install guide makes without cert-manager
#   SHA256SUMS                         of all the above
#
# Archives are reproducible (sorted entries, numeric owners, file times and
# gzip header from SOURCE_DATE_EPOCH). The images themselves stay in
# _output/images; push them with their digests unchanged, e.g.
#   skopeo copy --preserve-digests oci:_output/images/vessel-apiserver:VERSION \
#       docker://IMAGE_REGISTRY/vessel-apiserver:VERSION
#
# Environment: VERSION, SOURCE_DATE_EPOCH (hack/version.sh), IMAGE_REGISTRY
# (must match `make images`), RELEASE_URL (where the archives will be
# downloaded from; default the GitHub release of VERSION), KUBECTL.
set -o errexit -o nounset -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/version.sh"
OUT="${OUT:-${ROOT}/_output/release}"
IMAGES="${IMAGES:-${ROOT}/_output/images}"
IMAGE_REGISTRY="${IMAGE_REGISTRY:-ghcr.io/vessel-vm}"
RELEASE_URL="${RELEASE_URL:-https://github.com/vessel-vm/vessel/releases/download/${VERSION}}"
KUBECTL="${KUBECTL:-kubectl}"
PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)

die() { echo "release: $*" >&2; exit 1; }

# The images must be this very build's: install.yaml names them.
for name in vessel-apiserver vessel-agent; do
	ref="${IMAGES}/${name}.ref"
	[[ -f "${ref}" ]] || die "${ref} is missing; run make images"
	case "$(cat "${ref}")" in
	"${IMAGE_REGISTRY}/${name}:${VERSION}@sha256:"*) ;;
	*) die "${ref} is $(cat "${ref}"), not ${IMAGE_REGISTRY}/${name}:${VERSION}; run make images with the same VERSION and IMAGE_REGISTRY" ;;
	esac
done

rm -rf "${OUT}"
mkdir -p "${OUT}"
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT

# reproducible_tgz DIR FILE: the files of DIR, as a tar.gz that depends only
# on their content and modes.
reproducible_tgz() {
	tar --sort=name --mtime="@${SOURCE_DATE_EPOCH}" --owner=0 --group=0 --numeric-owner \
		--format=gnu -C "$1" -cf - . | gzip -9 -n >"$2"
}

krew_platforms=""
for platform in "${PLATFORMS[@]}"; do
	os=${platform%/*} arch=${platform#*/}
	dir="${work}/kubectl-vm_${os}_${arch}"
	mkdir -p "${dir}"
	CGO_ENABLED=0 GOOS=${os} GOARCH=${arch} go -C "${ROOT}" build -trimpath -buildvcs=false -ldflags "-s -w" \
		-o "${dir}/kubectl-vm" ./cmd/kubectl-vm
	install -m 0644 "${ROOT}/LICENSE" "${dir}/LICENSE"
	archive="kubectl-vm_${VERSION}_${os}_${arch}.tar.gz"
	reproducible_tgz "${dir}" "${OUT}/${archive}"
	krew_platforms+="
  - selector:
      matchLabels: {os: ${os}, arch: ${arch}}
    uri: ${RELEASE_URL}/${archive}
    sha256: $(sha256sum "${OUT}/${archive}" | cut -d' ' -f1)
    bin: kubectl-vm
    files:
    - {from: kubectl-vm, to: .}
    - {from: LICENSE, to: .}"
done

cat >"${OUT}/vm.yaml" <<EOF
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: vm
spec:
  version: ${VERSION}
  homepage: https://github.com/vessel-vm/vessel
  shortDescription: Console, power actions and snapshots of Vessel VMs
  description: |
    Drives Vessel's VirtualMachines (vessel.dev/v1alpha1) the way kubectl
    drives pods: attach to a VM's serial console through the Kubernetes API
    (kubectl vm console NAME), print its console log, start, stop, restart,
    pause and unpause it, and take and restore snapshots. It needs Vessel
    installed in the cluster (install.yaml of the same release).
  platforms:${krew_platforms}
EOF

# install.yaml: manifests/cluster with this build's images by digest and
# the version as a label (not in selectors, which are immutable).
overlay="${ROOT}/_output/release-overlay"
rm -rf "${overlay}"
mkdir -p "${overlay}"
trap 'rm -rf "${work}" "${overlay}"' EXIT
{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	echo "resources:"
	echo "- ../../manifests/cluster"
	echo "images:"
	for name in vessel-apiserver vessel-agent; do
		echo "- name: ghcr.io/vessel-vm/${name}"
		echo "  newName: ${IMAGE_REGISTRY}/${name}"
		echo "  newTag: ${VERSION}"
		echo "  digest: $(cat "${IMAGES}/${name}.digest")"
	done
	echo "labels:"
	echo "- pairs: {app.kubernetes.io/version: ${VERSION}}"
} >"${overlay}/kustomization.yaml"
{
	echo "# Vessel ${VERSION} (${REVISION}): kubectl apply -f install.yaml"
	echo "# Rendered from manifests/cluster by hack/release.sh; see the README's \"In a real cluster\"."
	"${KUBECTL}" kustomize "${overlay}"
} >"${OUT}/install.yaml"
for name in vessel-apiserver vessel-agent; do
	want="image: $(cat "${IMAGES}/${name}.ref")"
	grep -qF "${want}" "${OUT}/install.yaml" || die "install.yaml lacks '${want}'"
done

install -m 0755 "${ROOT}/hack/cluster-certs.sh" "${OUT}/cluster-certs.sh"

(cd "${OUT}" && sha256sum -- *.tar.gz vm.yaml install.yaml cluster-certs.sh >SHA256SUMS)
echo "release ${VERSION} in ${OUT}:"
(cd "${OUT}" && ls -l)
