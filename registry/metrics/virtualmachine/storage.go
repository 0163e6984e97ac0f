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

// Package virtualmachine serves metrics.vessel.dev's virtualmachines: the
// current usage of each VM, read-only, joined from the VMs in storage
// (namespaces, names, labels, RBAC as for any namespaced resource) and the
// usage the apiserver gathered from the agents. It has no storage of its
// own, like metrics-server's pods.
package virtualmachine

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/metrics"
	"github.com/vessel-vm/vessel/apis/vessel"
)

// Usage is where the VMs' usage comes from (controller/usage's Store).
type Usage interface {
	// VMUsage is the usage of the VM with uid as reported by the agent of
	// node, the hypervisor the VM is bound to; false when none is known.
	// Only Timestamp, Window and Usage are set.
	VMUsage(uid types.UID, node string) (*metrics.VirtualMachineMetrics, bool)
}

// VMs reads the vessel.dev VirtualMachines (their storage).
type VMs interface {
	rest.Getter
	rest.Lister
}

// REST is the read-only virtualmachines resource of metrics.vessel.dev.
type REST struct {
	vms   VMs
	usage Usage
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.TableConvertor       = &REST{}
	_ rest.SingularNameProvider = &REST{}
	_ rest.KindProvider         = &REST{}
)

// NewStorage serves usage from usage, for the VMs vms has.
func NewStorage(vms VMs, usage Usage) *REST {
	return &REST{vms: vms, usage: usage}
}

func (r *REST) New() runtime.Object     { return &metrics.VirtualMachineMetrics{} }
func (r *REST) NewList() runtime.Object { return &metrics.VirtualMachineMetricsList{} }
func (r *REST) Destroy()                {}
func (r *REST) NamespaceScoped() bool   { return true }
func (r *REST) GetSingularName() string { return "virtualmachine" }
func (r *REST) Kind() string            { return "VirtualMachineMetrics" }

// Get is the usage of the VM name: NotFound when there is no such VM, or
// its usage is not known (not running, or read only once so far).
func (r *REST) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.vms.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, apierrors.NewNotFound(metrics.Resource("virtualmachines"), name)
		}
		return nil, err
	}
	vm, ok := obj.(*vessel.VirtualMachine)
	if !ok {
		return nil, apierrors.NewInternalError(errNotVM(obj))
	}
	m, ok := r.metricsOf(vm)
	if !ok {
		return nil, apierrors.NewNotFound(metrics.Resource("virtualmachines"), name)
	}
	return m, nil
}

// List is the usage of the VMs the options select (namespace from the
// request, labels, metadata.name) that have any.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	vmOpts := &metainternalversion.ListOptions{}
	if options != nil {
		vmOpts.LabelSelector = options.LabelSelector
		vmOpts.FieldSelector = options.FieldSelector
	}
	obj, err := r.vms.List(ctx, vmOpts)
	if err != nil {
		return nil, err
	}
	vms, ok := obj.(*vessel.VirtualMachineList)
	if !ok {
		return nil, apierrors.NewInternalError(errNotVM(obj))
	}
	out := &metrics.VirtualMachineMetricsList{}
	for i := range vms.Items {
		if m, ok := r.metricsOf(&vms.Items[i]); ok {
			out.Items = append(out.Items, *m)
		}
	}
	return out, nil
}

// metricsOf names the VM's usage after the VM.
func (r *REST) metricsOf(vm *vessel.VirtualMachine) (*metrics.VirtualMachineMetrics, bool) {
	m, ok := r.usage.VMUsage(vm.UID, vm.Spec.NodeName)
	if !ok {
		return nil, false
	}
	m.ObjectMeta = metav1.ObjectMeta{
		Name:              vm.Name,
		Namespace:         vm.Namespace,
		Labels:            vm.Labels,
		CreationTimestamp: metav1.NewTime(time.Now()),
	}
	return m, true
}

// ConvertToTable implements rest.TableConvertor.
func (r *REST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return tableConvertor.ConvertToTable(ctx, object, tableOptions)
}

func errNotVM(obj runtime.Object) error {
	return fmt.Errorf("the VM storage returned %T", obj)
}
