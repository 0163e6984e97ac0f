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

package scheduler

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestPickMigrationTarget(t *testing.T) {
	hv := func(name string, mutate ...func(*v1alpha1.Hypervisor)) *v1alpha1.Hypervisor {
		h := &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": "a"}}}
		h.Status.Allocatable = v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("1Gi"), VMs: 10}
		h.Status.MigrationEndpoint = "10.250.0.1:7470"
		h.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionTrue}}
		for _, m := range mutate {
			m(h)
		}
		return h
	}
	vm := &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "u1"}}
	vm.Spec.NodeName, vm.Spec.CPUs, vm.Spec.Memory = "hv1", 1, resource.MustParse("512Mi")
	big := &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "b", UID: "u2"}}
	big.Spec.NodeName, big.Spec.CPUs, big.Spec.Memory = "hv3", 1, resource.MustParse("768Mi")
	cordoned := func(h *v1alpha1.Hypervisor) { h.Spec.Unschedulable = true }
	noEndpoint := func(h *v1alpha1.Hypervisor) { h.Status.MigrationEndpoint = "" }
	tests := []struct {
		name       string
		hvs        []*v1alpha1.Hypervisor
		bound      []*v1alpha1.VirtualMachine
		want       string
		wantTarget string
		wantReason string
	}{
		{name: "never the source", hvs: []*v1alpha1.Hypervisor{hv("hv1")}, wantReason: "no other hypervisor"},
		{name: "another one", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2")}, wantTarget: "hv2"},
		{name: "not a cordoned one", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2", cordoned), hv("hv3")}, wantTarget: "hv3"},
		{name: "only cordoned", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2", cordoned)}, wantReason: "1 unschedulable"},
		{name: "room counts", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv3")}, bound: []*v1alpha1.VirtualMachine{big, vm}, wantReason: "insufficient memory"},
		{name: "the one asked for", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2"), hv("hv3")}, want: "hv3", wantTarget: "hv3"},
		{name: "asked for the source", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2")}, want: "hv1", wantReason: "already runs"},
		{name: "without a migration endpoint", hvs: []*v1alpha1.Hypervisor{hv("hv1"), hv("hv2", noEndpoint)}, wantReason: "no other hypervisor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target, reason := PickMigrationTarget(vm, tt.hvs, tt.bound, tt.want)
			if target != tt.wantTarget {
				t.Fatalf("target = %q (%s), want %q", target, reason, tt.wantTarget)
			}
			if !strings.Contains(reason, tt.wantReason) {
				t.Fatalf("reason = %q, want it to contain %q", reason, tt.wantReason)
			}
		})
	}
}
