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

package clone

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// A tenant clones a running guest counting on its console, with memory: the
// clone runs at once without booting, counts on from where the source was,
// has its own UID, MAC, domain and disk (neither sees the other's writes),
// and its guest took its new hostname. A disks-only clone boots from the
// source's disks as they were. Another tenant can clone neither the VM nor
// its snapshot, and nobody clones without the right to create VMs.
func TestCloneWithKubectl(t *testing.T) {
	e := framework.Require(t)
	guest := mustGuest(t)
	nsA, nsB := "clone-a-"+utilrand.String(5), "clone-b-"+utilrand.String(5)
	apply(t, e, "admin", fmt.Sprintf(tenants, nsA, nsB))
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "delete", "namespace", nsA, nsB, "--wait=false") })
	waitCan(t, e, "alice", nsA, "create", "virtualmachineclones.vessel.dev", "yes")
	waitCan(t, e, "bob", nsB, "create", "virtualmachineclones.vessel.dev", "yes")

	apply(t, e, "alice", fmt.Sprintf(vmManifest, nsA, "demo", guest))
	src := e.WaitPhase(t, nsA, "demo", v1alpha1.VirtualMachineRunning)
	waitConsole(t, e, src, 2*time.Minute, "counts to 3", func(log string) bool { return lastTick(log).n >= 3 })

	beforeClone := lastTick(e.ConsoleLog(src)).n
	out := e.MustKubectl(t, "alice", "vm", "-n", nsA, "clone", "demo", "copy", "--wait")
	t.Logf("kubectl vm clone: %s", strings.TrimSpace(out))
	atClone := lastTick(e.ConsoleLog(src)).n
	want := regexp.MustCompile(`^clone ` + nsA + `/copy: (Pending\.\.\. )?(InProgress\.\.\. )?Succeeded in [0-9.]+s: VM copy resumed from the memory of VM demo; its guest acknowledged its new identity\n$`)
	if !want.MatchString(out) {
		t.Errorf("kubectl vm clone --wait printed %q, want it to match %s", out, want)
	}

	clone := e.WaitPhase(t, nsA, "copy", v1alpha1.VirtualMachineRunning)
	if clone.UID == src.UID || clone.Annotations[v1alpha1.AnnotationClone] == "" {
		t.Errorf("clone UID %s (source %s), annotations %v", clone.UID, src.UID, clone.Annotations)
	}
	if len(clone.Status.Interfaces) != 1 || len(src.Status.Interfaces) != 1 ||
		clone.Status.Interfaces[0].MACAddress == "" || clone.Status.Interfaces[0].MACAddress == src.Status.Interfaces[0].MACAddress {
		t.Errorf("MACs: clone %+v, source %+v", clone.Status.Interfaces, src.Status.Interfaces)
	}
	// The domain UUID is the VM UID: a QEMU runs for each.
	framework.QEMUPID(t, string(clone.UID))
	framework.QEMUPID(t, string(src.UID))

	log := waitConsole(t, e, clone, time.Minute, "tick as copy", func(log string) bool {
		for _, tk := range ticks(log) {
			if tk.host == "copy" {
				return true
			}
		}
		return false
	})
	if strings.Contains(log, "VESSEL-GUEST READY") {
		t.Errorf("the clone booted:\n%s", log)
	}
	if !strings.Contains(log, "VESSEL-CLONE instance-id="+string(clone.UID)+" hostname=copy") {
		t.Errorf("the clone's guest did not report its new identity:\n%s", log)
	}
	first := ticks(log)[0]
	t.Logf("the source was at tick %d when the clone was asked for and at %d when it was done; the clone's first tick is %d", beforeClone, atClone, first.n)
	if first.n < beforeClone || first.n > atClone+1 {
		t.Errorf("the clone's first tick is %d; the source was at %d..%d while it was cloned: the clone did not run on from the source's memory", first.n, beforeClone, atClone)
	}

	// Writes stay apart: let both run on, then read what each saw of the
	// other's sector.
	waitConsole(t, e, clone, time.Minute, "run on", func(log string) bool { return lastTick(log).n >= first.n+4 })
	waitConsole(t, e, src, time.Minute, "run on", func(log string) bool { return lastTick(log).n >= atClone+4 })
	frozen := -1
	for _, tk := range ticks(e.ConsoleLog(clone)) {
		if tk.host != "copy" {
			continue
		}
		n := markTick(tk.other)
		if !strings.HasPrefix(tk.other, "MARK demo ") || n > atClone+1 || (frozen >= 0 && n != frozen) {
			t.Errorf("the clone read %q in the source's sector at its tick %d: want the source's last mark before the clone (tick %d), unchanged", tk.other, tk.n, atClone)
		}
		frozen = n
	}
	for _, tk := range ticks(e.ConsoleLog(src)) {
		if tk.other != "" {
			t.Errorf("the source read %q in the clone's sector at its tick %d: the clone's writes reached it", tk.other, tk.n)
		}
	}

	// The clone object says what happened.
	cl, err := e.Admin.VesselV1alpha1().VirtualMachineClones(nsA).Get(context.Background(), "copy", metav1.GetOptions{})
	must(t, err, "get clone")
	if cl.Status.Phase != v1alpha1.CloneSucceeded || !cl.Status.MemoryRestored || !cl.Status.IdentityAcknowledged ||
		cl.Status.VirtualMachineUID != string(clone.UID) || cl.Status.SourceVirtualMachineUID != string(src.UID) || cl.Status.Duration == nil {
		t.Errorf("clone status: %+v", cl.Status)
	}
	t.Logf("memory clone took %v (creation to running guest)", cl.Status.Duration.Duration)
	if out := e.MustKubectl(t, "bob", "-n", nsA, "get", "vmclone"); !strings.Contains(out, "copy") || !strings.Contains(out, "Succeeded") {
		t.Errorf("kubectl get vmclone:\n%s", out)
	}

	// Disks only: a VM that boots from the source's disks as they were.
	e.MustKubectl(t, "alice", "vm", "-n", nsA, "clone", "demo", "cold", "--no-memory", "--wait")
	atCold := lastTick(e.ConsoleLog(src)).n
	cold := e.WaitPhase(t, nsA, "cold", v1alpha1.VirtualMachineRunning)
	log = waitConsole(t, e, cold, 2*time.Minute, "boot and tick as cold", func(log string) bool { return lastTick(log).host == "cold" })
	if !strings.Contains(log, "VESSEL-GUEST READY") {
		t.Errorf("the disks-only clone did not boot:\n%s", log)
	}
	if tk := lastTick(log); !strings.HasPrefix(tk.other, "MARK demo ") || markTick(tk.other) > atCold+1 || markTick(tk.other) < atClone {
		t.Errorf("the disks-only clone read %q in the source's sector; the source was at tick %d when cloned", tk.other, atCold)
	}

	// Tenants: bob only views namespace A, and namespace B has no VM demo.
	e.MustKubectl(t, "alice", "vm", "-n", nsA, "snapshot", "demo", "s1", "--wait")
	if out, err := e.Kubectl(t, "bob", "vm", "-n", nsA, "clone", "demo", "mine"); err == nil || !strings.Contains(out, "you are not allowed to clone VM "+nsA+"/demo") {
		t.Errorf("bob cloned alice's VM: %v\n%s", err, out)
	}
	if out, err := e.Kubectl(t, "bob", "vm", "-n", nsA, "clone", "demo", "mine", "--snapshot", "s1"); err == nil || !strings.Contains(out, "you are not allowed to clone VM "+nsA+"/demo") {
		t.Errorf("bob cloned alice's snapshot: %v\n%s", err, out)
	}
	if out, err := e.Kubectl(t, "bob", "vm", "-n", nsB, "clone", "demo", "mine"); err == nil || !strings.Contains(out, "no such VirtualMachine in this namespace") {
		t.Errorf("bob cloned a VM of another namespace: %v\n%s", err, out)
	}
	if out, err := e.Kubectl(t, "bob", "vm", "-n", nsB, "clone", "demo", "mine", "--snapshot", "s1"); err == nil || !strings.Contains(out, "no such VirtualMachineSnapshot in this namespace") {
		t.Errorf("bob cloned a snapshot of another namespace: %v\n%s", err, out)
	}
	// carol may create clones and read VMs in namespace A, but not create
	// VMs: a clone would create one for her.
	apply(t, e, "admin", fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cloner, namespace: %[1]s}
rules:
- {apiGroups: [vessel.dev], resources: [virtualmachineclones], verbs: [create]}
- {apiGroups: [vessel.dev], resources: [virtualmachines], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: carol-cloner, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cloner}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: carol}]
`, nsA))
	refused := `cloning needs create on virtualmachines in namespace ` + nsA + `, which user "carol" lacks`
	var out2 string
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, time.Minute, true, func(context.Context) (bool, error) {
		var err error
		out2, err = e.Kubectl(t, "admin", "vm", "-n", nsA, "clone", "demo", "carols", "--as", "carol")
		if err == nil {
			return false, fmt.Errorf("carol cloned without the right to create VMs")
		}
		return strings.Contains(out2, refused), nil // until her role is seen
	})
	if err != nil {
		t.Errorf("carol's clone: %v\n%s", err, out2)
	}
	if _, err := e.Admin.VesselV1alpha1().VirtualMachines(nsA).Get(context.Background(), "mine", metav1.GetOptions{}); err == nil {
		t.Errorf("a refused clone created VM mine")
	}
}
