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

package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// tenants is a namespace of its own where alice may edit and bob may only
// view (the built-in roles, which aggregate vessel.dev:edit and :view).
const tenants = `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-edit
  namespace: %[1]s
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: bob-view
  namespace: %[1]s
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]
`

// vmManifest is the quick start's VM (a blank qcow2 scratch disk holds
// the snapshots) whose cloud-init starts a counter on the console.
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
  - name: scratch
    blank: {size: 64Mi}
  - name: seed
    cloudInit:
      userData: |
        #!/bin/sh
        ( i=0; while :; do i=$((i+1)); echo "TICK $i"; sleep 1; done ) >/dev/console 2>&1 &
`

// A tenant snapshots a running VM with memory and restores it: the guest
// resumes where it was (its counter goes back, no boot). A viewer sees the
// snapshot but can neither take one nor restore; a restore to a missing
// snapshot is refused with the reason; deleting the VM deletes its
// snapshots (garbage collector + the agent releasing their finalizers).
func TestSnapshotAndRestoreWithKubectl(t *testing.T) {
	e := framework.Require(t)
	ns, name := "snap-"+utilrand.String(5), "demo"
	apply(t, e, "admin", fmt.Sprintf(tenants, ns))
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "delete", "namespace", ns, "--wait=false") })
	waitCan(t, e, "alice", ns, "create", "virtualmachinesnapshots.vessel.dev", "yes")
	waitCan(t, e, "bob", ns, "list", "virtualmachinesnapshots.vessel.dev", "yes")

	apply(t, e, "alice", fmt.Sprintf(vmManifest, ns, name, framework.GuestDir))
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "-n", ns, "delete", "vm", name, "--wait=false") })
	vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
	e.WaitLog(t, vm, "TICK 3\r\n")

	// Snapshot, waiting, with progress on one line.
	out := e.MustKubectl(t, "alice", "vm", "-n", ns, "snapshot", name, "s1", "--wait")
	t.Logf("kubectl vm snapshot: %s", strings.TrimSpace(out))
	progress := regexp.MustCompile(`^snapshot ` + ns + `/s1: (Pending\.\.\. )?(InProgress\.\.\. )?Succeeded \(memory, [0-9.]+Mi\) in [0-9.]+s\n$`)
	if !progress.MatchString(out) {
		t.Errorf("kubectl vm snapshot --wait printed %q, want it to match %s", out, progress)
	}
	atSnapshot := lastTick(e.ConsoleLog(vm))
	out = e.MustKubectl(t, "alice", "-n", ns, "get", "vmsnap", "s1", "-o", "wide")
	if !strings.Contains(out, "Succeeded") || !strings.Contains(out, "true") {
		t.Errorf("kubectl get vmsnap:\n%s", out)
	}
	e.WaitVM(t, ns, name, 30*time.Second, "status.snapshots lists s1", func(vm *v1alpha1.VirtualMachine) bool {
		return slices.Equal(vm.Status.Snapshots, []string{"s1"})
	})

	// A viewer lists snapshots but takes and restores none.
	if out := e.MustKubectl(t, "bob", "-n", ns, "get", "vmsnap"); !strings.Contains(out, "s1") {
		t.Errorf("bob cannot see s1:\n%s", out)
	}
	if out, err := e.Kubectl(t, "bob", "vm", "-n", ns, "snapshot", name, "s2"); err == nil || !strings.Contains(out, "you are not allowed to snapshot VM "+ns+"/"+name) {
		t.Errorf("bob's snapshot: %v\n%s", err, out)
	}
	if out, err := e.Kubectl(t, "bob", "vm", "-n", ns, "restore", name, "s1"); err == nil || !strings.Contains(out, "you are not allowed to restore VM "+ns+"/"+name) {
		t.Errorf("bob's restore: %v\n%s", err, out)
	}

	// A restore to a missing snapshot is refused up front: nothing created.
	out, err := e.Kubectl(t, "alice", "vm", "-n", ns, "restore", name, "nope", "--wait")
	if err == nil || !strings.Contains(out, `cannot restore VM `+ns+`/`+name+`: spec.snapshotName: Invalid value: "nope": no such VirtualMachineSnapshot in this namespace`) {
		t.Errorf("restore to a missing snapshot: %v\n%s", err, out)
	}
	if out := e.MustKubectl(t, "alice", "-n", ns, "get", "vmrestore"); !strings.Contains(out, "No resources found") {
		t.Errorf("a refused restore left an object:\n%s", out)
	}

	// Let the guest run on, then restore: it resumes from the snapshot.
	e.WaitLog(t, vm, fmt.Sprintf("TICK %d\r\n", atSnapshot+6))
	before := lastTick(e.ConsoleLog(vm))
	mark := len(e.ConsoleLog(vm))
	out = e.MustKubectl(t, "alice", "vm", "-n", ns, "restore", name, "s1", "--wait")
	t.Logf("kubectl vm restore: %s", strings.TrimSpace(out))
	if !regexp.MustCompile(`^restore ` + ns + `/` + name + `-restore-\w+: .*Succeeded in [0-9.]+s: the guest resumed from the memory saved in snapshot s1\n$`).MatchString(out) {
		t.Errorf("kubectl vm restore --wait printed %q", out)
	}
	var after string
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		after = e.ConsoleLog(vm)
		if len(after) >= mark { // virtlogd restarts the log with the new QEMU
			after = after[mark:]
		}
		return firstTick(after) > 0, nil
	})
	if err != nil {
		t.Fatalf("no tick after the restore; console:\n%s", after)
	}
	t.Logf("ticks: %d at the snapshot, %d before the restore, %d right after it", atSnapshot, before, firstTick(after))
	if first := firstTick(after); first >= before || first > atSnapshot+3 {
		t.Errorf("the guest did not resume from the snapshot: tick %d after the restore, %d at the snapshot, %d before", first, atSnapshot, before)
	}
	if strings.Contains(after, "VESSEL-GUEST READY") {
		t.Errorf("the guest booted again after the restore")
	}
	e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)

	// Deleting the VM deletes its snapshots and restores.
	e.MustKubectl(t, "alice", "-n", ns, "delete", "vm", name, "--timeout=120s")
	err = wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		snaps, err := e.Admin.VesselV1alpha1().VirtualMachineSnapshots(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		restores, err := e.Admin.VesselV1alpha1().VirtualMachineRestores(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(snaps.Items) == 0 && len(restores.Items) == 0, nil
	})
	if err != nil {
		out, _ := e.Kubectl(t, "admin", "-n", ns, "get", "vmsnap,vmrestore", "-o", "yaml")
		t.Errorf("snapshots or restores left after their VM was deleted:\n%s", out)
	}
	if _, err := os.Stat(framework.VMDir(e.HypervisorOf(t, vm), vm)); !os.IsNotExist(err) {
		t.Errorf("the VM's files (and its snapshot data) are still on the node: %v", err)
	}
}

func apply(t *testing.T, e *framework.Env, user, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	e.MustKubectl(t, user, "apply", "-f", path)
}

// waitCan waits for RBAC: kube-controller-manager aggregates vessel.dev's
// roles into edit and view asynchronously.
func waitCan(t *testing.T, e *framework.Env, user, ns, verb, resource, want string) {
	t.Helper()
	var out string
	err := wait.PollUntilContextTimeout(context.Background(), 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, _ = e.Kubectl(t, user, "auth", "can-i", verb, resource, "-n", ns)
		return strings.TrimSpace(out) == want, nil
	})
	if err != nil {
		t.Fatalf("%s can-i %s %s in %s: %q, want %s", user, verb, resource, ns, out, want)
	}
}

var tickRE = regexp.MustCompile(`TICK (\d+)\r?\n`)

func ticks(log string) []int {
	var out []int
	for _, m := range tickRE.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

func lastTick(log string) int {
	t := ticks(log)
	if len(t) == 0 {
		return 0
	}
	return t[len(t)-1]
}

func firstTick(log string) int {
	t := ticks(log)
	if len(t) == 0 {
		return 0
	}
	return t[0]
}
