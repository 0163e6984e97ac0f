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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestFinalizers(t *testing.T) {
	s := startServer(t)

	t.Run("an unbound VM is deleted at once", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := vms(s, ns).Get(t.Context(), "a", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("get after delete: %v, want NotFound", err)
		}
	})

	t.Run("a bound VM stays until its node cleans up", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		bound := bindVM(t, s, ns, "a", "hv-1")
		w, err := vms(s, ns).Watch(t.Context(), metav1.ListOptions{ResourceVersion: bound.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()

		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		vm := getVM(t, s, ns, "a")
		if vm.DeletionTimestamp == nil || !slices.Contains(vm.Finalizers, v1alpha1.FinalizerNodeCleanup) {
			t.Fatalf("after delete: deletionTimestamp %v, finalizers %v; want both set", vm.DeletionTimestamp, vm.Finalizers)
		}
		if list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) != 1 {
			t.Errorf("list of a terminating VM: %v, %v; want it listed", vmNames(list), err)
		}
		if ev := nextEvent(t, w); ev.Type != watch.Modified || ev.Object.(*v1alpha1.VirtualMachine).DeletionTimestamp == nil {
			t.Errorf("got %s %s, want MODIFIED with a deletionTimestamp", ev.Type, eventName(ev))
		}

		// The agent may still report status while it cleans up.
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineStopping)
		if ev := nextEvent(t, w); ev.Type != watch.Modified {
			t.Errorf("got %s %s, want MODIFIED", ev.Type, eventName(ev))
		}

		// A second delete is no error and no change.
		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Errorf("second delete: %v", err)
		}

		releaseFinalizers(t, s, ns, "a")
		if _, err := vms(s, ns).Get(t.Context(), "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("get after the finalizer went: %v, want NotFound", err)
		}
		if ev := nextEvent(t, w); ev.Type != watch.Deleted {
			t.Errorf("got %s %s, want DELETED", ev.Type, eventName(ev))
		}
		noEvent(t, w, 200*time.Millisecond)
	})

	t.Run("a terminating VM takes no new finalizers", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		bindVM(t, s, ns, "a", "hv-1")
		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		vm := getVM(t, s, ns, "a")
		vm.Finalizers = append(vm.Finalizers, "example.com/late")
		_, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{})
		wantAPIError(t, err, 422, "metadata.finalizers")
		releaseFinalizers(t, s, ns, "a")
	})

	t.Run("power actions on a VM being deleted are conflicts", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("a"))
		bindVM(t, s, ns, "a", "hv-1")
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineRunning)
		if err := vms(s, ns).Delete(t.Context(), "a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		before := getVM(t, s, ns, "a")
		for name, action := range powerActions(s, ns) {
			_, err := action(t.Context(), "a", &v1alpha1.VirtualMachineActionOptions{}, metav1.CreateOptions{})
			if err == nil {
				t.Errorf("%s of a terminating VM succeeded", name)
				continue
			}
			wantAPIError(t, err, 409, "VM is being deleted")
		}
		if after := getVM(t, s, ns, "a"); after.ResourceVersion != before.ResourceVersion {
			t.Errorf("refused actions changed the terminating VM: %+v", after.Spec)
		}
		releaseFinalizers(t, s, ns, "a")
	})

	t.Run("delete collection removes unbound VMs and marks bound ones", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("unbound"))
		createVM(t, s, ns, newVM("bound"))
		bindVM(t, s, ns, "bound", "hv-1")
		if err := vms(s, ns).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		list, err := vms(s, ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if names := vmNames(list); !slices.Equal(names, []string{"bound"}) || list.Items[0].DeletionTimestamp == nil {
			t.Errorf("after delete collection: %v; want only bound, terminating", names)
		}
		releaseFinalizers(t, s, ns, "bound")
	})
}
