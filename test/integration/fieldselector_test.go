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
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestFieldSelectors(t *testing.T) {
	s := startServer(t)

	listVMs := func(t *testing.T, ns, selector string) []string {
		t.Helper()
		list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			t.Fatalf("list VMs with %q: %v", selector, err)
		}
		return vmNames(list)
	}
	// watchVMs watches from now, with the field selector.
	watchVMs := func(t *testing.T, ns, selector string) watch.Interface {
		t.Helper()
		list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w, err := vms(s, ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: selector, ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatalf("watch VMs with %q: %v", selector, err)
		}
		t.Cleanup(w.Stop)
		return w
	}
	wantEvent := func(t *testing.T, w watch.Interface, typ watch.EventType, name string) *v1alpha1.VirtualMachine {
		t.Helper()
		ev := nextEvent(t, w)
		vm, ok := ev.Object.(*v1alpha1.VirtualMachine)
		if !ok || ev.Type != typ || vm.Name != name {
			t.Fatalf("got event %s %s, want %s %s", ev.Type, eventName(ev), typ, name)
		}
		return vm
	}

	t.Run("spec.nodeName list", func(t *testing.T) {
		ns := unique(t)
		for _, name := range []string{"a", "b", "c"} {
			createVM(t, s, ns, newVM(name))
		}
		bindVM(t, s, ns, "a", "hv-1")
		bindVM(t, s, ns, "b", "hv-2")
		for selector, want := range map[string][]string{
			"spec.nodeName=hv-1":  {"a"},
			"spec.nodeName=hv-2":  {"b"},
			"spec.nodeName=":      {"c"}, // what a scheduler lists
			"spec.nodeName!=hv-1": {"b", "c"},
			"spec.nodeName=hv-3":  {},
		} {
			if got := listVMs(t, ns, selector); !slices.Equal(got, want) {
				t.Errorf("list with %q = %v, want %v", selector, got, want)
			}
		}
	})

	// A node agent watches spec.nodeName=<itself>: a VM appears to it when
	// bound there and disappears when deleted, and it sees nothing else.
	t.Run("spec.nodeName watch", func(t *testing.T) {
		ns := unique(t)
		w := watchVMs(t, ns, "spec.nodeName=hv-1")
		createVM(t, s, ns, newVM("mine"))
		createVM(t, s, ns, newVM("other"))
		bindVM(t, s, ns, "other", "hv-2")
		bindVM(t, s, ns, "mine", "hv-1")
		wantEvent(t, w, watch.Added, "mine")

		if _, err := vms(s, ns).Stop(t.Context(), "other", &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := vms(s, ns).Stop(t.Context(), "mine", &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if vm := wantEvent(t, w, watch.Modified, "mine"); vm.Spec.RunStrategy != v1alpha1.RunStrategyHalted {
			t.Errorf("watched VM has runStrategy %q after stop, want Halted", vm.Spec.RunStrategy)
		}

		if err := vms(s, ns).Delete(t.Context(), "mine", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		vm := wantEvent(t, w, watch.Modified, "mine")
		if vm.DeletionTimestamp == nil {
			t.Fatal("deleting a bound VM did not set its deletionTimestamp")
		}
		vm.Finalizers = nil
		if _, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		wantEvent(t, w, watch.Deleted, "mine")
		noEvent(t, w, 200*time.Millisecond)
	})

	t.Run("status.phase list and watch", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		createVM(t, s, ns, newVM("b"))
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineRunning)
		if got := listVMs(t, ns, "status.phase=Running"); !slices.Equal(got, []string{"a"}) {
			t.Errorf("Running VMs = %v, want [a]", got)
		}
		if got := listVMs(t, ns, "status.phase=Pending"); !slices.Equal(got, []string{"b"}) {
			t.Errorf("Pending VMs = %v, want [b]", got)
		}
		if got := listVMs(t, ns, "status.phase=Running,metadata.name=b"); len(got) != 0 {
			t.Errorf("Running VMs named b = %v, want none", got)
		}

		w := watchVMs(t, ns, "status.phase=Running")
		setPhase(t, s, ns, "b", v1alpha1.VirtualMachineRunning)
		wantEvent(t, w, watch.Added, "b")
		// Leaving the selection is a DELETED event for this watcher, carrying
		// the last state it matched in.
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineStopped)
		wantEvent(t, w, watch.Deleted, "a")
		noEvent(t, w, 200*time.Millisecond)
	})

	t.Run("spec.virtualMachineName on snapshots", func(t *testing.T) {
		ns := unique(t)
		snaps := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns)
		createVM(t, s, ns, newVM("vm-a"))
		createVM(t, s, ns, newVM("vm-b"))
		for name, vm := range map[string]string{"s1": "vm-a", "s2": "vm-b", "s3": "vm-a"} {
			snap := &v1alpha1.VirtualMachineSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm}}
			if _, err := snaps.Create(t.Context(), snap, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := snaps.List(t.Context(), metav1.ListOptions{FieldSelector: "spec.virtualMachineName=vm-a"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, snap := range list.Items {
			got = append(got, snap.Name)
		}
		if !slices.Equal(got, []string{"s1", "s3"}) {
			t.Errorf("snapshots of vm-a = %v, want [s1 s3]", got)
		}

		w, err := snaps.Watch(t.Context(), metav1.ListOptions{FieldSelector: "spec.virtualMachineName=vm-b", ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		for name, vm := range map[string]string{"s4": "vm-a", "s5": "vm-b"} {
			snap := &v1alpha1.VirtualMachineSnapshot{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm}}
			if _, err := snaps.Create(t.Context(), snap, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if ev := nextEvent(t, w); ev.Type != watch.Added || eventName(ev) != ns+"/s5" {
			t.Errorf("got event %s %s, want ADDED %s/s5", ev.Type, eventName(ev), ns)
		}
		noEvent(t, w, 200*time.Millisecond)
	})

	// Every field selector the API documents must match: a selector the
	// scheme accepts but the registry does not publish matches nothing.
	t.Run("other declared selectors", func(t *testing.T) {
		ns := unique(t)
		c := s.Client.VesselV1alpha1()
		ctx := t.Context()
		createVM(t, s, ns, newVM("vm-a"))
		createSnapshot(t, s, ns, "snap", "vm-a", true)
		if _, err := c.VirtualMachineRestores(ns).Create(ctx, &v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{Name: "restore"}, Spec: v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "vm-a", SnapshotName: "snap"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		hvName := unique(t)
		if _, err := c.Hypervisors().Create(ctx, &v1alpha1.Hypervisor{
			ObjectMeta: metav1.ObjectMeta{Name: hvName}, Spec: v1alpha1.HypervisorSpec{Unschedulable: true},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		count := func(selector string, list func(metav1.ListOptions) (int, error)) {
			t.Helper()
			n, err := list(metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				t.Errorf("list with %q: %v", selector, err)
			} else if n != 1 {
				t.Errorf("list with %q found %d objects, want 1", selector, n)
			}
		}
		snapshots := func(o metav1.ListOptions) (int, error) {
			l, err := c.VirtualMachineSnapshots(ns).List(ctx, o)
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}
		restores := func(o metav1.ListOptions) (int, error) {
			l, err := c.VirtualMachineRestores(ns).List(ctx, o)
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}
		hypervisors := func(o metav1.ListOptions) (int, error) {
			l, err := c.Hypervisors().List(ctx, o)
			if err != nil {
				return 0, err
			}
			return len(l.Items), nil
		}
		count("status.phase=Succeeded", snapshots)
		count("metadata.name=snap", snapshots)
		count("spec.virtualMachineName=vm-a", restores)
		count("spec.snapshotName=snap", restores)
		count("spec.unschedulable=true,metadata.name="+hvName, hypervisors)
	})

	t.Run("an unsupported field selector is a 400", func(t *testing.T) {
		ns := unique(t)
		_, err := vms(s, ns).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.cpus=1"})
		wantAPIError(t, err, 400, "field label not supported for VirtualMachine: spec.cpus")
		_, err = vms(s, ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "spec.cpus=1"})
		wantAPIError(t, err, 400, "field label not supported for VirtualMachine: spec.cpus")
		_, err = s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName=hv-1"})
		wantAPIError(t, err, 400, "field label not supported for VirtualMachineSnapshot: spec.nodeName")
		_, err = s.Client.VesselV1alpha1().Hypervisors().List(t.Context(), metav1.ListOptions{FieldSelector: "status.kvm=true"})
		wantAPIError(t, err, 400, "field label not supported for Hypervisor: status.kvm")
	})
}
