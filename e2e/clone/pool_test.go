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
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

const poolManifest = `apiVersion: vessel.dev/v1alpha1
kind: VirtualMachinePool
metadata:
  name: web
  namespace: %[1]s
spec:
  replicas: 0
  template:
    metadata:
      labels: {app: web}
  warm:
    snapshotName: %[2]s
    ready: 2
`

// A warm pool keeps two paused memory clones of a snapshot; scaling up
// hands those out first (unpaused, already told who they are), and makes
// new warm ones. Deleting the snapshot stops new clones with a reason but
// keeps the data the pool's VMs run on until the last of them is gone.
func TestWarmPool(t *testing.T) {
	e := framework.Require(t)
	guest := mustGuest(t)
	ns := "pool-" + utilrand.String(5)
	apply(t, e, "admin", fmt.Sprintf(tenants, ns, ns+"-b"))
	t.Cleanup(func() { _, _ = e.Kubectl(t, "admin", "delete", "namespace", ns, ns+"-b", "--wait=false") })
	waitCan(t, e, "alice", ns, "patch", "virtualmachinepools.vessel.dev/scale", "yes")

	apply(t, e, "alice", fmt.Sprintf(vmManifest, ns, "demo", guest))
	src := e.WaitPhase(t, ns, "demo", v1alpha1.VirtualMachineRunning)
	waitConsole(t, e, src, 2*time.Minute, "counts to 3", func(log string) bool { return lastTick(log).n >= 3 })
	e.MustKubectl(t, "alice", "vm", "-n", ns, "snapshot", "demo", "golden", "--wait")
	snap, err := e.Admin.VesselV1alpha1().VirtualMachineSnapshots(ns).Get(context.Background(), "golden", metav1.GetOptions{})
	must(t, err, "get snapshot")
	imageDir := filepath.Join(e.HypervisorOf(t, src).AgentStateDir(), "clone-images", "snapshot-"+string(snap.UID))
	if _, err := os.Stat(filepath.Join(imageDir, "memory.save")); err != nil {
		t.Fatalf("the memory snapshot kept no clone image: %v", err)
	}

	apply(t, e, "alice", fmt.Sprintf(poolManifest, ns, "golden"))
	pool := waitPool(t, e, ns, "web", 3*time.Minute, "2 ready warm clones", func(p *v1alpha1.VirtualMachinePool) bool {
		return p.Status.ReadyWarmReplicas == 2 && p.Status.Replicas == 0
	})
	warm := poolVMs(t, e, ns, v1alpha1.PoolMemberWarm)
	if len(warm) != 2 {
		t.Fatalf("warm VMs: %v", names(warm))
	}
	for _, vm := range warm {
		if vm.Status.Phase != v1alpha1.VirtualMachinePaused || vm.Labels["app"] != "web" {
			t.Errorf("warm VM %s: phase %s, labels %v", vm.Name, vm.Status.Phase, vm.Labels)
		}
		if log := e.ConsoleLog(vm); strings.Contains(log, "VESSEL-GUEST READY") || !strings.Contains(log, "VESSEL-CLONE instance-id="+string(vm.UID)) {
			t.Errorf("warm VM %s booted, or was not told its identity:\n%s", vm.Name, log)
		}
	}
	out := e.MustKubectl(t, "alice", "-n", ns, "get", "vmpool", "web")
	if !strings.Contains(out, "2/2") {
		t.Errorf("kubectl get vmpool:\n%s", out)
	}

	// Scaling up takes the warm ones first.
	start := time.Now()
	e.MustKubectl(t, "alice", "-n", ns, "scale", "vmpool", "web", "--replicas=1")
	var handed *v1alpha1.VirtualMachine
	err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, vm := range poolVMs(t, e, ns, v1alpha1.PoolMemberReplica) {
			if vm.Status.Phase == v1alpha1.VirtualMachineRunning {
				handed = vm
				return true, nil
			}
		}
		return false, nil
	})
	must(t, err, "a replica running after scaling to 1")
	t.Logf("scale to 1 -> a running replica in %v", time.Since(start))
	if !slices.Contains(names(warm), handed.Name) {
		t.Errorf("the replica %s is not one of the warm clones %v", handed.Name, names(warm))
	}
	before := lastTick(e.ConsoleLog(handed)).n
	waitConsole(t, e, handed, time.Minute, "run on after being handed out", func(log string) bool { return lastTick(log).n > before })
	waitPool(t, e, ns, "web", 3*time.Minute, "1 running replica and 2 ready warm clones again", func(p *v1alpha1.VirtualMachinePool) bool {
		return p.Status.Replicas == 1 && p.Status.RunningReplicas == 1 && p.Status.ReadyWarmReplicas == 2
	})

	// Deleting the snapshot: refused for new clones, the data kept for the
	// pool's VMs.
	e.MustKubectl(t, "alice", "-n", ns, "delete", "vmsnap", "golden", "--timeout=60s")
	e.MustKubectl(t, "alice", "-n", ns, "scale", "vmpool", "web", "--replicas=4")
	pool = waitPool(t, e, ns, "web", 2*time.Minute, "3 replicas and a ReplicaFailure", func(p *v1alpha1.VirtualMachinePool) bool {
		return p.Status.Replicas == 3 && meta.IsStatusConditionTrue(p.Status.Conditions, v1alpha1.PoolConditionReplicaFailure)
	})
	if c := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.PoolConditionReplicaFailure); !strings.Contains(c.Message, "snapshot golden does not exist") {
		t.Errorf("ReplicaFailure: %q", c.Message)
	}
	frozen, _ := filepath.Glob(filepath.Join(imageDir, "disk-*"))
	if len(frozen) == 0 {
		t.Errorf("the snapshot's frozen disks went while the pool's VMs run on them")
	}
	for _, vm := range poolVMs(t, e, ns, v1alpha1.PoolMemberReplica) {
		vm := vm
		before := lastTick(e.ConsoleLog(vm)).n
		waitConsole(t, e, vm, time.Minute, "run on without its snapshot", func(log string) bool { return lastTick(log).n > before+1 })
	}

	// The last VM gone, the data goes.
	e.MustKubectl(t, "alice", "-n", ns, "delete", "vmpool", "web", "--timeout=120s")
	err = wait.PollUntilContextTimeout(context.Background(), time.Second, 4*time.Minute, true, func(context.Context) (bool, error) {
		_, err := os.Stat(imageDir)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		left, _ := filepath.Glob(filepath.Join(imageDir, "*"))
		vms, _ := e.Kubectl(t, "admin", "-n", ns, "get", "vm")
		t.Errorf("the snapshot's clone image is still there after the pool was deleted: %v\n%s", left, vms)
	}
}

func waitPool(t *testing.T, e *framework.Env, ns, name string, timeout time.Duration, what string, ok func(*v1alpha1.VirtualMachinePool) bool) *v1alpha1.VirtualMachinePool {
	t.Helper()
	var last *v1alpha1.VirtualMachinePool
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := e.Admin.VesselV1alpha1().VirtualMachinePools(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return ok(p), nil
	})
	if err != nil {
		out, _ := e.Kubectl(t, "admin", "-n", ns, "get", "vm,vmclone,vmpool", "-o", "wide")
		t.Fatalf("pool %s/%s: %s within %v; status %+v\n%s", ns, name, what, timeout, last.Status, out)
	}
	return last
}

func poolVMs(t *testing.T, e *framework.Env, ns, role string) []*v1alpha1.VirtualMachine {
	t.Helper()
	list, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.Set{v1alpha1.LabelPool: "web", v1alpha1.LabelPoolMember: role}.String(),
	})
	must(t, err, "list pool VMs")
	var out []*v1alpha1.VirtualMachine
	for i := range list.Items {
		if list.Items[i].DeletionTimestamp == nil {
			out = append(out, &list.Items[i])
		}
	}
	return out
}

func names(vms []*v1alpha1.VirtualMachine) []string {
	var out []string
	for _, vm := range vms {
		out = append(out, vm.Name)
	}
	return out
}
