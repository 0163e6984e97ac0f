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

package guestagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// vmManifest is the test guest with a blank qcow2 disk (it holds the
// snapshots) that its user-data formats and mounts, so the guest agent has
// a filesystem to freeze.
const vmManifest = `apiVersion: vessel.dev/v1alpha1
kind: VirtualMachine
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  runStrategy: Always
  cpus: 1
  memory: 128Mi
  terminationGracePeriodSeconds: 5
  kernel:
    kernel: {hostPath: {path: %[3]s/vmlinuz}}
    initrd: {hostPath: {path: %[3]s/initrd.img}}
    cmdline: console=ttyS0 quiet
  disks:
  - name: data
    blank: {size: 64Mi}
  - name: seed
    cloudInit:
      userData: |
        #!/bin/sh
        mke2fs -q /dev/vda && mount /dev/vda /mnt/disk && echo FS-READY
`

func agentConnected(vm *v1alpha1.VirtualMachine) bool {
	return meta.IsStatusConditionTrue(vm.Status.Conditions, v1alpha1.VirtualMachineConditionAgentConnected)
}

// TestGuestAgent: the agent reports the guest's OS and AgentConnected;
// a disk snapshot of the running guest says its filesystems were frozen
// (and a memory snapshot says why not); restart --soft reboots the guest
// in the same QEMU process and the agent comes back.
func TestGuestAgent(t *testing.T) {
	e := framework.Require(t)
	ns, name := "ga-"+utilrand.String(5), "demo"
	e.MustKubectl(t, "admin", "create", "namespace", ns)
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "delete", "namespace", ns, "--wait=false") })
	manifest := filepath.Join(t.TempDir(), "vm.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(vmManifest, ns, name, framework.GuestDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustKubectl(t, "admin", "apply", "-f", manifest)
	vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "FS-READY")
	e.WaitLog(t, vm, "VESSEL-AGENT started")

	// 1. OS info through the API and kubectl vm guestinfo.
	start := time.Now()
	vm = e.WaitVM(t, ns, name, 2*time.Minute, "AgentConnected True with guestOSInfo", func(vm *v1alpha1.VirtualMachine) bool {
		return agentConnected(vm) && vm.Status.GuestOSInfo != nil
	})
	t.Logf("AgentConnected True %.1fs after the agent started in the guest", time.Since(start).Seconds())
	// The host name comes from the seed's meta-data (local-hostname: the
	// VM name), set before qemu-ga starts; allow a refresh all the same.
	vm = e.WaitVM(t, ns, name, 90*time.Second, "guestOSInfo.hostname "+name, func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Status.GuestOSInfo != nil && vm.Status.GuestOSInfo.Hostname == name
	})
	kernel, err := os.ReadFile(filepath.Join(framework.GuestDir, "kernel-release"))
	wantKernel := strings.TrimSpace(string(kernel))
	if err != nil {
		wantKernel = "" // kernel-release is not installed with the guest everywhere
	}
	info := vm.Status.GuestOSInfo
	if info.ID != "vessel-guest" || info.Name != "Vessel test guest" || info.Hostname != name || info.Machine != "x86_64" ||
		(wantKernel != "" && info.KernelRelease != wantKernel) {
		t.Errorf("guestOSInfo = %+v; want the test guest's os-release, hostname %s, kernel %q", info, name, wantKernel)
	}
	out := e.MustKubectl(t, "admin", "vm", "-n", ns, "guestinfo", name)
	t.Logf("kubectl vm guestinfo:\n%s", out)
	for _, want := range []string{
		"VM:               " + ns + "/" + name + "\n",
		"Agent connected:  yes (since ",
		"OS:               Vessel test guest 1 (busybox, qemu-ga, dropbear)\n",
		"Hostname:         " + name + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl vm guestinfo lacks %q", want)
		}
	}
	if out := e.MustKubectl(t, "admin", "vm", "-n", ns, "guestinfo", name, "-o", "json"); !strings.Contains(out, `"id": "vessel-guest"`) {
		t.Errorf("kubectl vm guestinfo -o json:\n%s", out)
	}

	// 2. Snapshots: a disk snapshot of the running guest is frozen, a
	// memory snapshot is not (and says why).
	e.MustKubectl(t, "admin", "vm", "-n", ns, "snapshot", name, "disks", "--no-memory", "--wait")
	frozen := snapshotFrozen(t, e, ns, "disks")
	if frozen.Status != metav1.ConditionTrue || !regexp.MustCompile(`^[1-9][0-9]* filesystem\(s\) frozen`).MatchString(frozen.Message) {
		t.Errorf("disk snapshot FilesystemsFrozen = %s/%s %q; want True with at least one filesystem", frozen.Status, frozen.Reason, frozen.Message)
	}
	e.MustKubectl(t, "admin", "vm", "-n", ns, "snapshot", name, "memory", "--wait")
	if c := snapshotFrozen(t, e, ns, "memory"); c.Status != metav1.ConditionFalse || c.Reason != "MemoryIncluded" {
		t.Errorf("memory snapshot FilesystemsFrozen = %s/%s %q; want False/MemoryIncluded", c.Status, c.Reason, c.Message)
	}
	// Thawed again: qemu-ga says so.
	if out, err := e.Virsh(t, vm, "qemu-agent-command", string(vm.UID), `{"execute":"guest-fsfreeze-status"}`); err != nil || !strings.Contains(out, `"thawed"`) {
		t.Errorf("guest-fsfreeze-status after the snapshots: %v %s; want thawed", err, out)
	}

	// 3. restart --soft: same QEMU process, a new boot.
	pid := framework.QEMUPID(t, string(vm.UID))
	e.MustKubectl(t, "admin", "vm", "-n", ns, "restart", name, "--soft")
	requested := time.Now()
	err = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
		return strings.Count(e.ConsoleLog(vm), "VESSEL-GUEST READY") >= 2 && strings.Count(e.ConsoleLog(vm), "VESSEL-BOOT done") >= 2, nil
	})
	log := e.ConsoleLog(vm)
	if err != nil {
		t.Fatalf("no second boot after restart --soft; end of console:\n%s", tail(log, 2000))
	}
	if !strings.Contains(log, "VESSEL-SHUTDOWN-REQUEST reboot") || !strings.Contains(log, "VESSEL-SHUTDOWN\r\n") {
		t.Errorf("the guest did not go through its reboot (qemu-ga -> /sbin/shutdown -r -> init); console:\n%s", tail(log, 2000))
	}
	t.Logf("restart --soft: the guest booted again %.1fs after the request", time.Since(requested).Seconds())
	if after := framework.QEMUPID(t, string(vm.UID)); after != pid {
		t.Errorf("QEMU pid %d after restart --soft, %d before: want the same process", after, pid)
	} else {
		t.Logf("restart --soft: QEMU pid %d before and after", pid)
	}
	vm = e.WaitVM(t, ns, name, 2*time.Minute, "restart carried out and the agent back", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Spec.PowerAction != nil && vm.Status.ObservedPowerActionID == vm.Spec.PowerAction.ID &&
			vm.Status.Phase == v1alpha1.VirtualMachineRunning && agentConnected(vm)
	})
	if !vm.Spec.PowerAction.Soft {
		t.Errorf("powerAction = %+v, want soft", vm.Spec.PowerAction)
	}
}

// snapshotFrozen is the FilesystemsFrozen condition of a ready snapshot.
func snapshotFrozen(t *testing.T, e *framework.Env, ns, name string) metav1.Condition {
	t.Helper()
	snap, err := e.Admin.VesselV1alpha1().VirtualMachineSnapshots(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get snapshot %s: %v", name, err)
	}
	c := meta.FindStatusCondition(snap.Status.Conditions, v1alpha1.SnapshotConditionFilesystemsFrozen)
	if snap.Status.Phase != v1alpha1.SnapshotSucceeded || c == nil {
		t.Fatalf("snapshot %s: phase %s, conditions %+v; want Succeeded with FilesystemsFrozen", name, snap.Status.Phase, snap.Status.Conditions)
	}
	t.Logf("snapshot %s: FilesystemsFrozen %s/%s: %s", name, c.Status, c.Reason, c.Message)
	return *c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
