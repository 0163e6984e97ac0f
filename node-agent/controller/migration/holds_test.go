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

package migration

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	listers "github.com/vessel-vm/vessel/generated/listers/vessel/v1alpha1"
)

func lister(t *testing.T, ms ...*v1alpha1.VirtualMachineMigration) listers.VirtualMachineMigrationLister {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, m := range ms {
		if err := idx.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	return listers.NewVirtualMachineMigrationLister(idx)
}

func mig(name string, phase v1alpha1.MigrationPhase) *v1alpha1.VirtualMachineMigration {
	return &v1alpha1.VirtualMachineMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       v1alpha1.VirtualMachineMigrationSpec{VirtualMachineName: "vm"},
		Status:     v1alpha1.VirtualMachineMigrationStatus{Phase: phase, VirtualMachineUID: "u1", Source: "hv1", Target: "hv2"},
	}
}

func handedOver(m *v1alpha1.VirtualMachineMigration) *v1alpha1.VirtualMachineMigration {
	m.Status.HandedOver = true
	return m
}

// The source's VM controller stays away from a guest while it moves and
// until the VM is handed over; the target's orphan collection spares the
// incoming guest for as long.
func TestHoldsAndIncoming(t *testing.T) {
	vm := func(node string, deleting bool) *v1alpha1.VirtualMachine {
		v := &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm", UID: "u1"}, Spec: v1alpha1.VirtualMachineSpec{NodeName: node}}
		if deleting {
			now := metav1.Now()
			v.DeletionTimestamp = &now
		}
		return v
	}
	tests := []struct {
		name         string
		m            *v1alpha1.VirtualMachineMigration
		vm           *v1alpha1.VirtualMachine
		holds, comes bool
	}{
		{"running", mig("a", v1alpha1.MigrationRunning), vm("hv1", false), true, true},
		{"succeeded, not handed over", mig("a", v1alpha1.MigrationSucceeded), vm("hv1", false), true, true},
		{"succeeded, deleted before the handover", mig("a", v1alpha1.MigrationSucceeded), vm("hv1", true), false, true},
		{"handed over, not recorded yet", mig("a", v1alpha1.MigrationSucceeded), vm("hv2", false), false, true},
		{"handed over, then moved back by another migration", handedOver(mig("a", v1alpha1.MigrationSucceeded)), vm("hv1", false), false, false},
		{"failed", mig("a", v1alpha1.MigrationFailed), vm("hv1", false), false, false},
		{"pending", mig("a", v1alpha1.MigrationPending), vm("hv1", false), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lister(t, tt.m)
			if got := Holds(l, "hv1", tt.vm); got != tt.holds {
				t.Errorf("Holds = %v, want %v", got, tt.holds)
			}
			if got := Holds(l, "hv2", tt.vm); got {
				t.Errorf("the target holds the VM")
			}
			if got := Incoming(l, "hv2", "u1"); got != tt.comes {
				t.Errorf("Incoming = %v, want %v", got, tt.comes)
			}
			if Incoming(l, "hv1", "u1") {
				t.Errorf("the guest comes to its source")
			}
		})
	}
}
