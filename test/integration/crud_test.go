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

package integration

import (
	"context"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// object is every vessel.dev kind.
type object interface {
	runtime.Object
	metav1.Object
}

// typedClient is what every generated typed client offers.
type typedClient[T object, L runtime.Object] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
	Update(context.Context, T, metav1.UpdateOptions) (T, error)
	Get(context.Context, string, metav1.GetOptions) (T, error)
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}

// lifecycle is one kind's create/get/list/watch/update/delete round trip.
type lifecycle[T object, L runtime.Object] struct {
	client typedClient[T, L]
	// fresh returns a valid new object that carries a status (and anything
	// else) the server must not take from a client on create.
	fresh func(name string) T
	// created checks the defaults and initial status of a created object.
	created func(t *testing.T, obj T)
	// changeSpec changes the spec of obj.
	changeSpec func(obj T)
	// immutableSpec is true when a spec change must be refused with 422.
	immutableSpec bool
}

func (l lifecycle[T, L]) run(t *testing.T) {
	ctx := t.Context()
	name := unique(t)
	// Hypervisors are cluster-scoped: a label keeps the list and watch to
	// this test's objects.
	selector := metav1.ListOptions{LabelSelector: "test=" + name}

	list, err := l.client.List(ctx, selector)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	listMeta, err := meta.ListAccessor(list)
	if err != nil {
		t.Fatal(err)
	}
	w, err := l.client.Watch(ctx, metav1.ListOptions{LabelSelector: selector.LabelSelector, ResourceVersion: listMeta.GetResourceVersion()})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()

	obj := l.fresh(name)
	obj.SetLabels(map[string]string{"test": name})
	created, err := l.client.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.GetUID() == "" || created.GetResourceVersion() == "" || created.GetCreationTimestamp().Time.IsZero() {
		t.Errorf("created object lacks uid, resourceVersion or creationTimestamp: %+v", created)
	}
	if g := created.GetGeneration(); g != 1 {
		t.Errorf("generation after create = %d, want 1", g)
	}
	l.created(t, created)

	got, err := l.client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(got, created) {
		t.Errorf("get returned %+v, want what create returned: %+v", got, created)
	}

	list, err = l.client.List(ctx, selector)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || !apiequality.Semantic.DeepEqual(items[0], runtime.Object(created)) {
		t.Errorf("list = %+v, want just the created object", items)
	}

	// A metadata-only change does not move generation.
	labels := got.GetLabels()
	labels["stage"] = "relabelled"
	got.SetLabels(labels)
	relabelled, err := l.client.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update labels: %v", err)
	}
	if g := relabelled.GetGeneration(); g != 1 {
		t.Errorf("generation after a label change = %d, want 1", g)
	}
	if relabelled.GetLabels()["stage"] != "relabelled" {
		t.Errorf("label not updated: %v", relabelled.GetLabels())
	}

	// A spec change moves it, or is refused for kinds whose spec is fixed.
	l.changeSpec(relabelled)
	respecced, err := l.client.Update(ctx, relabelled, metav1.UpdateOptions{})
	switch {
	case l.immutableSpec:
		wantAPIError(t, err, 422, "field is immutable")
	case err != nil:
		t.Fatalf("update spec: %v", err)
	default:
		if g := respecced.GetGeneration(); g != 2 {
			t.Errorf("generation after a spec change = %d, want 2", g)
		}
	}

	if err := l.client.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := l.client.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: got %v, want NotFound", err)
	}

	type event struct {
		typ             watch.EventType
		resourceVersion string // of the write; empty to skip the check
	}
	want := []event{{watch.Added, created.GetResourceVersion()}, {watch.Modified, relabelled.GetResourceVersion()}}
	if !l.immutableSpec {
		want = append(want, event{watch.Modified, respecced.GetResourceVersion()})
	}
	want = append(want, event{watch.Deleted, ""})
	for i, w2 := range want {
		ev := nextEvent(t, w)
		o, ok := ev.Object.(T)
		if !ok {
			t.Fatalf("event %d carries %T", i, ev.Object)
		}
		if ev.Type != w2.typ || o.GetName() != name || (w2.resourceVersion != "" && o.GetResourceVersion() != w2.resourceVersion) {
			t.Errorf("event %d = %s %s@%s, want %s %s@%s", i, ev.Type, o.GetName(), o.GetResourceVersion(), w2.typ, name, w2.resourceVersion)
		}
	}
	noEvent(t, w, 200*time.Millisecond)
}

func TestCRUD(t *testing.T) {
	s := startServer(t)
	c := s.Client.VesselV1alpha1()

	t.Run("VirtualMachine", func(t *testing.T) {
		lifecycle[*v1alpha1.VirtualMachine, *v1alpha1.VirtualMachineList]{
			client: c.VirtualMachines(unique(t)),
			fresh: func(name string) *v1alpha1.VirtualMachine {
				vm := newVM(name)
				vm.Spec.PowerAction = &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStart, ID: 7, RequestedAt: metav1.Now()}
				vm.Status = v1alpha1.VirtualMachineStatus{Phase: v1alpha1.VirtualMachineRunning, NodeName: "forged", ObservedGeneration: 5}
				return vm
			},
			created: func(t *testing.T, vm *v1alpha1.VirtualMachine) {
				wantVMDefaults(t, vm.Spec)
				if vm.Spec.PowerAction != nil {
					t.Errorf("spec.powerAction = %+v, want none: actions go through their subresources", vm.Spec.PowerAction)
				}
				if want := (v1alpha1.VirtualMachineStatus{Phase: v1alpha1.VirtualMachinePending}); !apiequality.Semantic.DeepEqual(vm.Status, want) {
					t.Errorf("status = %+v, want %+v whatever the client sent", vm.Status, want)
				}
			},
			changeSpec: func(vm *v1alpha1.VirtualMachine) { vm.Spec.CPUs = 2 },
		}.run(t)
	})

	t.Run("VirtualMachineSnapshot", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("vm-a"))
		lifecycle[*v1alpha1.VirtualMachineSnapshot, *v1alpha1.VirtualMachineSnapshotList]{
			client: c.VirtualMachineSnapshots(ns),
			fresh: func(name string) *v1alpha1.VirtualMachineSnapshot {
				return &v1alpha1.VirtualMachineSnapshot{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: "vm-a"},
					Status:     v1alpha1.VirtualMachineSnapshotStatus{Phase: v1alpha1.SnapshotSucceeded, ReadyToUse: true},
				}
			},
			created: func(t *testing.T, snap *v1alpha1.VirtualMachineSnapshot) {
				if m := snap.Spec.IncludeMemory; m == nil || !*m {
					t.Errorf("spec.includeMemory = %v, want true", m)
				}
				if p := snap.Spec.DeletionPolicy; p != v1alpha1.SnapshotDeletionPolicyDelete {
					t.Errorf("spec.deletionPolicy = %q, want Delete", p)
				}
				if want := (v1alpha1.VirtualMachineSnapshotStatus{Phase: v1alpha1.SnapshotPending}); !apiequality.Semantic.DeepEqual(snap.Status, want) {
					t.Errorf("status = %+v, want %+v whatever the client sent", snap.Status, want)
				}
			},
			changeSpec:    func(snap *v1alpha1.VirtualMachineSnapshot) { snap.Spec.VirtualMachineName = "vm-b" },
			immutableSpec: true,
		}.run(t)
	})

	t.Run("VirtualMachineRestore", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("vm-a"))
		createSnapshot(t, s, ns, "snap-1", "vm-a", true)
		lifecycle[*v1alpha1.VirtualMachineRestore, *v1alpha1.VirtualMachineRestoreList]{
			client: c.VirtualMachineRestores(ns),
			fresh: func(name string) *v1alpha1.VirtualMachineRestore {
				return &v1alpha1.VirtualMachineRestore{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "vm-a", SnapshotName: "snap-1"},
					Status:     v1alpha1.VirtualMachineRestoreStatus{Phase: v1alpha1.SnapshotSucceeded, Complete: true},
				}
			},
			created: func(t *testing.T, r *v1alpha1.VirtualMachineRestore) {
				if want := (v1alpha1.VirtualMachineRestoreStatus{Phase: v1alpha1.SnapshotPending}); !apiequality.Semantic.DeepEqual(r.Status, want) {
					t.Errorf("status = %+v, want %+v whatever the client sent", r.Status, want)
				}
			},
			changeSpec:    func(r *v1alpha1.VirtualMachineRestore) { r.Spec.SnapshotName = "snap-2" },
			immutableSpec: true,
		}.run(t)
	})

	t.Run("Hypervisor", func(t *testing.T) {
		lifecycle[*v1alpha1.Hypervisor, *v1alpha1.HypervisorList]{
			client: c.Hypervisors(),
			fresh: func(name string) *v1alpha1.Hypervisor {
				return &v1alpha1.Hypervisor{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Status:     v1alpha1.HypervisorStatus{KVM: true, Capacity: v1alpha1.HypervisorResources{CPUs: 8}},
				}
			},
			created: func(t *testing.T, h *v1alpha1.Hypervisor) {
				if h.GetNamespace() != "" {
					t.Errorf("namespace = %q, want none: hypervisors are cluster-scoped", h.GetNamespace())
				}
				if !apiequality.Semantic.DeepEqual(h.Status, v1alpha1.HypervisorStatus{}) {
					t.Errorf("status = %+v, want empty whatever the client sent", h.Status)
				}
			},
			changeSpec: func(h *v1alpha1.Hypervisor) { h.Spec.Unschedulable = true },
		}.run(t)
	})

	t.Run("explicit values are kept", func(t *testing.T) {
		ns := unique(t)
		vm := newVM("explicit")
		vm.Spec = v1alpha1.VirtualMachineSpec{
			RunStrategy:                   v1alpha1.RunStrategyManual,
			CPUs:                          4,
			Memory:                        resource.MustParse("2Gi"),
			Firmware:                      v1alpha1.FirmwareUEFI,
			TerminationGracePeriodSeconds: ptr(int64(0)),
			Disks: []v1alpha1.Disk{
				{Name: "root", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}},
				{Name: "data", Bus: v1alpha1.DiskBusSATA, Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}},
			},
			Interfaces: []v1alpha1.Interface{{Name: "eth0", Type: v1alpha1.InterfaceTypeBridge, Bridge: "br0"}},
		}
		got := createVM(t, s, ns, vm).Spec
		if got.RunStrategy != v1alpha1.RunStrategyManual || got.CPUs != 4 || got.Memory.String() != "2Gi" ||
			got.Firmware != v1alpha1.FirmwareUEFI || *got.TerminationGracePeriodSeconds != 0 {
			t.Errorf("explicit values overwritten: %+v", got)
		}
		if got.Disks[0].Bus != v1alpha1.DiskBusVirtio || got.Disks[1].Bus != v1alpha1.DiskBusSATA {
			t.Errorf("disk buses = %q, %q; want the default virtio and the explicit sata", got.Disks[0].Bus, got.Disks[1].Bus)
		}
		if len(got.Interfaces) != 1 || got.Interfaces[0].Name != "eth0" || got.Interfaces[0].Type != v1alpha1.InterfaceTypeBridge {
			t.Errorf("interfaces = %+v, want only the explicit bridge", got.Interfaces)
		}
	})

	t.Run("generateName", func(t *testing.T) {
		ns := unique(t)
		vm := &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-"}}
		a, b := createVM(t, s, ns, vm.DeepCopy()), createVM(t, s, ns, vm.DeepCopy())
		if a.Name == b.Name || len(a.Name) <= len("web-") || a.Name[:4] != "web-" {
			t.Errorf("generated names %q, %q: want two distinct names starting with web-", a.Name, b.Name)
		}
	})

	t.Run("create twice is AlreadyExists", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		_, err := vms(s, ns).Create(t.Context(), newVM("a"), metav1.CreateOptions{})
		wantAPIError(t, err, 409, `"a" already exists`)
	})

	t.Run("update with a stale resourceVersion is a conflict", func(t *testing.T) {
		ns := unique(t)
		stale := createVM(t, s, ns, newVM("a"))
		fresh := stale.DeepCopy()
		fresh.Spec.CPUs = 2
		if _, err := vms(s, ns).Update(t.Context(), fresh, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		stale.Spec.CPUs = 3
		_, err := vms(s, ns).Update(t.Context(), stale, metav1.UpdateOptions{})
		wantAPIError(t, err, 409, "the object has been modified")
		if got := getVM(t, s, ns, "a").Spec.CPUs; got != 2 {
			t.Errorf("cpus = %d after a conflicting update, want 2", got)
		}
	})

	t.Run("delete of a missing VM is NotFound", func(t *testing.T) {
		err := vms(s, unique(t)).Delete(t.Context(), "missing", metav1.DeleteOptions{})
		wantAPIError(t, err, 404, `"missing" not found`)
	})
}

// wantVMDefaults checks a spec created with nothing set.
func wantVMDefaults(t *testing.T, spec v1alpha1.VirtualMachineSpec) {
	t.Helper()
	if spec.RunStrategy != v1alpha1.RunStrategyAlways {
		t.Errorf("spec.runStrategy = %q, want Always", spec.RunStrategy)
	}
	if spec.CPUs != 1 {
		t.Errorf("spec.cpus = %d, want 1", spec.CPUs)
	}
	if want := resource.MustParse("128Mi"); spec.Memory.Cmp(want) != 0 {
		t.Errorf("spec.memory = %s, want 128Mi", spec.Memory.String())
	}
	if spec.Firmware != v1alpha1.FirmwareBIOS {
		t.Errorf("spec.firmware = %q, want BIOS", spec.Firmware)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != 30 {
		t.Errorf("spec.terminationGracePeriodSeconds = %v, want 30", g)
	}
	if want := []v1alpha1.Interface{{Name: "default", Type: v1alpha1.InterfaceTypeManaged}}; !apiequality.Semantic.DeepEqual(spec.Interfaces, want) {
		t.Errorf("spec.interfaces = %+v, want %+v", spec.Interfaces, want)
	}
}
