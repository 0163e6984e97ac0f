#!/usr/bin/env bash
# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0

# Installs what `make images` and the e2e/images suite need from Debian:
# mmdebstrap (the agent's base root filesystem), umoci (unpacks images as a
# runtime would) and skopeo (reads the OCI layouts and docker-archives back).
# No container daemon is involved.
#
# Idempotent: packages are installed only when missing. Run as root. Used by
# hack/build-images.sh, so by `make images` and CI.
set -o errexit -o nounset -o pipefail

log() { echo "install-image-tools: $*"; }
die() { echo "install-image-tools: ERROR: $*" >&2; exit 1; }

PACKAGES=(mmdebstrap umoci skopeo)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
	log "already installed: ${PACKAGES[*]}"
	exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "must run as root to install ${missing[*]}"
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
