#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Builds the vessel-apiserver's base layer, distroless-like: no shell, no
# package manager, only the files of ROOTS (unpacked, not installed: none of
# them needs a maintainer script but ca-certificates, whose bundle is made
# here), a root and a nonroot (65532) user, /tmp, and one dpkg status file
# per package in /var/lib/dpkg/status.d, as distroless keeps them, so that
# scanners see what is there. Every package is pinned by apiserver-base.lock.
#
#   usage: apiserver-base.sh LAYER.tar.gz
#
# Environment: as agent-base.sh.
set -o errexit -o nounset -o pipefail
# Files made here get the same modes on every build host.
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "${HERE}/lib.sh"

ROOTS=(
	base-files      # /etc/os-release, the FHS directories
	netbase         # /etc/services, /etc/protocols
	tzdata          # /usr/share/zoneinfo
	ca-certificates # /etc/ssl/certs/ca-certificates.crt (TLS to etcd and webhooks)
)
LOCK="${HERE}/apiserver-base.lock"
NONROOT=65532

out=${1:?usage: apiserver-base.sh LAYER.tar.gz}
: "${IMAGES_TOOL:?IMAGES_TOOL must name the hack/tools/images binary}"
cache="${CACHE_DIR:?}/apiserver-debs"
apt_dir="${CACHE_DIR}/apt"
mkdir -p "${cache}" "${apt_dir}"/{lists/partial,archives/partial,sources.list.d}
work=$(mktemp -d)
trap 'rm -rf "${work}"' EXIT

# A private apt configuration: the same mirror as the agent's base, not
# whatever the build host's sources.list says.
debian_sources >"${apt_dir}/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=${apt_dir}/sources.list"
	-o "Dir::Etc::SourceParts=${apt_dir}/sources.list.d"
	-o "Dir::State::Lists=${apt_dir}/lists"
	-o "Dir::Cache=${apt_dir}"
	-o "Dir::Cache::Archives=${apt_dir}/archives"
	-o "APT::Architecture=${IMAGE_ARCH}"
	-o "Debug::NoLocking=1"
	# The cache is root's; apt's unprivileged download user cannot write it.
	-o "APT::Sandbox::User=root"
)

if [[ "${UPDATE_LOCK:-0}" == 1 ]]; then
	apt-get "${apt_opts[@]}" update -qq
	epoch=$(date +%s)
	for p in "${ROOTS[@]}"; do
		echo "${p}=$(apt-cache "${apt_opts[@]}" show --no-all-versions "${p}" | sed -n 's/^Version: //p')"
	done >"${work}/packages"
	write_lock "${LOCK}" "${epoch}" "Debian packages of the vessel-apiserver base image (hack/images/apiserver-base.sh)." <"${work}/packages"
	echo "apiserver-base: wrote ${LOCK}"
fi
epoch=$(lock_epoch "${LOCK}")
mapfile -t pinned < <(lock_packages "${LOCK}")

# Download what the cache lacks (apt-get download names files
# <package>_<version with : as %3a>_<arch>.deb).
debs=()
updated=0
for pv in "${pinned[@]}"; do
	p=${pv%%=*} v=${pv#*=}
	deb=$(ls "${cache}/${p}_${v/:/%3a}"_*.deb 2>/dev/null | head -1 || true)
	if [[ -z "${deb}" ]]; then
		if [[ ${updated} == 0 ]]; then
			apt-get "${apt_opts[@]}" update -qq
			updated=1
		fi
		if ! (cd "${cache}" && apt-get "${apt_opts[@]}" download -qq "${pv}"); then
			pinned_version_gone_hint
			exit 1
		fi
		deb=$(ls "${cache}/${p}_${v/:/%3a}"_*.deb | head -1)
	fi
	debs+=("${deb}")
done

rootfs="${work}/rootfs"
mkdir -p "${rootfs}/var/lib/dpkg/status.d"
for deb in "${debs[@]}"; do
	p=$(dpkg-deb -f "${deb}" Package)
	dpkg-deb -x "${deb}" "${rootfs}"
	{ dpkg-deb -f "${deb}"; echo "Status: install ok installed"; } >"${rootfs}/var/lib/dpkg/status.d/${p}"
done

# What update-ca-certificates would make at install time: every
# certificate Debian ships enabled, concatenated.
mkdir -p "${rootfs}/etc/ssl/certs"
(cd "${rootfs}/usr/share/ca-certificates" && LC_ALL=C find mozilla -name '*.crt' | LC_ALL=C sort | xargs cat) \
	>"${rootfs}/etc/ssl/certs/ca-certificates.crt"

# Nothing here runs it, nor reads manuals or changelogs; copyrights stay.
rm -rf "${rootfs}"/usr/sbin "${rootfs}"/usr/share/{man,info,lintian,locale} "${rootfs}"/etc/ca-certificates
find "${rootfs}/usr/share/doc" -type f ! -name copyright -delete

cat >"${rootfs}/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:${NONROOT}:${NONROOT}:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"${rootfs}/etc/group" <<GROUP
root:x:0:
nonroot:x:${NONROOT}:
GROUP
echo 'hosts: files dns' >"${rootfs}/etc/nsswitch.conf"
mkdir -p "${rootfs}/tmp" "${rootfs}/root" "${rootfs}/home/nonroot"
chmod 1777 "${rootfs}/tmp"
chmod 0700 "${rootfs}/root" "${rootfs}/home/nonroot"

"${IMAGES_TOOL}" layer --from-dir "${rootfs}" --chown "home/nonroot=${NONROOT}:${NONROOT}" \
	--epoch "${epoch}" --out "${out}"
