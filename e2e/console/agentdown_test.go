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

package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/e2e/framework"
)

// TestAgentDown is what a tenant sees while the agent of their VM's
// hypervisor is down: the VM's Ready turns Unknown saying why (the way
// pods on a NotReady node do), console and logs refuse at once with a
// message naming the hypervisor and the silence and no internal address,
// and once the agent is back Ready is True again. The guest runs on
// throughout (same QEMU process).
func TestAgentDown(t *testing.T) {
	e := requireEnv(t)
	name := uniqueName("orphaned")
	vm := e.RunningVM(t, "team-a", name)
	hv := vm.Status.NodeName
	pid := framework.QEMUPID(t, string(vm.UID))

	if err := e.Cluster.KillAgent(hv); err != nil {
		t.Fatal(err)
	}
	restarted := false
	restart := func() {
		if restarted {
			return
		}
		restarted = true
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := e.Cluster.RestartAgent(ctx, hv); err != nil {
			t.Fatalf("restart the agent: %v", err)
		}
	}
	t.Cleanup(restart)

	notReady := "hypervisor " + hv + " is not ready: its agent has not reported for "
	// The heartbeat monitor gives an agent 40s of grace, then checks every 5s.
	got := e.WaitVM(t, "team-a", name, 2*time.Minute, "Ready=Unknown", func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
		return c != nil && c.Status == metav1.ConditionUnknown
	})
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
	if c.Reason != v1alpha1.VirtualMachineReasonHypervisorNotReady || !strings.HasPrefix(c.Message, notReady) {
		t.Errorf("Ready condition %s %q, want %s %q...", c.Reason, c.Message, v1alpha1.VirtualMachineReasonHypervisorNotReady, notReady)
	}

	t.Run("kubectl get vm shows it", func(t *testing.T) {
		out := e.kubectl(t, "alice", "", "get", "vm", "-n", "team-a", name, "--no-headers")
		if f := strings.Fields(out.stdout); len(f) < 3 || f[2] != "Unknown" {
			t.Errorf("kubectl get vm: READY is not Unknown:\n%s%s", out.stdout, out.stderr)
		}
	})

	hvObj, err := e.Admin.VesselV1alpha1().Hypervisors().Get(t.Context(), hv, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	endpoint := hvObj.Status.DaemonEndpoint
	for _, cmd := range [][]string{{"logs", name}, {"console", name}} {
		t.Run("kubectl vm "+cmd[0]+" refuses at once", func(t *testing.T) {
			start := time.Now()
			out := e.kubectl(t, "alice", "", append([]string{"vm", "-n", "team-a"}, cmd...)...)
			took := time.Since(start)
			if out.err == nil || !strings.Contains(out.stderr, notReady) {
				t.Errorf("kubectl vm %s: err %v, stderr:\n%s\nwant %q...", cmd[0], out.err, out.stderr, notReady)
			}
			if endpoint != "" && strings.Contains(out.stderr, endpoint) {
				t.Errorf("kubectl vm %s shows the agent's address %s:\n%s", cmd[0], endpoint, out.stderr)
			}
			if took > 20*time.Second {
				t.Errorf("kubectl vm %s took %v to refuse; it must not wait for the agent", cmd[0], took)
			}
		})
	}

	restart()
	e.WaitVM(t, "team-a", name, 2*time.Minute, "Ready=True again", func(vm *v1alpha1.VirtualMachine) bool {
		return meta.IsStatusConditionTrue(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady) &&
			vm.Status.Phase == v1alpha1.VirtualMachineRunning
	})
	if got := framework.QEMUPID(t, string(vm.UID)); got != pid {
		t.Errorf("QEMU pid %d after the agent's absence, was %d: the guest was restarted", got, pid)
	}
}
