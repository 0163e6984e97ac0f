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

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
	"github.com/vessel-vm/vessel/controller/heartbeat"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

// When a hypervisor's agent goes silent, its VMs say so: Ready turns
// Unknown naming the hypervisor and the silence, as pods on a NotReady
// node do. VMs elsewhere are left alone.
func TestSilentHypervisorMarksItsVMsUnknown(t *testing.T) {
	s := apiservertesting.Start(t, apiservertesting.Options{DisableControllers: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory := informers.NewSharedInformerFactory(s.Client, 0)
	monitor, err := heartbeat.New(s.Client, factory)
	if err != nil {
		t.Fatal(err)
	}
	monitor.Period, monitor.Grace = 200*time.Millisecond, 2*time.Second
	factory.Start(ctx.Done())
	go monitor.Run(ctx)

	registerHypervisor(t, s, "silent", nil, "4Gi")
	registerHypervisor(t, s, "alive", nil, "4Gi")
	for vm, hv := range map[string]string{"on-silent": "silent", "on-alive": "alive"} {
		bindRunning(t, s, vm, hv)
	}
	// Keep "alive" heartbeating; "silent" never reports again.
	go func() {
		for ctx.Err() == nil {
			heartbeatNow(ctx, s, "alive")
			time.Sleep(300 * time.Millisecond)
		}
	}()

	got := waitCondition(t, s, "on-silent", func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
		return c != nil && c.Status == metav1.ConditionUnknown
	})
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.VirtualMachineConditionReady)
	if c.Reason != v1alpha1.VirtualMachineReasonHypervisorNotReady ||
		!strings.HasPrefix(c.Message, "hypervisor silent is not ready: its agent has not reported for more than ") {
		t.Errorf("Ready condition %s %q, want %s naming the hypervisor and the silence", c.Reason, c.Message, v1alpha1.VirtualMachineReasonHypervisorNotReady)
	}
	if got.Status.Phase != v1alpha1.VirtualMachineRunning {
		t.Errorf("phase %s: the monitor must not rewrite what only the agent observes", got.Status.Phase)
	}

	// The monitor checks every 200ms; over 10s of silence the marked VM
	// is rewritten only when the rounded silence moves on (2s, 5s, 10s),
	// and the VM on the other hypervisor not at all.
	writes := map[string]bool{got.ResourceVersion: true}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		vm, err := vms(s, "default").Get(ctx, "on-silent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writes[vm.ResourceVersion] = true
	}
	if len(writes) > 4 {
		t.Errorf("the marked VM was written %d times in 10s of silence; want a few", len(writes))
	}
	alive, err := vms(s, "default").Get(ctx, "on-alive", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(alive.Status.Conditions, v1alpha1.VirtualMachineConditionReady) {
		t.Errorf("the VM on the heartbeating hypervisor lost Ready: %+v", alive.Status.Conditions)
	}
}

// bindRunning creates a VM bound to hv whose agent reported it Running.
func bindRunning(t *testing.T, s *apiservertesting.TestServer, name, hv string) {
	t.Helper()
	ctx := context.Background()
	createVM(t, s, "default", newVM(name))
	if _, err := vms(s, "default").Bind(ctx, name, &v1alpha1.VirtualMachineBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Target: hv}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vm, err := vms(s, "default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vm.Status.Phase = v1alpha1.VirtualMachineRunning
	meta.SetStatusCondition(&vm.Status.Conditions, metav1.Condition{
		Type: v1alpha1.VirtualMachineConditionReady, Status: metav1.ConditionTrue, Reason: "GuestRunning", Message: "the guest is running",
	})
	if _, err := vms(s, "default").UpdateStatus(ctx, vm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// heartbeatNow posts a heartbeat for hv, as its agent would.
func heartbeatNow(ctx context.Context, s *apiservertesting.TestServer, name string) {
	hvs := s.Client.VesselV1alpha1().Hypervisors()
	hv, err := hvs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	now := metav1.Now()
	hv.Status.LastHeartbeatTime = &now
	meta.SetStatusCondition(&hv.Status.Conditions, metav1.Condition{Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionTrue, Reason: "Heartbeat"})
	_, _ = hvs.UpdateStatus(ctx, hv, metav1.UpdateOptions{})
}
