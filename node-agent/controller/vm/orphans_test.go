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

package vm

import (
	"context"
	"slices"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned/fake"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	"github.com/vessel-vm/vessel/node-agent/controller/boundvm"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// listingHypervisor lists fixed domains and records what is destroyed and
// undefined.
type listingHypervisor struct {
	hypervisor.Hypervisor
	domains []hypervisor.Domain

	mu        sync.Mutex
	destroyed []string
	undefined []string
}

func (h *listingHypervisor) List(context.Context) ([]hypervisor.Domain, error) { return h.domains, nil }

func (h *listingHypervisor) Destroy(_ context.Context, uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.destroyed = append(h.destroyed, uid)
	return nil
}

func (h *listingHypervisor) Undefine(_ context.Context, uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.undefined = append(h.undefined, uid)
	return nil
}

type fixedIdentity string

func (i fixedIdentity) HypervisorUID() string { return string(i) }

func TestCollectOrphansTakesOnlyItsOwnControlPlanesDomains(t *testing.T) {
	const node, self = "hv1", "hv-uid-self"
	owner := func(uid, hvName, hvUID string) hypervisor.Domain {
		return hypervisor.Domain{UUID: uid, Name: "default_" + uid, Owner: hypervisor.Owner{
			Namespace: "default", Name: "vm-" + uid, UID: uid, Hypervisor: hvName, HypervisorUID: hvUID,
		}}
	}
	hv := &listingHypervisor{domains: []hypervisor.Domain{
		owner("live", node, self),              // its VM exists
		owner("orphan", node, self),            // its VM is gone: collected
		owner("incoming", node, self),          // a migration brings it; its VM is the source's
		owner("other-plane", node, "hv-uid-2"), // same name, another control plane
		owner("unstamped", node, ""),           // an older agent's
		owner("elsewhere", "hv2", "hv-uid-3"),  // another hypervisor's
	}}
	live := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "vm-live", UID: "live"},
		Spec:       v1alpha1.VirtualMachineSpec{NodeName: node},
	}
	client := fake.NewSimpleClientset(live)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Node: node, StateDir: t.TempDir()}, Deps{
		Client:     client,
		VMs:        factory.Vessel().V1alpha1().VirtualMachines(),
		Hypervisor: hv,
		Locks:      &boundvm.Locks{},
		Identity:   fixedIdentity(self),
		Recorder:   record.NewFakeRecorder(10),
		Clock:      clocktesting.NewFakePassiveClock(testNow),
		Incoming:   func(uid string) bool { return uid == "incoming" },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		t.Fatal("informer did not sync")
	}

	for range 2 { // a second pass changes nothing
		if err := c.collectOrphans(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"orphan", "orphan"}; !slices.Equal(hv.destroyed, want) || !slices.Equal(hv.undefined, want) {
		t.Errorf("destroyed %v, undefined %v; want only the orphan of this control plane", hv.destroyed, hv.undefined)
	}
}

func TestCollectOrphansWaitsForRegistration(t *testing.T) {
	hv := &listingHypervisor{domains: []hypervisor.Domain{{UUID: "x", Owner: hypervisor.Owner{Name: "x", UID: "x", Hypervisor: "hv1"}}}}
	client := fake.NewSimpleClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Node: "hv1", StateDir: t.TempDir()}, Deps{
		Client: client, VMs: factory.Vessel().V1alpha1().VirtualMachines(), Hypervisor: hv,
		Locks: &boundvm.Locks{}, Identity: fixedIdentity(""), Recorder: record.NewFakeRecorder(10),
		Clock: clocktesting.NewFakePassiveClock(testNow),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), c.synced)
	if err := c.collectOrphans(ctx); err != nil || len(hv.destroyed) != 0 {
		t.Errorf("without a Hypervisor UID: err %v, destroyed %v; want nothing touched", err, hv.destroyed)
	}
}
