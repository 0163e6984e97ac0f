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

package migration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
	"github.com/vessel-vm/vessel/launcher"
)

func TestMain(m *testing.M) { framework.Main(m) }

// bandwidth caps every migration's streams (MiB/s), so that a 128 MiB
// guest with its disks takes several seconds to move: long enough to
// cancel it or to kill an agent in the middle.
const bandwidth = "12"

// env is the package's control plane: two hypervisors whose agents cap
// their migrations' bandwidth.
func env(t *testing.T) *framework.Env {
	t.Helper()
	return framework.RequireWith(t, framework.Config{AgentArgs: []string{"--migration-bandwidth=" + bandwidth}})
}

// diskMarker is what the guest writes at the start of its data disk
// before it moves.
const diskMarker = "VESSEL-MIGRATION-DISK-MARKER"

// countingVM is the test guest with a blank data disk: its user-data
// writes diskMarker to the disk and then prints a counter on the console
// every second, forever.
func countingVM(namespace, name string) *v1alpha1.VirtualMachine {
	vm := framework.GuestVM(namespace, name)
	vm.Spec.Disks = []v1alpha1.Disk{
		{Name: "data", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("16Mi")}},
		{Name: "seed", CloudInit: &v1alpha1.CloudInitSource{UserData: "#!/bin/sh\n" +
			"echo " + diskMarker + " | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null\n" +
			"echo VESSEL-MIGRATION-DISK written\n" +
			"(i=0; while true; do i=$((i+1)); echo VESSEL-COUNT $i; sleep 1; done) >/dev/console 2>&1 &\n"}},
	}
	return vm
}

var countRE = regexp.MustCompile(`VESSEL-COUNT (\d+)`)

// lastCount is the highest counter value in log, or -1.
func lastCount(log string) int {
	last := -1
	for _, m := range countRE.FindAllStringSubmatch(log, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil && n > last {
			last = n
		}
	}
	return last
}

func namespace(t *testing.T, e *framework.Env, name string) string {
	t.Helper()
	if out, err := e.Kubectl(t, "admin", "create", "namespace", name); err != nil && !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("create namespace %s: %v\n%s", name, err, out)
	}
	return name
}

// netnsInode is the inode of a network namespace, to tell processes'
// namespaces apart.
func netnsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st os.FileInfo
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return inode(st)
}

// A guest printing a counter every second moves to the other hypervisor
// with kubectl vm migrate: it keeps counting without booting again, its
// QEMU runs under the target's libvirtd (in the target's network
// namespace) and the source has no domain left, what it wrote to its disk
// before the move is in the disk file on the target, the migration
// reports its downtime, the VM is bound to the target and Running, and a
// console session open during the move follows the guest there.
func TestLiveMigrationKeepsTheGuestRunning(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	ns := namespace(t, e, "migration-live")
	ctx := context.Background()
	vms := e.Admin.VesselV1alpha1().VirtualMachines(ns)
	if _, err := vms.Create(ctx, countingVM(ns, "counter"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vm := e.WaitPhase(t, ns, "counter", v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "VESSEL-COUNT 3")
	if !strings.Contains(e.ConsoleLog(vm), "VESSEL-MIGRATION-DISK written") {
		t.Fatalf("the guest did not write its disk marker; console:\n%s", e.ConsoleLog(vm))
	}
	source := e.HypervisorOf(t, vm)
	var target launcher.Hypervisor
	for _, hv := range e.Hypervisors {
		if hv.Name != source.Name {
			target = hv
		}
	}
	oldPID := framework.QEMUPID(t, string(vm.UID))
	// A console session left open during the move.
	session := startConsole(t, e, ns, "counter")
	before := lastCount(e.ConsoleLog(vm))

	start := time.Now()
	out := e.MustKubectl(t, "admin", "vm", "migrate", "counter", "-n", ns, "--wait")
	t.Logf("kubectl vm migrate (%.1fs):\n%s", time.Since(start).Seconds(), out)
	if !strings.Contains(out, "Succeeded") || !strings.Contains(out, source.Name+" -> "+target.Name) {
		t.Fatalf("kubectl vm migrate --wait did not report a migration from %s to %s:\n%s", source.Name, target.Name, out)
	}

	// The handover: bound to the target, Running there.
	vm = e.WaitVM(t, ns, "counter", time.Minute, "bound to "+target.Name+" and Running", func(vm *v1alpha1.VirtualMachine) bool {
		return vm.Spec.NodeName == target.Name && vm.Status.Phase == v1alpha1.VirtualMachineRunning && vm.Status.NodeName == target.Name
	})
	migs, err := e.Admin.VesselV1alpha1().VirtualMachineMigrations(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(migs.Items) != 1 {
		t.Fatalf("migrations: %v, %+v", err, migs)
	}
	m := migs.Items[0]
	t.Logf("migration status: %+v", m.Status)
	if m.Status.Phase != v1alpha1.MigrationSucceeded || m.Status.Source != source.Name || m.Status.Target != target.Name {
		t.Fatalf("migration status %+v, want Succeeded from %s to %s", m.Status, source.Name, target.Name)
	}
	if m.Status.Downtime == nil || m.Status.Downtime.Duration <= 0 || m.Status.Downtime.Duration > 5*time.Second {
		t.Fatalf("migration downtime %v, want a positive figure under 5s", m.Status.Downtime)
	}
	if m.Status.TransferredBytes <= 0 || m.Status.MemoryPagesTransferred <= 0 {
		t.Fatalf("migration reports %d bytes and %d pages transferred", m.Status.TransferredBytes, m.Status.MemoryPagesTransferred)
	}
	table := e.MustKubectl(t, "admin", "get", "vmim", "-n", ns)
	if !strings.Contains(table, "Succeeded") || !strings.Contains(table, "DOWNTIME") {
		t.Fatalf("kubectl get vmim:\n%s", table)
	}

	// Exactly one domain, on the target; its QEMU is a new process in the
	// target's network namespace.
	if got := e.DomainsOf(t, vm); len(got) != 1 || got[0] != target.Name {
		t.Fatalf("domains of the VM are on %v, want only on %s", got, target.Name)
	}
	pid := framework.QEMUPID(t, string(vm.UID))
	if pid == oldPID {
		t.Fatalf("QEMU pid %d is still the source's", pid)
	}
	if got, want := netnsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid)), netnsInode(t, filepath.Join("/run/netns", target.Netns)); got != want {
		t.Fatalf("QEMU %d runs in network namespace %d, not the target's (%s, %d)", pid, got, target.Netns, want)
	}
	if st := e.DomState(t, vm); st != "running" {
		t.Fatalf("domain on the target is %q", st)
	}

	// It keeps counting on the target, without a boot banner.
	targetLog := filepath.Join(framework.VMDir(target, vm), "console.log")
	var log string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		b, _ := os.ReadFile(targetLog)
		log = string(b)
		return lastCount(log) > before+2, nil
	})
	if err != nil {
		t.Fatalf("the guest does not count on on the target (last count before the move %d); target console:\n%s", before, log)
	}
	if strings.Contains(log, "VESSEL-GUEST READY") {
		t.Fatalf("the guest booted again on the target:\n%s", log)
	}
	first := -1
	if m := countRE.FindStringSubmatch(log); m != nil {
		first, _ = strconv.Atoi(m[1])
	}
	if first <= before-1 || first > before+30 {
		t.Fatalf("the first count on the target is %d, the last before the move %d: not the same guest counting on", first, before)
	}
	// The open console session followed the guest: it says so, and shows
	// the counting from the target.
	session.wait(t, "the reattach message", time.Minute, func(_, errOut string) bool {
		return strings.Contains(errOut, "moved from hypervisor "+source.Name+" to "+target.Name+"; reattaching its console")
	})
	mark := session.outLen()
	session.wait(t, "counting after the move", time.Minute, func(out, _ string) bool {
		return lastCount(out[mark:]) > lastCount(out[:mark])
	})
	session.detach(t)
	if _, err := os.Stat(filepath.Join(framework.VMDir(target, vm), "console.log.before-migration")); err != nil {
		t.Errorf("the console log from before the move was not carried over: %v", err)
	}
	if _, err := os.Stat(framework.VMDir(source, vm)); !os.IsNotExist(err) {
		t.Errorf("the source still has the VM's directory (%v)", err)
	}

	// The disk file on the target holds what the guest wrote before.
	raw := filepath.Join(t.TempDir(), "data.raw")
	disk := filepath.Join(framework.VMDir(target, vm), "disk-data.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", disk, raw).CombinedOutput(); err != nil {
		t.Fatalf("read the target's disk: %v\n%s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), diskMarker) {
		t.Fatalf("the target's disk starts with %q, not the marker written before the move", b[:min(len(b), 64)])
	}
}

// dumpAgentLogs logs the end of the agents' and libvirtds' logs when the
// test failed.
func dumpAgentLogs(t *testing.T, e *framework.Env) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(e.StateDir, "logs", "*"))
		if dir := os.Getenv("VESSEL_E2E_KEEP_LOGS"); dir != "" {
			exec.Command("cp", append(logs, dir)...).Run()
		}
		for _, f := range logs {
			base := filepath.Base(f)
			if !strings.HasPrefix(base, "vessel-agent") && !strings.HasPrefix(base, "libvirtd") && !strings.HasPrefix(base, "vessel-apiserver") {
				continue
			}
			b, _ := os.ReadFile(f)
			lines := strings.Split(string(b), "\n")
			var keep []string
			for _, l := range lines {
				if strings.Contains(l, "igrat") || strings.Contains(l, "error") || strings.Contains(l, "rror") {
					keep = append(keep, l)
				}
			}
			if len(keep) > 60 {
				keep = keep[len(keep)-60:]
			}
			t.Logf("%s:\n%s", base, strings.Join(keep, "\n"))
		}
	})
}
