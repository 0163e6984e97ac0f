#!/usr/bin/env bash
# Build the tiny Vessel test guest from Debian packages, offline once the
# packages are cached:
#
#   <out>/vmlinuz         kernel from linux-image-6.1.0-*-cloud-amd64
#   <out>/initrd.img      busybox initramfs (cpio newc + gzip) with hack/guest/init
#                         and the virtio/cdrom/ACPI modules of the same kernel
#   <out>/disk.img        raw ext4 image (label vessel-disk) holding
#                         /vessel-disk-marker, usable as a VM data/root disk
#   <out>/kernel-release  the kernel release string (uname -r in the guest)
#
# The initramfs also carries two dynamically linked Debian programs with the
# shared libraries they need (found with ldd against the unpacked packages,
# never the build host's): qemu-ga (qemu-guest-agent) on the virtio-serial
# port org.qemu.guest_agent.0, and the dropbear ssh server (dropbear-bin).
#
# Boot: direct kernel boot, cmdline "console=ttyS0" (add "quiet" for less noise),
# 96-128 MiB of RAM, machine type pc (i440fx: the cloud kernel has no AHCI,
# so on q35 put the seed on virtio or virtio-scsi instead of SATA).
#
# Usage: hack/build-guest.sh [OUTDIR]      (default _output/guest)
# Environment:
#   GUEST_CACHE_DIR  where the .deb files are kept (default _output/cache/debs)
#   KERNEL_PKG       kernel package (default: what linux-image-cloud-amd64 depends
#                    on, or the newest cached one)
#   FORCE=1          rebuild even when the outputs are up to date
#   DISK_SIZE        size of disk.img (default 32M)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/_output/guest}
CACHE=${GUEST_CACHE_DIR:-$REPO/_output/cache/debs}
DISK_SIZE=${DISK_SIZE:-32M}
SELF="$REPO/hack/build-guest.sh"
GUEST_SRC="$REPO/hack/guest"

log() { echo "build-guest: $*"; }
die() { echo "build-guest: ERROR: $*" >&2; exit 1; }

outputs=("$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/disk.img" "$OUT/kernel-release")

up_to_date() {
  local f
  for f in "${outputs[@]}"; do [ -s "$f" ] || return 1; done
  # Any input newer than the oldest output means rebuild.
  local oldest
  oldest=$(ls -tr "${outputs[@]}" | head -n1)
  [ -z "$(find "$SELF" "$GUEST_SRC" -newer "$oldest" -print -quit)" ]
}

if [ "${FORCE:-0}" != 1 ] && up_to_date; then
  log "up to date: $OUT ($(cat "$OUT/kernel-release"))"
  exit 0
fi

for t in dpkg-deb gzip mke2fs; do
  command -v "$t" >/dev/null || die "$t not found (run hack/install-libvirt.sh, or apt-get install it)"
done

mkdir -p "$CACHE" "$OUT"

# --- fetch packages (only when not cached) ----------------------------------
apt_ready=0
apt_prepare() {
  [ "$apt_ready" = 1 ] && return 0
  # apt-cache knows nothing before the first `apt-get update` on a fresh machine.
  if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
    log "apt-get update"
    apt-get update -qq
  fi
  apt_ready=1
}
fetch() { # package
  log "downloading $1"
  (cd "$CACHE" && apt-get download -qq -o APT::Sandbox::User=root "$1") ||
    die "apt-get download $1 failed"
}

kdeb=
if [ -n "${KERNEL_PKG:-}" ]; then
  kdeb=$(ls "$CACHE/${KERNEL_PKG}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$kdeb" ]; then
    apt_prepare
    fetch "$KERNEL_PKG"
    kdeb=$(ls "$CACHE/${KERNEL_PKG}"_*.deb | sort -V | tail -n1)
  fi
else
  kdeb=$(ls "$CACHE"/linux-image-6.1.0-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$kdeb" ]; then
    apt_prepare
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
      awk '/Depends: linux-image-6\.1\.0-.*-cloud-amd64/ {print $2; exit}')
    if [ -z "$pkg" ]; then
      pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-.*-cloud-amd64$' |
        awk '{print $1}' | sort -V | tail -n1)
    fi
    [ -n "$pkg" ] || die "no linux-image-6.1.0-*-cloud-amd64 package found"
    fetch "$pkg"
    kdeb=$(ls "$CACHE/${pkg}"_*.deb | sort -V | tail -n1)
  fi
fi
bdeb=$(ls "$CACHE"/busybox-static_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bdeb" ]; then
  apt_prepare
  fetch busybox-static
  bdeb=$(ls "$CACHE"/busybox-static_*.deb | sort -V | tail -n1)
fi
log "kernel:  ${kdeb##*/}"
log "busybox: ${bdeb##*/}"

# Userland packages: the programs and every package holding a library they
# load. ldd below fails the build when a library comes from elsewhere, so
# this list stays complete.
USER_PKGS=(
  qemu-guest-agent dropbear-bin
  libc6 libglib2.0-0 libpcre2-8-0 libnuma1 libudev1 liburing2
  libtomcrypt1 libtommath1 libgmp10 libcrypt1 zlib1g
)
user_debs=()
for p in "${USER_PKGS[@]}"; do
  d=$(ls "$CACHE/${p}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$d" ]; then
    apt_prepare
    fetch "$p"
    d=$(ls "$CACHE/${p}"_*.deb | sort -V | tail -n1)
  fi
  user_debs+=("$d")
done
log "userland: $(for d in "${user_debs[@]}"; do printf '%s ' "${d##*/}"; done)"

# --- unpack -------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vessel-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$kdeb" "$WORK/kernel"
dpkg-deb -x "$bdeb" "$WORK/busybox"
U="$WORK/userland"
for d in "${user_debs[@]}"; do dpkg-deb -x "$d" "$U"; done
BB="$WORK/busybox/bin/busybox"
[ -x "$BB" ] || die "busybox binary missing in ${bdeb##*/}"
kver=$(ls "$WORK/kernel/lib/modules" | head -n1)
[ -n "$kver" ] || die "no modules in ${kdeb##*/}"
vmlinuz="$WORK/kernel/boot/vmlinuz-$kver"
[ -f "$vmlinuz" ] || die "no $vmlinuz"
KMOD="$WORK/kernel/lib/modules/$kver"

# The .deb has no modules.dep (its postinst runs depmod): make one.
"$BB" depmod -b "$WORK/kernel" "$kver"
[ -s "$KMOD/modules.dep" ] || die "depmod produced no modules.dep"

# --- module set, dependencies first --------------------------------------------
# virtio (pci, blk, net, scsi, rng, balloon, console: the identity port of
# memory clones), IDE cdrom on i440fx (ata_piix, sr_mod), filesystems for
# seeds (isofs, vfat), ACPI power button + evdev.
WANT=(
  virtio_pci virtio_blk virtio_net virtio_scsi virtio_rng virtio_balloon virtio_console
  scsi_mod libata ata_piix cdrom sr_mod sd_mod
  isofs fat vfat nls_cp437 nls_ascii nls_utf8
  button evdev
)
declare -A dep_of=() path_of=() seen=()
while IFS= read -r line; do
  p=${line%%:*}
  n=${p##*/}; n=${n%.ko*}; n=${n//-/_}
  path_of[$n]=$p
  dep_of[$n]=${line#*:}
done <"$KMOD/modules.dep"

order=()
visit() {
  local n=$1 d dn
  [ -n "${seen[$n]:-}" ] && return 0
  seen[$n]=1
  [ -n "${path_of[$n]:-}" ] || die "module $n not in $kver"
  for d in ${dep_of[$n]}; do
    dn=${d##*/}; dn=${dn%.ko*}; dn=${dn//-/_}
    visit "$dn"
  done
  order+=("$n")
}
for m in "${WANT[@]}"; do visit "$m"; done

# --- initramfs tree -------------------------------------------------------------
R="$WORK/initramfs"
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,dev,proc,sys,run,tmp,root,mnt/disk,lib/modules/"$kver"}
chmod 1777 "$R/tmp"
chmod 700 "$R/root"
cp "$BB" "$R/bin/busybox"
for a in $("$BB" --list-full); do
  [ "$a" = bin/busybox ] && continue
  [ -e "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done

install -m 755 "$GUEST_SRC/init" "$R/init"
install -m 755 "$GUEST_SRC/udhcpc.script" "$R/etc/udhcpc.script"
install -m 755 "$GUEST_SRC/vessel-shutdown" "$R/etc/vessel-shutdown"
install -m 755 "$GUEST_SRC/acpi-power-button" "$R/etc/acpi/PWRF/00000080"
install -m 755 "$GUEST_SRC/vessel-identity" "$R/etc/vessel-identity"
install -m 644 "$GUEST_SRC/inittab" "$R/etc/inittab"
install -m 644 "$GUEST_SRC/profile" "$R/etc/profile"
install -m 755 "$GUEST_SRC/shutdown" "$R/sbin/shutdown"
install -m 755 "$GUEST_SRC/cloud-config" "$R/etc/cloud-config"
install -m 644 "$GUEST_SRC/os-release" "$R/etc/os-release"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf '/bin/sh\n' >"$R/etc/shells"
mkdir -p "$R/etc/dropbear" "$R/var" "$R/lib64" "$R/lib/x86_64-linux-gnu"
ln -s /run "$R/var/run"
printf 'root:x:0:\n' >"$R/etc/group"
printf 'vessel\n' >"$R/etc/hostname"
: >"$R/etc/resolv.conf"
# busybox acpid maps the power button event (PWRF) to /etc/acpi/PWRF/00000080.
printf 'PWRF PWRF/00000080\n' >"$R/etc/acpid.conf"

{
  echo "# insmod order (dependencies first), generated by hack/build-guest.sh"
  for n in "${order[@]}"; do
    case "$n" in
      # Probe SCSI buses synchronously so /dev/sr0 exists when insmod returns.
      scsi_mod) echo "${path_of[$n]} scan=sync" ;;
      *) echo "${path_of[$n]}" ;;
    esac
  done
} >"$R/lib/modules/$kver/vessel-load.list"
for n in "${order[@]}"; do
  mkdir -p "$R/lib/modules/$kver/$(dirname "${path_of[$n]}")"
  cp "$KMOD/${path_of[$n]}" "$R/lib/modules/$kver/${path_of[$n]}"
done
# modules.dep for interactive `modprobe` in the guest.
"$BB" depmod -b "$R" "$kver"

log "modules: ${order[*]}"

# --- userland programs and their shared libraries ---------------------------
# ldd runs the unpacked loader's resolution with the unpacked libraries
# first; anything resolved outside them (the build host's) is an error.
PROGS=(usr/sbin/qemu-ga usr/sbin/dropbear usr/bin/dropbearkey)
ULIB="$U/lib/x86_64-linux-gnu:$U/usr/lib/x86_64-linux-gnu"
declare -A libs=()
for p in "${PROGS[@]}"; do
  [ -x "$U/$p" ] || die "$p missing from the userland packages"
  install -D -m 755 "$U/$p" "$R/$p"
  while read -r name arrow path _; do
    case "$name" in linux-vdso.so.*|/lib64/ld-linux-x86-64.so.2) continue ;; esac
    [ "$arrow" = "=>" ] || continue
    case "$path" in
      "$U"/*) libs[$name]=$path ;;
      *) die "$p needs $name, resolved to $path outside the packages: add its package to USER_PKGS" ;;
    esac
  done < <(LD_LIBRARY_PATH=$ULIB ldd "$U/$p")
done
for name in "${!libs[@]}"; do
  cp -L "${libs[$name]}" "$R/lib/x86_64-linux-gnu/$name"
done
cp -L "$U/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$R/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"
log "userland: ${PROGS[*]##*/} with $(echo "${!libs[@]}" | tr ' ' '\n' | LC_ALL=C sort | tr '\n' ' ')"

# --- pack ----------------------------------------------------------------------
tmp_initrd="$OUT/.initrd.img.tmp"
if command -v cpio >/dev/null; then
  (cd "$R" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n >"$tmp_initrd"
else
  (cd "$R" && find . -print | LC_ALL=C sort | "$BB" cpio -o -H newc) | gzip -9n >"$tmp_initrd"
fi

# Data disk: ext4 (built into the kernel) filled from a directory.
D="$WORK/disk"
mkdir -p "$D"
printf 'VESSEL-DISK-MARKER v1\n' >"$D/vessel-disk-marker"
tmp_disk="$OUT/.disk.img.tmp"
rm -f "$tmp_disk"
mke2fs -q -F -t ext4 -L vessel-disk -E root_owner=0:0 -d "$D" "$tmp_disk" "$DISK_SIZE" >/dev/null

cp "$vmlinuz" "$OUT/.vmlinuz.tmp"
mv -f "$OUT/.vmlinuz.tmp" "$OUT/vmlinuz"
mv -f "$tmp_initrd" "$OUT/initrd.img"
mv -f "$tmp_disk" "$OUT/disk.img"
echo "$kver" >"$OUT/kernel-release"
log "built $OUT: vmlinuz $(du -h "$OUT/vmlinuz" | cut -f1), initrd.img $(du -h "$OUT/initrd.img" | cut -f1), disk.img $DISK_SIZE ($kver)"
