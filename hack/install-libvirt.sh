#!/usr/bin/env bash
# Install libvirt + QEMU on a Debian 12 machine without systemd.
#
# Vessel runs no guest on the machine's own libvirtd: `make up`, the e2e
# suites and the node agent's tests and benchmarks each run libvirtds of
# their own, in namespaces of their own (launcher/libvirtd), from these
# packages. So by default this script only installs them and creates the
# libvirt-qemu user (libvirtd refuses to start without it).
#
# --start-host-daemons also configures and starts the machine's virtlogd and
# libvirtd (/run/libvirt/libvirt-sock), for whoever still wants them (plain
# `virsh -c qemu:///system`, a control plane of an older Vessel).
#
# Idempotent: packages are installed only when missing, daemons are started
# only when not already running. Run as root. Used by `make deps` and CI.
#
# Environment:
#   LIBVIRT_WAIT_SECONDS  how long to wait for libvirtd to answer (default 60)
set -euo pipefail

start_host_daemons=0
for arg in "$@"; do
  case "$arg" in
    --start-host-daemons) start_host_daemons=1 ;;
    *) echo "usage: $0 [--start-host-daemons]" >&2; exit 2 ;;
  esac
done

log() { echo "install-libvirt: $*"; }
die() { echo "install-libvirt: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# Packages: libvirt + QEMU (no libvirt-daemon-system: it drags in systemd),
# plus what the test guest builder (hack/build-guest.sh) and NoCloud seed
# ISOs need. iproute2 and util-linux (ip, nsenter, unshare, findmnt) set up
# the hypervisors' namespaces.
PACKAGES=(
  libvirt-daemon
  libvirt-daemon-driver-qemu
  libvirt-clients
  qemu-system-x86
  qemu-utils
  genisoimage
  busybox-static
  cpio
  e2fsprogs
  iproute2
  util-linux
  # The managed guest network (node-agent/network): DHCP and nftables.
  dnsmasq-base
  nftables
  # kubectl vm ssh runs the system ssh (and e2e/network with it).
  openssh-client
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages already installed"
fi

# libvirtd refuses to start without the libvirt-qemu user.
if ! getent group libvirt-qemu >/dev/null; then
  log "creating group libvirt-qemu"
  groupadd -r libvirt-qemu
fi
if ! getent passwd libvirt-qemu >/dev/null; then
  log "creating user libvirt-qemu"
  useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi

if [ "$start_host_daemons" -eq 0 ]; then
  log "installed; the machine's libvirtd is left alone (Vessel runs its own; --start-host-daemons starts it)"
  exit 0
fi

# Run QEMU as root: avoids a capabilities-cache rewrite (~4 s) on every
# domain start and file ownership juggling on disk images.
QEMU_CONF=/etc/libvirt/qemu.conf
conf_changed=0
set_conf() { # key value
  local key=$1 val=$2
  if grep -Eq "^[[:space:]]*${key}[[:space:]]*=[[:space:]]*${val}[[:space:]]*$" "$QEMU_CONF"; then
    return 0
  fi
  if grep -Eq "^[[:space:]]*${key}[[:space:]]*=" "$QEMU_CONF"; then
    sed -i -E "s|^[[:space:]]*${key}[[:space:]]*=.*|${key} = ${val}|" "$QEMU_CONF"
  else
    echo "${key} = ${val}" >>"$QEMU_CONF"
  fi
  conf_changed=1
}
# Debian ships qemu.conf only with libvirt-daemon-system (which we avoid):
# without it the built-in defaults apply, so a file with just our keys is fine.
mkdir -p /etc/libvirt
[ -f "$QEMU_CONF" ] || : >"$QEMU_CONF"
set_conf user '"root"'
set_conf group '"root"'
if [ "$conf_changed" -eq 1 ]; then
  log "set user/group = root in $QEMU_CONF"
fi

# Daemons started as root with -d write /run/<name>.pid.
pid_of() { # name -> prints the live pid, or fails
  local pf pid
  for pf in "/run/$1.pid" "/run/libvirt/$1.pid"; do
    [ -s "$pf" ] || continue
    pid=$(cat "$pf" 2>/dev/null) || continue
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
       [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
      echo "$pid"; return 0
    fi
  done
  return 1
}

mkdir -p /run/libvirt /var/log/libvirt

if pid=$(pid_of virtlogd) && [ -S /run/libvirt/virtlogd-sock ]; then
  log "virtlogd already running (pid $pid)"
else
  log "starting virtlogd"
  virtlogd -d
fi

if pid=$(pid_of libvirtd) && [ -S /run/libvirt/libvirt-sock ]; then
  if [ "$conf_changed" -eq 1 ]; then
    log "qemu.conf changed: restarting libvirtd (pid $pid)"
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    libvirtd -d
  else
    log "libvirtd already running (pid $pid)"
  fi
else
  log "starting libvirtd"
  libvirtd -d
fi

# The first call after install probes QEMU capabilities (~8 s).
wait=${LIBVIRT_WAIT_SECONDS:-60}
start=$(date +%s)
until virsh -c qemu:///system version >/dev/null 2>&1; do
  if [ $(( $(date +%s) - start )) -ge "$wait" ]; then
    die "libvirtd did not answer within ${wait}s (see /var/log/libvirt)"
  fi
  sleep 0.5
done
log "ready: $(virsh -c qemu:///system version 2>/dev/null | grep -E 'hypervisor' | sed 's/^Running against //' | tr -s ' ')"
