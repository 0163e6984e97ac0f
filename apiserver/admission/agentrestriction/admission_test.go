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

package agentrestriction

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

func TestValidate(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for name, node := range map[string]string{"mine": "hv1", "theirs": "hv2"} {
		_ = indexer.Add(&v1alpha1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
			Spec:       v1alpha1.VirtualMachineSpec{NodeName: node},
		})
	}
	p := New()
	p.vms = listers.NewVirtualMachineLister(indexer)
	p.SetReadyFunc(func() bool { return true })

	p.SetAgentIdentifier(agentidentity.Identifier{ServiceAccounts: []string{agentidentity.DefaultServiceAccount}})

	agent := &user.DefaultInfo{Name: "system:vessel-agent:hv1", Groups: []string{agentidentity.Group}}
	impostor := &user.DefaultInfo{Name: "mallory", Groups: []string{agentidentity.Group}}
	tenant := &user.DefaultInfo{Name: "alice"}
	// The agent DaemonSet's service account: its pod-bound token names the node.
	podAgent := &user.DefaultInfo{Name: "system:serviceaccount:vessel-system:vessel-agent", Extra: map[string][]string{agentidentity.NodeNameExtra: {"hv1"}}}
	unboundToken := &user.DefaultInfo{Name: "system:serviceaccount:vessel-system:vessel-agent"}
	vm := func(name string, finalizers ...string) *vessel.VirtualMachine {
		return &vessel.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Finalizers: finalizers},
			Spec:       vessel.VirtualMachineSpec{NodeName: "hv1", CPUs: 1},
		}
	}
	moreCPUs := vm("mine", vessel.FinalizerNodeCleanup)
	moreCPUs.Spec.CPUs = 8
	snapshot := &vessel.VirtualMachineSnapshot{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
		Spec:       vessel.VirtualMachineSnapshotSpec{VirtualMachineName: "theirs"},
	}
	clone := func(target string) *vessel.VirtualMachineClone {
		return &vessel.VirtualMachineClone{
			ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "ns"},
			Spec:       vessel.VirtualMachineCloneSpec{Target: vessel.CloneTarget{Name: target}},
		}
	}
	hv := func(name string) *vessel.Hypervisor {
		return &vessel.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": "a"}}}
	}
	cordoned := hv("hv1")
	cordoned.Spec.Unschedulable = true
	relabelled := hv("hv1")
	relabelled.Labels["tenant"] = "team-b"
	restricted := hv("hv1")
	restricted.Labels[RestrictedLabelPrefix+"dedicated"] = "team-b"
	annotated := hv("hv1")
	annotated.Annotations = map[string]string{"note": "x"}

	tests := []struct {
		name                string
		user                user.Info
		op                  admission.Operation
		resource, sub, objN string
		obj, old            runtime.Object
		allowed             bool
	}{
		{"agent writes its own hypervisor status", agent, admission.Update, "hypervisors", "status", "hv1", hv("hv1"), hv("hv1"), true},
		{"agent registers its own hypervisor", agent, admission.Create, "hypervisors", "", "hv1", hv("hv1"), nil, true},
		{"agent writes another hypervisor", agent, admission.Update, "hypervisors", "status", "hv2", hv("hv2"), hv("hv2"), false},
		{"agent registers with a restricted label", agent, admission.Create, "hypervisors", "", "hv1", restricted, nil, false},
		{"agent uncordons its hypervisor", agent, admission.Update, "hypervisors", "", "hv1", hv("hv1"), cordoned, false},
		{"agent cordons its hypervisor", agent, admission.Update, "hypervisors", "", "hv1", cordoned, hv("hv1"), false},
		{"agent relabels its hypervisor", agent, admission.Update, "hypervisors", "", "hv1", relabelled, hv("hv1"), false},
		{"agent annotates its hypervisor", agent, admission.Update, "hypervisors", "", "hv1", annotated, hv("hv1"), true},
		{"admin relabels a hypervisor", tenant, admission.Update, "hypervisors", "", "hv1", relabelled, hv("hv1"), true},
		{"agent deletes its hypervisor", agent, admission.Delete, "hypervisors", "", "hv1", nil, nil, false},
		{"agent writes status of its VM", agent, admission.Update, "virtualmachines", "status", "mine", vm("mine"), vm("mine"), true},
		{"agent writes status of another node's VM", agent, admission.Update, "virtualmachines", "status", "theirs", vm("theirs"), vm("theirs"), false},
		{"agent removes the finalizer of its VM", agent, admission.Update, "virtualmachines", "", "mine", vm("mine"), vm("mine", vessel.FinalizerNodeCleanup), true},
		{"agent changes the spec of its VM", agent, admission.Update, "virtualmachines", "", "mine", moreCPUs, vm("mine", vessel.FinalizerNodeCleanup), false},
		{"agent creates a VM", agent, admission.Create, "virtualmachines", "", "new", vm("new"), nil, false},
		{"agent deletes a VM", agent, admission.Delete, "virtualmachines", "", "mine", nil, nil, false},
		{"agent binds a VM", agent, admission.Create, "virtualmachines", "binding", "mine", nil, nil, false},
		{"agent writes a snapshot of another node's VM", agent, admission.Update, "virtualmachinesnapshots", "status", "s", snapshot, snapshot, false},
		{"agent writes the status of a clone whose VM is bound to it", agent, admission.Update, "virtualmachineclones", "status", "c", clone("mine"), clone("mine"), true},
		{"agent writes the status of another node's clone", agent, admission.Update, "virtualmachineclones", "status", "c", clone("theirs"), clone("theirs"), false},
		{"agent changes a clone", agent, admission.Update, "virtualmachineclones", "", "c", clone("mine"), clone("mine"), false},
		{"agent group member with a foreign name", impostor, admission.Update, "hypervisors", "status", "hv1", hv("hv1"), hv("hv1"), false},
		{"pod-bound agent writes status of its VM", podAgent, admission.Update, "virtualmachines", "status", "mine", vm("mine"), vm("mine"), true},
		{"pod-bound agent writes status of another node's VM", podAgent, admission.Update, "virtualmachines", "status", "theirs", vm("theirs"), vm("theirs"), false},
		{"pod-bound agent writes its hypervisor status", podAgent, admission.Update, "hypervisors", "status", "hv1", hv("hv1"), hv("hv1"), true},
		{"agent token bound to no pod", unboundToken, admission.Update, "hypervisors", "status", "hv1", hv("hv1"), hv("hv1"), false},
		{"tenants are not this plugin's business", tenant, admission.Create, "virtualmachines", "", "new", vm("new"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := vessel.Kind("VirtualMachine").WithVersion("")
			attrs := admission.NewAttributesRecord(tt.obj, tt.old, kind, "ns", tt.objN,
				vessel.Resource(tt.resource).WithVersion("v1alpha1"), tt.sub, tt.op, nil, false, tt.user)
			err := p.Validate(context.Background(), attrs, nil)
			if tt.allowed && err != nil {
				t.Errorf("want allowed, got %v", err)
			}
			if !tt.allowed && err == nil {
				t.Error("want forbidden, got allowed")
			}
		})
	}
}
