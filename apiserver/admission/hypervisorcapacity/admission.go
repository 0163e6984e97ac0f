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

// Package hypervisorcapacity is the VesselHypervisorCapacity admission
// plugin: a bound VM may not grow (cpus, memory) beyond what its
// Hypervisor has left. The scheduler checks room once, when it binds; a
// tenant who could then stop a 128Mi VM, resize it to the host's whole
// memory and start it again would make the host kill other tenants'
// guests.
package hypervisorcapacity

import (
	"context"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/admission"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apiserver/admission/initializer"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

// PluginName is the name to enable the plugin by.
const PluginName = "VesselHypervisorCapacity"

// Register adds the plugin to plugins.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) { return New(), nil })
}

// Plugin refuses growing a bound VM past its hypervisor's room.
type Plugin struct {
	*admission.Handler
	vms         listers.VirtualMachineLister
	hypervisors listers.HypervisorLister
}

var (
	_ admission.ValidationInterface          = &Plugin{}
	_ admission.InitializationValidator      = &Plugin{}
	_ initializer.WantsVesselInformerFactory = &Plugin{}
)

// New returns the plugin; it needs an informer factory before use.
func New() *Plugin {
	return &Plugin{Handler: admission.NewHandler(admission.Update)}
}

// SetVesselInformerFactory gives the plugin the VMs and hypervisors it sums.
func (p *Plugin) SetVesselInformerFactory(f informers.SharedInformerFactory) {
	vms, hvs := f.Vessel().V1alpha1().VirtualMachines(), f.Vessel().V1alpha1().Hypervisors()
	p.vms, p.hypervisors = vms.Lister(), hvs.Lister()
	p.SetReadyFunc(func() bool { return vms.Informer().HasSynced() && hvs.Informer().HasSynced() })
}

// ValidateInitialization checks the plugin got its informers.
func (p *Plugin) ValidateInitialization() error {
	if p.vms == nil || p.hypervisors == nil {
		return fmt.Errorf("%s: missing listers", PluginName)
	}
	return nil
}

// Validate checks an update of a bound VM that asks for more cpus or
// memory against the hypervisor's allocatable less what its other VMs ask
// for (the scheduler's arithmetic). Shrinking, and keeping a size the host
// no longer has room for, are always allowed.
func (p *Plugin) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetResource().GroupResource() != vessel.Resource("virtualmachines") || a.GetSubresource() != "" {
		return nil
	}
	vm, ok1 := a.GetObject().(*vessel.VirtualMachine)
	old, ok2 := a.GetOldObject().(*vessel.VirtualMachine)
	if !ok1 || !ok2 || vm.Spec.NodeName == "" {
		return nil
	}
	growsCPUs := vm.Spec.CPUs > old.Spec.CPUs
	growsMemory := vm.Spec.Memory.Cmp(old.Spec.Memory) > 0
	if !growsCPUs && !growsMemory {
		return nil
	}
	if !p.WaitForReady() {
		return admission.NewForbidden(a, fmt.Errorf("not yet ready to check the room on hypervisor %s", vm.Spec.NodeName))
	}
	hv, err := p.hypervisors.Get(vm.Spec.NodeName)
	if apierrors.IsNotFound(err) {
		return nil // nothing runs it: there is no host to protect
	}
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("read hypervisor %s: %w", vm.Spec.NodeName, err))
	}
	others, err := p.vms.List(labels.Everything())
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("list VMs: %w", err))
	}
	var cpus int64
	memory := resource.NewQuantity(0, resource.BinarySI)
	for _, o := range others {
		if o.Spec.NodeName != hv.Name || (o.Namespace == vm.Namespace && o.Name == vm.Name) {
			continue
		}
		cpus += int64(o.Spec.CPUs)
		memory.Add(o.Spec.Memory)
	}
	alloc := hv.Status.Allocatable
	var errs field.ErrorList
	if free := int64(alloc.CPUs) - cpus; growsCPUs && int64(vm.Spec.CPUs) > free {
		errs = append(errs, field.Invalid(field.NewPath("spec", "cpus"), vm.Spec.CPUs,
			fmt.Sprintf("hypervisor %s, which runs this VM, has %d allocatable vCPUs, of which its other VMs ask for %d: at most %d fit", hv.Name, alloc.CPUs, cpus, max(free, 0))))
	}
	free := alloc.Memory.DeepCopy()
	free.Sub(*memory)
	if growsMemory && vm.Spec.Memory.Cmp(free) > 0 {
		if free.Sign() < 0 {
			free = resource.MustParse("0")
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", "memory"), vm.Spec.Memory.String(),
			fmt.Sprintf("hypervisor %s, which runs this VM, has %s allocatable memory, of which its other VMs ask for %s: at most %s fit",
				hv.Name, alloc.Memory.String(), memory.String(), free.String())))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(a.GetKind().GroupKind(), a.GetName(), errs)
	}
	return nil
}
