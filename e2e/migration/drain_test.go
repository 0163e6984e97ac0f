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
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// kubectl vm drain with three running VMs moves all of them, two at a
// time, and leaves the hypervisor cordoned and empty; uncordon makes it
// schedulable again.
func TestDrainMovesEveryRunningVM(t *testing.T) {
	e := env(t)
	dumpAgentLogs(t, e)
	ns := namespace(t, e, "migration-drain")
	ctx := context.Background()
	from, to := e.Hypervisors[0].Name, e.Hypervisors[1].Name
	// The VMs all start on from: to is cordoned meanwhile.
	e.MustKubectl(t, "admin", "vm", "drain", to)
	var names []string
	for i := range 3 {
		name := fmt.Sprintf("guest-%d", i)
		names = append(names, name)
		if _, err := e.Admin.VesselV1alpha1().VirtualMachines(ns).Create(ctx, countingVM(ns, name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		vm := e.WaitPhase(t, ns, name, v1alpha1.VirtualMachineRunning)
		if vm.Spec.NodeName != from {
			t.Fatalf("VM %s runs on %s while %s is cordoned", name, vm.Spec.NodeName, to)
		}
	}
	e.MustKubectl(t, "admin", "vm", "uncordon", to)

	start := time.Now()
	out := e.MustKubectl(t, "admin", "vm", "drain", from, "--max-parallel", "2", "--wait")
	t.Logf("kubectl vm drain (%.1fs):\n%s", time.Since(start).Seconds(), out)
	if !strings.Contains(out, "hypervisor/"+from+" drained") {
		t.Fatalf("drain did not finish:\n%s", out)
	}
	hv, err := e.Admin.VesselV1alpha1().Hypervisors().Get(ctx, from, metav1.GetOptions{})
	if err != nil || !hv.Spec.Unschedulable {
		t.Fatalf("hypervisor %s is not cordoned after the drain (%v)", from, err)
	}
	left, err := e.Admin.VesselV1alpha1().VirtualMachines(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", from).String(),
	})
	if err != nil || len(left.Items) != 0 {
		t.Fatalf("VMs still bound to %s: %v (%v)", from, left, err)
	}
	for _, name := range names {
		vm := e.WaitVM(t, ns, name, time.Minute, "Running on "+to, func(vm *v1alpha1.VirtualMachine) bool {
			return vm.Spec.NodeName == to && vm.Status.Phase == v1alpha1.VirtualMachineRunning
		})
		if doms := e.DomainsOf(t, vm); len(doms) != 1 || doms[0] != to {
			t.Fatalf("VM %s has domains on %v, want only on %s", name, doms, to)
		}
	}
	e.MustKubectl(t, "admin", "vm", "uncordon", from)
}
