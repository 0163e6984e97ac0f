#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the vessel-agent's base layer: a Debian root filesystem made by
# mmdebstrap (essential packages plus ROOTS and their dependencies, no
# recommends, no manuals or translations), every package pinned by
# agent-base.lock. libvirtd and QEMU's guests run on the host; the image
# holds only what the agent itself executes.
#
#   usage: agent-base.sh LAYER.tar.gz
#
# Environment: IMAGES_TOOL (the hack/tools/images binary), CACHE_DIR (the
# downloaded packages are kept there between builds), UPDATE_LOCK=1 to
# resolve ROOTS afresh and rewrite the lock, DEBIAN_MIRROR (see lib.sh).
set -o errexit -o nounset -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "${HERE}/lib.sh"

# What the agent runs. Add here what it comes to need (and say why).
ROOTS=(
	qemu-utils      # qemu-img: overlays, blank disks, inspecting imported images
	genisoimage     # cloud-init NoCloud seed ISOs
	qemu-system-x86 # the KVM probe boots a kernel with -accel kvm before trusting KVM
	ca-certificates # image downloads over HTTPS
	# prlimit (limits on qemu-img for untrusted images) is in util-linux,
	# which is essential.
)
LOCK="${HERE}/agent-base.lock"

out=${1:?usage: agent-base.sh LAYER.tar.gz}
: "${IMAGES_TOOL:?IMAGES_TOOL must name the hack/tools/images binary}"
cache="${CACHE_DIR:?}/agent-debs"
mkdir -p "${cache}"
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT

mapfile -t sources < <(debian_sources)

# make_rootfs INCLUDE EPOCH: the root filesystem with the packages INCLUDE
# (comma-separated) and their dependencies, as work/rootfs.tar, and its
# package=version list as work/packages.
#
# Debian's documented way to a reproducible tarball: SOURCE_DATE_EPOCH.
# The package cache is synced in and out so that a rebuild downloads
# nothing; /etc/hostname and /etc/resolv.conf are the build host's and are
# emptied (runtimes mount their own).
make_rootfs() {
	local include=$1 epoch=$2
	if ! SOURCE_DATE_EPOCH=${epoch} mmdebstrap \
		--mode=root --variant=essential --format=tar --architectures="${IMAGE_ARCH}" \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--include="${include}" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-include=/usr/share/locale/locale.alias' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--skip=download/empty --skip=essential/unlink \
		--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
		--setup-hook="sync-in ${cache} /var/cache/apt/archives/" \
		--customize-hook="sync-out /var/cache/apt/archives ${cache}" \
		--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
		--customize-hook=': > "$1"/etc/hostname; : > "$1"/etc/resolv.conf' \
		--customize-hook="dpkg-query --admindir=\"\$1\"/var/lib/dpkg -W -f='\${Package}=\${Version}\n' > ${work}/packages" \
		"${DEBIAN_SUITE}" "${work}/rootfs.tar" "${sources[@]}" >"${work}/log" 2>&1; then
		tail -30 "${work}/log" >&2
		pinned_version_gone_hint
		exit 1
	fi
}

if [[ "${UPDATE_LOCK:-0}" == 1 ]]; then
	# Resolve ROOTS to the mirror's current versions and pin them all. The
	# layer is then built from the lock like any other build: a root
	# filesystem resolved from ROOTS differs from a pinned one (apt records
	# which packages were pulled in as dependencies).
	make_rootfs "$(IFS=,; echo "${ROOTS[*]}")" "$(date +%s)"
	write_lock "${LOCK}" "$(date +%s)" "Debian packages of the vessel-agent base image (hack/images/agent-base.sh)." <"${work}/packages"
	echo "agent-base: wrote ${LOCK} ($(wc -l <"${work}/packages") packages)"
fi
epoch=$(lock_epoch "${LOCK}")
make_rootfs "$(lock_packages "${LOCK}" | paste -sd,)" "${epoch}"
check_lock "${LOCK}" "${work}/packages"
"${IMAGES_TOOL}" layer --from-tar "${work}/rootfs.tar" --epoch "${epoch}" --out "${out}"
