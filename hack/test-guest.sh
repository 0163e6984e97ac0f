#!/usr/bin/env bash
# Boot the Vessel test guest with plain QEMU (TCG) and check it end to end:
# banner, DHCP address, data disk (through a qcow2 overlay), NoCloud user-data
# from a seed ISO, the QEMU guest agent on org.qemu.guest_agent.0, the ssh
# server's banner (through a user-mode port forward on 127.0.0.1), an
# interactive console shell, and ACPI power-off.
# Exits non-zero on any failure. Needs qemu-system-x86, qemu-utils and
# genisoimage (hack/install-libvirt.sh installs them); builds the guest with
# hack/build-guest.sh if needed.
#
# Environment: GUEST_DIR (default _output/guest), GUEST_MEM (MiB, default 128),
# GUEST_TIMEOUT (seconds allowed for boot, default 120), KEEP=1 keeps the
# work dir.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GUEST_DIR=${GUEST_DIR:-$REPO/_output/guest}
MEM=${GUEST_MEM:-128}
BOOT_TIMEOUT=${GUEST_TIMEOUT:-120}

log() { echo "test-guest: $*"; }
for t in qemu-system-x86_64 qemu-img genisoimage debugfs; do
  command -v "$t" >/dev/null || { log "ERROR: $t not found (run hack/install-libvirt.sh)"; exit 1; }
done

if [ -z "${GUEST_DIR_PREBUILT:-}" ]; then
  "$REPO/hack/build-guest.sh" "$GUEST_DIR"
fi

W=$(mktemp -d "${TMPDIR:-/tmp}/vessel-test-guest.XXXXXX")
qpid=
cleanup() {
  exec 3>&- 4>&- 2>/dev/null || true
  local p
  exec 5>&- 2>/dev/null || true
  for p in "$qpid" "${rpid:-}" "${mpid:-}" "${gpid:-}"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then log "work dir kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

# NoCloud seed: user-data writes to the data disk and exits 0.
cat >"$W/user-data" <<'EOF'
#!/bin/sh
echo "USERDATA-MARKER $(hostname) $(cat /run/instance-id)"
echo written-by-user-data >/mnt/disk/from-user-data
sync
EOF
printf 'instance-id: iid-test-guest\nlocal-hostname: test-guest\n' >"$W/meta-data"
genisoimage -quiet -output "$W/seed.iso" -volid cidata -joliet -rock "$W/user-data" "$W/meta-data"
# qcow2 overlay over the pristine raw disk image, as the agent does.
qemu-img create -q -f qcow2 -F raw -b "$GUEST_DIR/disk.img" "$W/disk.qcow2"

mkfifo "$W/ser.in" "$W/ser.out" "$W/mon.in" "$W/mon.out" "$W/ga.in" "$W/ga.out"
: >"$W/console.log"
: >"$W/agent.log"
cat "$W/ser.out" >>"$W/console.log" & rpid=$!
cat "$W/mon.out" >"$W/monitor.log" & mpid=$!
cat "$W/ga.out" >>"$W/agent.log" & gpid=$!
# A free loopback port for the guest's ssh server.
sshport=$(( 20000 + RANDOM % 20000 ))

t0=$(date +%s.%N)
qemu-system-x86_64 -machine pc,accel=tcg -m "$MEM" -smp 1 -display none -no-user-config -nodefaults \
  -chardev pipe,id=ser0,path="$W/ser" -serial chardev:ser0 \
  -monitor pipe:"$W/mon" \
  -kernel "$GUEST_DIR/vmlinuz" -initrd "$GUEST_DIR/initrd.img" -append 'console=ttyS0 quiet' \
  -drive file="$W/disk.qcow2",if=virtio,format=qcow2 \
  -drive file="$W/seed.iso",media=cdrom,if=ide,format=raw,readonly=on \
  -nic user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$sshport-:22 \
  -chardev pipe,id=ga0,path="$W/ga" -device virtio-serial -device virtserialport,chardev=ga0,name=org.qemu.guest_agent.0 \
  >"$W/qemu.log" 2>&1 &
qpid=$!
# Read-write opens never block, even if qemu died before opening its ends.
exec 3<>"$W/ser.in" 4<>"$W/mon.in" 5<>"$W/ga.in"

since() { echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1-$2}'; }
fail() {
  log "FAIL: $*"
  log "--- console (last 40 lines) ---"
  tr -d '\r' <"$W/console.log" | tail -n 40 | sed 's/^/  | /'
  log "--- qemu ---"
  sed 's/^/  | /' "$W/qemu.log"
  echo "guest: $passed passed, 1 failed"
  exit 1
}
passed=0
# wait_for REGEX TIMEOUT NAME: wait until the console shows REGEX (grep -E).
wait_for() {
  local re=$1 tmo=$2 name=$3 end
  end=$(( $(date +%s) + tmo ))
  until tr -d '\r' <"$W/console.log" | grep -Eq -- "$re"; do
    kill -0 "$qpid" 2>/dev/null || fail "$name: qemu exited"
    [ "$(date +%s)" -lt "$end" ] || fail "$name: '$re' not seen within ${tmo}s"
    sleep 0.1
  done
  passed=$((passed + 1))
  log "ok   $name ($(since)s): $(tr -d '\r' <"$W/console.log" | grep -Eo -- "$re" | head -n1)"
}

wait_for '^VESSEL-GUEST READY [0-9][^ ]*' "$BOOT_TIMEOUT" banner
wait_for '^VESSEL-IP 10\.0\.2\.15' 60 dhcp
wait_for '^VESSEL-DISK mounted /dev/vda /mnt/disk' 60 disk
wait_for '^USERDATA-MARKER test-guest iid-test-guest' 60 user-data
wait_for '^VESSEL-CLOUDINIT done rc=0' 30 cloud-init
wait_for '^VESSEL-AGENT started /dev/vport' 30 guest-agent
wait_for '^VESSEL-SSH started' 30 ssh-server
wait_for '^VESSEL-BOOT done' 30 boot-done
wait_for 'vessel:[^ ]*# ' 30 prompt

# QEMU guest agent: answers on its port with the guest's os-release.
printf '{"execute":"guest-get-osinfo"}\n' >&5
end=$(( $(date +%s) + 30 ))
until grep -q '"id": "vessel-guest"' "$W/agent.log"; do
  [ "$(date +%s)" -lt "$end" ] || fail "guest-agent: no guest-get-osinfo answer within 30s: $(cat "$W/agent.log")"
  sleep 0.1
done
passed=$((passed + 1))
log "ok   guest-agent-osinfo ($(since)s): $(grep -o '"pretty-name": "[^"]*"' "$W/agent.log" | head -n1)"

# ssh: dropbear's banner through the port forward.
banner=$(timeout 20 bash -c "exec 6<>/dev/tcp/127.0.0.1/$sshport && head -c 64 <&6 | head -n1" 2>/dev/null | tr -d '\r' || true)
case "$banner" in SSH-2.0-dropbear*) ;; *) fail "ssh: no dropbear banner on 127.0.0.1:$sshport (got '$banner')" ;; esac
passed=$((passed + 1))
log "ok   ssh-banner ($(since)s): $banner"

# Interactive shell: the answer must be computed by the guest, not echoed.
printf 'cat /mnt/disk/vessel-disk-marker /mnt/disk/from-user-data; echo "SUM=$((6*7))"\n' >&3
wait_for '^SUM=42' 30 shell
wait_for '^VESSEL-DISK-MARKER v1' 5 disk-content
wait_for '^written-by-user-data' 5 disk-write

# ACPI power button (what `virsh shutdown` does without a guest agent).
ts=$(date +%s.%N)
echo system_powerdown >&4
end=$(( $(date +%s) + 60 ))
while kill -0 "$qpid" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || fail "acpi-shutdown: guest still running 60s after system_powerdown"
  sleep 0.1
done
wait "$qpid" || true
qpid=
tr -d '\r' <"$W/console.log" | grep -q '^VESSEL-SHUTDOWN' || fail "acpi-shutdown: no VESSEL-SHUTDOWN on the console"
passed=$((passed + 1))
log "ok   acpi-shutdown ($(echo "$(date +%s.%N) $ts" | awk '{printf "%.2f", $1-$2}')s after system_powerdown)"

# The write survived the ACPI power-off in the overlay; the base is untouched.
qemu-img check -q "$W/disk.qcow2" || fail "overlay: qemu-img check failed"
qemu-img convert -O raw "$W/disk.qcow2" "$W/disk.raw"
[ "$(debugfs -R 'cat /from-user-data' "$W/disk.raw" 2>/dev/null)" = written-by-user-data ] ||
  fail "overlay: /from-user-data missing after power-off"
if debugfs -R 'stat /from-user-data' "$GUEST_DIR/disk.img" 2>/dev/null | grep -q Inode; then
  fail "base disk.img was modified"
fi
passed=$((passed + 1))
log "ok   disk-persisted (guest write in the qcow2 overlay, base image untouched)"
log "PASS"
echo "guest: $passed passed, 0 failed"
