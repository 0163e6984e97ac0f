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

// Package agentrestriction is the VesselAgentRestriction admission plugin:
// RBAC lets node agents (see agentidentity) write Hypervisors and VM status
// in general; this plugin narrows each agent to its own Hypervisor (whose
// spec and labels stay the administrator's) and to the VMs, snapshots,
// restores and clones bound to it, the way NodeRestriction narrows kubelets. Reads
// are not admission's business: the agent authorizer and the VM storage
// confine those.
package agentrestriction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apiserver/admission/initializer"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

const (
	// PluginName is the name to enable the plugin by.
	PluginName = "VesselAgentRestriction"
	// RestrictedLabelPrefix marks Hypervisor labels only an administrator
	// sets, never an agent, not even when it registers: nodeSelectors on
	// them keep VMs off hypervisors whose agent would like to attract them
	// (the node-restriction.kubernetes.io/ idea).
	RestrictedLabelPrefix = "node-restriction.vessel.dev/"
)

// Register adds the plugin to plugins.
func Register(plugins *admission.Plugins) {
	plugins.Register(PluginName, func(io.Reader) (admission.Interface, error) { return New(), nil })
}

// Plugin restricts node agents.
type Plugin struct {
	*admission.Handler
	vms      listers.VirtualMachineLister
	identify func(user.Info) agentidentity.Agent
}

var (
	_ admission.ValidationInterface          = &Plugin{}
	_ admission.InitializationValidator      = &Plugin{}
	_ initializer.WantsVesselInformerFactory = &Plugin{}
	_ initializer.WantsAgentIdentifier       = &Plugin{}
)

// New returns the plugin; it needs an informer factory before use.
func New() *Plugin {
	return &Plugin{
		Handler:  admission.NewHandler(admission.Create, admission.Update, admission.Delete),
		identify: agentidentity.Identifier{}.Identify,
	}
}

// SetVesselInformerFactory gives the plugin the VMs it checks ownership against.
func (p *Plugin) SetVesselInformerFactory(f informers.SharedInformerFactory) {
	vms := f.Vessel().V1alpha1().VirtualMachines()
	p.vms = vms.Lister()
	p.SetReadyFunc(vms.Informer().HasSynced)
}

// SetAgentIdentifier says which users are agents.
func (p *Plugin) SetAgentIdentifier(id agentidentity.Identifier) { p.identify = id.Identify }

// ValidateInitialization checks the plugin got its informers.
func (p *Plugin) ValidateInitialization() error {
	if p.vms == nil {
		return fmt.Errorf("%s: missing VirtualMachine lister", PluginName)
	}
	return nil
}

// Validate lets through every request that is not an agent's; an agent's
// only when it touches what belongs to its own hypervisor.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	if a.GetResource().Group != vessel.GroupName {
		return nil
	}
	who := p.identify(a.GetUserInfo())
	if !who.IsAgent {
		return nil
	}
	if who.Hypervisor == "" {
		return admission.NewForbidden(a, errors.New(who.Why))
	}
	agent := who.Hypervisor
	if !p.WaitForReady() {
		return admission.NewForbidden(a, fmt.Errorf("not yet ready to check agent requests"))
	}
	forbid := func(format string, args ...any) error {
		return admission.NewForbidden(a, fmt.Errorf("agent %s: "+format, append([]any{agent}, args...)...))
	}
	resource, sub := a.GetResource().Resource, a.GetSubresource()
	switch {
	case resource == "hypervisors":
		if a.GetName() != agent {
			return forbid("may only write its own Hypervisor, not %q", a.GetName())
		}
		switch {
		case a.GetOperation() == admission.Delete:
			return forbid("may not delete its Hypervisor")
		case sub == "" && a.GetOperation() == admission.Create:
			return noRestrictedLabels(a, forbid)
		case sub == "" && a.GetOperation() == admission.Update:
			return onlyAdminChangesHypervisor(a, forbid)
		}
		return nil
	case resource == "virtualmachines" && sub == "status" && a.GetOperation() == admission.Update:
		return p.checkBound(a, agent, a.GetNamespace(), a.GetName(), forbid)
	case resource == "virtualmachines" && sub == "" && a.GetOperation() == admission.Update:
		if err := p.checkBound(a, agent, a.GetNamespace(), a.GetName(), forbid); err != nil {
			return err
		}
		return onlyFinalizersChanged(a, forbid)
	case resource == "virtualmachinesnapshots" && sub == "" && a.GetOperation() == admission.Update:
		return p.checkSnapshotFinalizers(a, agent, forbid)
	case (resource == "virtualmachinesnapshots" || resource == "virtualmachinerestores" || resource == "virtualmachineclones" || resource == "virtualmachinemigrations") && sub == "status" && a.GetOperation() == admission.Update:
		vmName, err := referencedVM(a.GetObject())
		if err != nil {
			return forbid("%v", err)
		}
		return p.checkBound(a, agent, a.GetNamespace(), vmName, forbid)
	}
	return forbid("may not %s %s", strings.ToLower(string(a.GetOperation())), strings.Trim(resource+"/"+sub, "/"))
}

// checkBound allows the request only for a VM bound to the agent's hypervisor.
func (p *Plugin) checkBound(a admission.Attributes, agent, namespace, name string, forbid func(string, ...any) error) error {
	vm, err := p.vms.VirtualMachines(namespace).Get(name)
	if err != nil {
		return forbid("cannot confirm VM %s/%s is bound to it: %v", namespace, name, err)
	}
	if vm.Spec.NodeName != agent {
		return forbid("VM %s/%s is bound to %q, not to this hypervisor", namespace, name, vm.Spec.NodeName)
	}
	return nil
}

// onlyFinalizersChanged allows an agent's update of a VM when nothing but
// metadata.finalizers changes: that is how it releases a deleted VM.
func onlyFinalizersChanged(a admission.Attributes, forbid func(string, ...any) error) error {
	newVM, ok1 := a.GetObject().(*vessel.VirtualMachine)
	oldVM, ok2 := a.GetOldObject().(*vessel.VirtualMachine)
	if !ok1 || !ok2 {
		return forbid("unexpected objects %T, %T", a.GetObject(), a.GetOldObject())
	}
	n, o := newVM.DeepCopy(), oldVM.DeepCopy()
	for _, vm := range []*vessel.VirtualMachine{n, o} {
		vm.Finalizers = nil
		vm.ResourceVersion = ""
		vm.ManagedFields = nil
		vm.Generation = 0
	}
	if !apiequality.Semantic.DeepEqual(n, o) {
		return forbid("may only change the finalizers of VM %s/%s", a.GetNamespace(), a.GetName())
	}
	return nil
}

func referencedVM(obj any) (string, error) {
	switch o := obj.(type) {
	case *vessel.VirtualMachineSnapshot:
		return o.Spec.VirtualMachineName, nil
	case *vessel.VirtualMachineRestore:
		return o.Spec.VirtualMachineName, nil
	case *vessel.VirtualMachineMigration:
		// Only the source agent writes a migration's status, while the VM
		// is still bound to it.
		return o.Spec.VirtualMachineName, nil
	case *vessel.VirtualMachineClone:
		// A clone's agent is the one its new VM is bound to.
		return o.Spec.Target.Name, nil
	}
	return "", fmt.Errorf("unexpected object %T", obj)
}
