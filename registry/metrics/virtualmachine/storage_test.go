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

package virtualmachine

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/vessel-vm/vessel/apis/metrics"
	"github.com/vessel-vm/vessel/apis/vessel"
)

// fakeVMs is the VM storage of one namespace.
type fakeVMs struct{ items []vessel.VirtualMachine }

func (f *fakeVMs) Get(_ context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	for i := range f.items {
		if f.items[i].Name == name {
			return &f.items[i], nil
		}
	}
	return nil, apierrors.NewNotFound(vessel.Resource("virtualmachines"), name)
}

func (f *fakeVMs) List(context.Context, *metainternalversion.ListOptions) (runtime.Object, error) {
	return &vessel.VirtualMachineList{Items: f.items}, nil
}

func (f *fakeVMs) NewList() runtime.Object { return &vessel.VirtualMachineList{} }

func (f *fakeVMs) ConvertToTable(context.Context, runtime.Object, runtime.Object) (*metav1.Table, error) {
	return nil, nil
}

// fakeUsage knows the usage of uids measured on hv-1.
type fakeUsage map[types.UID]int64

func (f fakeUsage) VMUsage(uid types.UID, node string) (*metrics.VirtualMachineMetrics, bool) {
	milli, ok := f[uid]
	if !ok || node != "hv-1" {
		return nil, false
	}
	return &metrics.VirtualMachineMetrics{
		Timestamp: metav1.NewTime(time.Now()),
		Window:    metav1.Duration{Duration: 15 * time.Second},
		Usage:     corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(milli, resource.DecimalSI)},
	}, true
}

func vm(name, uid, node string) vessel.VirtualMachine {
	return vessel.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, UID: types.UID(uid), Labels: map[string]string{"app": name}},
		Spec:       vessel.VirtualMachineSpec{NodeName: node},
	}
}

func TestGetAndListJoinVMsWithTheirUsage(t *testing.T) {
	vms := &fakeVMs{items: []vessel.VirtualMachine{
		vm("busy", "u-busy", "hv-1"),
		vm("stopped", "u-stopped", "hv-1"),
		vm("elsewhere", "u-elsewhere", "hv-2"),
	}}
	r := NewStorage(vms, fakeUsage{"u-busy": 1012, "u-elsewhere": 5})
	ctx := genericapirequest.WithNamespace(context.Background(), "team-a")

	obj, err := r.Get(ctx, "busy", &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := obj.(*metrics.VirtualMachineMetrics)
	if cpu := m.Usage[corev1.ResourceCPU]; m.Name != "busy" || m.Namespace != "team-a" || m.Labels["app"] != "busy" || cpu.MilliValue() != 1012 {
		t.Errorf("Get(busy) = %s/%s labels %v cpu %s; want team-a/busy with its labels and 1012m", m.Namespace, m.Name, m.Labels, cpu.String())
	}
	for _, name := range []string{"stopped", "elsewhere", "missing"} {
		if _, err := r.Get(ctx, name, &metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Get(%s) error = %v; want NotFound", name, err)
		} else if d := err.(apierrors.APIStatus).Status().Details; d.Group != metrics.GroupName {
			t.Errorf("Get(%s) NotFound names group %q; want %s", name, d.Group, metrics.GroupName)
		}
	}

	obj, err = r.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list := obj.(*metrics.VirtualMachineMetricsList)
	if len(list.Items) != 1 || list.Items[0].Name != "busy" {
		t.Errorf("List = %v; want only busy (stopped has no usage, elsewhere's is not from its own node)", list.Items)
	}
}
