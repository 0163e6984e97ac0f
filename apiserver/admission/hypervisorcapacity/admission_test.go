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

package hypervisorcapacity

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

func TestResizeMustFitTheHypervisor(t *testing.T) {
	// hv1 has 4 vCPUs and 2Gi for VMs; team-a/other uses 1 and 1536Mi.
	hvs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = hvs.Add(&v1alpha1.Hypervisor{
		ObjectMeta: metav1.ObjectMeta{Name: "hv1"},
		Status:     v1alpha1.HypervisorStatus{Allocatable: v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("2Gi"), VMs: 10}},
	})
	vms := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	stored := map[string]v1alpha1.VirtualMachineSpec{
		"demo":    {NodeName: "hv1", CPUs: 1, Memory: resource.MustParse("128Mi")},
		"other":   {NodeName: "hv1", CPUs: 1, Memory: resource.MustParse("1536Mi")},
		"elsewhr": {NodeName: "hv2", CPUs: 8, Memory: resource.MustParse("8Gi")},
	}
	for name, spec := range stored {
		_ = vms.Add(&v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name}, Spec: spec})
	}
	p := New()
	p.vms, p.hypervisors = listers.NewVirtualMachineLister(vms), listers.NewHypervisorLister(hvs)
	p.SetReadyFunc(func() bool { return true })

	vm := func(node string, cpus int32, memory string) *vessel.VirtualMachine {
		return &vessel.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "demo"},
			Spec:       vessel.VirtualMachineSpec{NodeName: node, CPUs: cpus, Memory: resource.MustParse(memory)},
		}
	}
	for _, tc := range []struct {
		name     string
		obj, old *vessel.VirtualMachine
		sub      string
		refused  []string // field paths and what the message says
	}{
		{"grows within the room left", vm("hv1", 3, "512Mi"), vm("hv1", 1, "128Mi"), "", nil},
		{"grows memory past the room left", vm("hv1", 1, "1Gi"), vm("hv1", 1, "128Mi"), "", []string{
			"spec.memory", "hypervisor hv1, which runs this VM, has 2Gi allocatable memory, of which its other VMs ask for 1536Mi: at most 512Mi fit"}},
		{"grows to the host's whole memory", vm("hv1", 1, "2Gi"), vm("hv1", 1, "128Mi"), "", []string{"spec.memory", "at most 512Mi fit"}},
		{"grows cpus past the room left", vm("hv1", 4, "128Mi"), vm("hv1", 1, "128Mi"), "", []string{
			"spec.cpus", "has 4 allocatable vCPUs, of which its other VMs ask for 1: at most 3 fit"}},
		{"shrinks", vm("hv1", 1, "96Mi"), vm("hv1", 2, "128Mi"), "", nil},
		{"keeps a size the host no longer has room for", vm("hv1", 8, "4Gi"), vm("hv1", 8, "4Gi"), "", nil},
		{"not bound: the scheduler checks", vm("", 64, "64Gi"), vm("", 1, "128Mi"), "", nil},
		{"hypervisor gone", vm("hv9", 64, "64Gi"), vm("hv9", 1, "128Mi"), "", nil},
		{"status writes are not resizes", vm("hv1", 64, "64Gi"), vm("hv1", 1, "128Mi"), "status", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs := admission.NewAttributesRecord(tc.obj, tc.old, vessel.Kind("VirtualMachine").WithVersion(""), "team-a", "demo",
				vessel.Resource("virtualmachines").WithVersion("v1alpha1"), tc.sub, admission.Update, nil, false, &user.DefaultInfo{Name: "alice"})
			err := p.Validate(context.Background(), attrs, nil)
			if tc.refused == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want a 422 Invalid", err)
			}
			for _, want := range tc.refused {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q lacks %q", err.Error(), want)
				}
			}
		})
	}
}
