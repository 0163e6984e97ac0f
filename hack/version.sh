# Copyright The Vessel Authors.
# SPDX-License-Identifier: Apache-2.0
#
# Sourced by hack/build-images.sh and hack/release.sh: what a build is
# called and when it was made, from git, unless the environment says.
#
#   VERSION            a release tag (v0.1.0) when HEAD is tagged, else
#                      v0.0.0-<commit time>-<commit>, "-dirty" when the
#                      tree has uncommitted changes
#   REVISION           the commit
#   SOURCE_DATE_EPOCH  the commit's time: every time stamp in images and
#                      archives, so that a rebuild gives the same bytes
#
# `make release VERSION=v0.2.0` names a release explicitly.

_vessel_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_vessel_git() { git -C "${_vessel_root}" "$@" 2>/dev/null; }

: "${REVISION:=$(_vessel_git rev-parse HEAD || echo unknown)}"
: "${SOURCE_DATE_EPOCH:=$(_vessel_git log -1 --format=%ct || echo 0)}"
if [[ -z "${VERSION:-}" ]]; then
	VERSION=$(_vessel_git describe --tags --match 'v[0-9]*' --exact-match HEAD ||
		echo "v0.0.0-$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y%m%d%H%M%S)-$(_vessel_git rev-parse --short=12 HEAD || echo unknown)")
	if [[ -n "$(_vessel_git status --porcelain)" ]]; then
		VERSION+="-dirty"
	fi
fi
export VERSION REVISION SOURCE_DATE_EPOCH
