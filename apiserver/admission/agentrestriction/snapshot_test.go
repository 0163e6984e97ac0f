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
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/apiserver/agentidentity"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

func TestAgentSnapshotFinalizers(t *testing.T) {
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
	agent := &user.DefaultInfo{Name: "system:vessel-agent:hv1", Groups: []string{agentidentity.Group}}

	snap := func(vm, node string, finalizers ...string) *vessel.VirtualMachineSnapshot {
		return &vessel.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Finalizers: finalizers},
			Spec:       vessel.VirtualMachineSnapshotSpec{VirtualMachineName: vm, DeletionPolicy: vessel.SnapshotDeletionPolicyDelete},
			Status:     vessel.VirtualMachineSnapshotStatus{NodeName: node},
		}
	}
	retain := snap("mine", "", v1alpha1.FinalizerSnapshotCleanup)
	retain.Spec.DeletionPolicy = vessel.SnapshotDeletionPolicyRetain

	for _, tt := range []struct {
		name     string
		obj, old *vessel.VirtualMachineSnapshot
		allowed  bool
	}{
		{"adds the finalizer to a snapshot of its VM", snap("mine", "", v1alpha1.FinalizerSnapshotCleanup), snap("mine", ""), true},
		{"releases the finalizer of its data, VM gone", snap("gone", "hv1"), snap("gone", "hv1", v1alpha1.FinalizerSnapshotCleanup), true},
		{"adds the finalizer to another node's snapshot", snap("theirs", "", v1alpha1.FinalizerSnapshotCleanup), snap("theirs", ""), false},
		{"releases another node's data", snap("gone", "hv2"), snap("gone", "hv2", v1alpha1.FinalizerSnapshotCleanup), false},
		{"changes the spec of a snapshot of its VM", retain, snap("mine", "", v1alpha1.FinalizerSnapshotCleanup), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			attrs := admission.NewAttributesRecord(tt.obj, tt.old, vessel.Kind("VirtualMachineSnapshot").WithVersion(""), "ns", "s",
				vessel.Resource("virtualmachinesnapshots").WithVersion("v1alpha1"), "", admission.Update, nil, false, agent)
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
