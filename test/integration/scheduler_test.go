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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	apiservertesting "github.com/vessel-vm/vessel/apiserver/testing"
)

// The scheduler runs inside the apiserver: a VM that fits nowhere says why,
// and is bound as soon as a hypervisor with room turns Ready.
func TestSchedulerBindsWhenRoomAppears(t *testing.T) {
	s := apiservertesting.Start(t, apiservertesting.Options{})
	ctx := context.Background()
	vms := s.Client.VesselV1alpha1().VirtualMachines("default")

	big, err := vms.Create(ctx, &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Spec:       v1alpha1.VirtualMachineSpec{Memory: resource.MustParse("1Gi"), NodeSelector: map[string]string{"pool": "vm"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitCondition(t, s, big.Name, func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "no Hypervisor is registered")
	})

	// A Ready hypervisor that is too small and one without the label.
	registerHypervisor(t, s, "small", map[string]string{"pool": "vm"}, "512Mi")
	registerHypervisor(t, s, "unlabelled", nil, "8Gi")
	waitCondition(t, s, big.Name, func(vm *v1alpha1.VirtualMachine) bool {
		c := meta.FindStatusCondition(vm.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled)
		return c != nil && c.Message == "0/2 hypervisors are available: 1 didn't match the VM's nodeSelector, 1 insufficient memory."
	})

	registerHypervisor(t, s, "large", map[string]string{"pool": "vm"}, "4Gi")
	bound := waitCondition(t, s, big.Name, func(vm *v1alpha1.VirtualMachine) bool { return vm.Spec.NodeName != "" })
	if bound.Spec.NodeName != "large" {
		t.Errorf("bound to %q, want large", bound.Spec.NodeName)
	}
	if bound.Status.Phase != v1alpha1.VirtualMachineScheduled || !meta.IsStatusConditionTrue(bound.Status.Conditions, v1alpha1.VirtualMachineConditionScheduled) {
		t.Errorf("after binding: phase %s, conditions %+v", bound.Status.Phase, bound.Status.Conditions)
	}
}

func registerHypervisor(t *testing.T, s *apiservertesting.TestServer, name string, labels map[string]string, memory string) {
	t.Helper()
	ctx := context.Background()
	hvs := s.Client.VesselV1alpha1().Hypervisors()
	hv, err := hvs.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	hv.Status = v1alpha1.HypervisorStatus{
		Capacity:          v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse(memory), VMs: 10},
		Allocatable:       v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse(memory), VMs: 10},
		LastHeartbeatTime: &now,
		Conditions:        []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionTrue, Reason: "Heartbeat", LastTransitionTime: now}},
	}
	if _, err := hvs.UpdateStatus(ctx, hv, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitCondition(t *testing.T, s *apiservertesting.TestServer, name string, ok func(*v1alpha1.VirtualMachine) bool) *v1alpha1.VirtualMachine {
	t.Helper()
	var last *v1alpha1.VirtualMachine
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		vm, err := s.Client.VesselV1alpha1().VirtualMachines("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = vm
		return ok(vm), nil
	})
	if err != nil {
		t.Fatalf("VM %s never reached the expected state: %v; last spec.nodeName=%q status=%+v", name, err, last.Spec.NodeName, last.Status)
	}
	return last
}
