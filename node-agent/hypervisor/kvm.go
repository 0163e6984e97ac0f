/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package hypervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

// kvmProbeMarkers are lines a Linux kernel prints late in a boot without a
// root filesystem: reaching one means the CPU ran the kernel through
// decompression, long mode and most of its init.
var kvmProbeMarkers = [][]byte{[]byte("Kernel panic"), []byte("VFS: Unable to mount root"), []byte("Run /init")}

// ProbeKVM boots kernel with hardware acceleration in a throwaway QEMU and
// reports whether it got far enough within timeout. /dev/kvm existing, or
// libvirt listing kvm in its capabilities, is not enough: on some hosts
// (nested or paravirtual KVM) guests stall or die with emulation failures.
// An empty kernel picks the newest /boot/vmlinuz-*; with none, KVM is
// reported unavailable.
func ProbeKVM(ctx context.Context, qemu, kernel string, timeout time.Duration) (bool, string) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm"
	}
	if kernel == "" {
		matches, _ := filepath.Glob("/boot/vmlinuz-*")
		if len(matches) == 0 {
			return false, "no kernel to probe with (set --kvm-probe-kernel)"
		}
		sort.Strings(matches)
		kernel = matches[len(matches)-1]
	}
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	dir, err := os.MkdirTemp("", "vessel-kvm-probe-")
	if err != nil {
		return false, fmt.Sprintf("temp dir: %v", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "console.log")

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "kvm", "-machine", "pc", "-cpu", "host", "-m", "128", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 loglevel=4",
		"-serial", "file:"+out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return false, fmt.Sprintf("start %s: %v", qemu, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if reached(out) {
				return true, "probe kernel booted with KVM"
			}
			return false, fmt.Sprintf("probe guest exited before booting: %s", bytes.TrimSpace(stderr.Bytes()))
		case <-ctx.Done():
			<-done
			if reached(out) {
				return true, "probe kernel booted with KVM"
			}
			return false, fmt.Sprintf("probe guest did not boot within %s", timeout)
		case <-tick.C:
			if reached(out) {
				cancel()
				<-done
				return true, "probe kernel booted with KVM"
			}
		}
	}
}

func reached(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, m := range kvmProbeMarkers {
		if bytes.Contains(b, m) {
			return true
		}
	}
	return false
}
