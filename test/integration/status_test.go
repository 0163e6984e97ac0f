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

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestStatus(t *testing.T) {
	s := startServer(t)

	t.Run("Update does not write status", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))
		vm.Spec.CPUs = 2
		vm.Status.Phase = v1alpha1.VirtualMachineRunning
		vm.Status.NodeName = "forged"
		updated, err := vms(s, ns).Update(t.Context(), vm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if updated.Spec.CPUs != 2 || updated.Generation != 2 {
			t.Errorf("spec change lost: cpus %d, generation %d; want 2, 2", updated.Spec.CPUs, updated.Generation)
		}
		want := v1alpha1.VirtualMachineStatus{Phase: v1alpha1.VirtualMachinePending}
		for what, got := range map[string]v1alpha1.VirtualMachineStatus{"response": updated.Status, "stored": getVM(t, s, ns, "a").Status} {
			if !apiequality.Semantic.DeepEqual(got, want) {
				t.Errorf("%s status = %+v, want %+v", what, got, want)
			}
		}
	})

	t.Run("UpdateStatus does not write spec or move generation", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))
		vm.Spec.CPUs = 8
		vm.Spec.RunStrategy = v1alpha1.RunStrategyHalted
		vm.Status.Phase = v1alpha1.VirtualMachineRunning
		vm.Status.ObservedGeneration = 1
		updated, err := vms(s, ns).UpdateStatus(t.Context(), vm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stored := getVM(t, s, ns, "a")
		for what, got := range map[string]*v1alpha1.VirtualMachine{"response": updated, "stored": stored} {
			if got.Spec.CPUs != 1 || got.Spec.RunStrategy != v1alpha1.RunStrategyAlways || got.Generation != 1 {
				t.Errorf("%s: cpus %d, runStrategy %q, generation %d; want the spec untouched (1, Always, 1)", what, got.Spec.CPUs, got.Spec.RunStrategy, got.Generation)
			}
			if got.Status.Phase != v1alpha1.VirtualMachineRunning || got.Status.ObservedGeneration != 1 {
				t.Errorf("%s status = %+v, want phase Running, observedGeneration 1", what, got.Status)
			}
		}
	})

	t.Run("invalid status is refused", func(t *testing.T) {
		ns := unique(t)
		vm := createVM(t, s, ns, newVM("a"))
		vm.Status.Phase = "Exploded"
		_, err := vms(s, ns).UpdateStatus(t.Context(), vm, metav1.UpdateOptions{})
		wantAPIError(t, err, 422, "status.phase")
		if got := getVM(t, s, ns, "a").Status.Phase; got != v1alpha1.VirtualMachinePending {
			t.Errorf("phase = %q after a refused status update, want Pending", got)
		}
	})

	t.Run("UpdateStatus with a stale resourceVersion is a conflict", func(t *testing.T) {
		ns := unique(t)
		stale := createVM(t, s, ns, newVM("a"))
		setPhase(t, s, ns, "a", v1alpha1.VirtualMachineRunning)
		stale.Status.Phase = v1alpha1.VirtualMachineStopped
		_, err := vms(s, ns).UpdateStatus(t.Context(), stale, metav1.UpdateOptions{})
		wantAPIError(t, err, 409, "the object has been modified")
	})

	t.Run("UpdateStatus of a missing VM is NotFound", func(t *testing.T) {
		vm := newVM("missing")
		vm.Status.Phase = v1alpha1.VirtualMachineRunning
		_, err := vms(s, unique(t)).UpdateStatus(t.Context(), vm, metav1.UpdateOptions{})
		wantAPIError(t, err, 404, `"missing" not found`)
	})

	t.Run("hypervisor status is validated", func(t *testing.T) {
		hvs := s.Client.VesselV1alpha1().Hypervisors()
		hv, err := hvs.Create(t.Context(), &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: unique(t)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hv.Status.Capacity = v1alpha1.HypervisorResources{CPUs: 4, Memory: resource.MustParse("8Gi"), VMs: 10}
		// vCPUs may be overcommitted; memory may not.
		hv.Status.Allocatable = v1alpha1.HypervisorResources{CPUs: 32, Memory: resource.MustParse("16Gi"), VMs: 10}
		_, err = hvs.UpdateStatus(t.Context(), hv, metav1.UpdateOptions{})
		wantAPIError(t, err, 422, "status.allocatable.memory")
	})

	// Each kind, through merge patches: status sent to the main resource and
	// spec sent to the status subresource are dropped.
	t.Run("VirtualMachine", func(t *testing.T) {
		c := s.Client.VesselV1alpha1().VirtualMachines(unique(t))
		statusProtection[*v1alpha1.VirtualMachine]{
			create: func(ctx context.Context, name string) (*v1alpha1.VirtualMachine, error) {
				return c.Create(ctx, newVM(name), metav1.CreateOptions{})
			},
			patch:       c.Patch,
			spec:        func(vm *v1alpha1.VirtualMachine) any { return vm.Spec },
			status:      func(vm *v1alpha1.VirtualMachine) any { return vm.Status },
			specPatch:   `{"cpus": 3}`,
			statusPatch: `{"phase": "Running"}`,
		}.run(t)
	})
	t.Run("VirtualMachineSnapshot", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("vm-a"))
		c := s.Client.VesselV1alpha1().VirtualMachineSnapshots(ns)
		statusProtection[*v1alpha1.VirtualMachineSnapshot]{
			create: func(ctx context.Context, name string) (*v1alpha1.VirtualMachineSnapshot, error) {
				return c.Create(ctx, &v1alpha1.VirtualMachineSnapshot{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: "vm-a"},
				}, metav1.CreateOptions{})
			},
			patch:       c.Patch,
			spec:        func(o *v1alpha1.VirtualMachineSnapshot) any { return o.Spec },
			status:      func(o *v1alpha1.VirtualMachineSnapshot) any { return o.Status },
			specPatch:   `{"virtualMachineName": "vm-b"}`,
			statusPatch: `{"phase": "Succeeded", "readyToUse": true}`,
		}.run(t)
	})
	t.Run("VirtualMachineRestore", func(t *testing.T) {
		ns := unique(t)
		createVM(t, s, ns, newVM("vm-a"))
		createSnapshot(t, s, ns, "snap", "vm-a", true)
		c := s.Client.VesselV1alpha1().VirtualMachineRestores(ns)
		statusProtection[*v1alpha1.VirtualMachineRestore]{
			create: func(ctx context.Context, name string) (*v1alpha1.VirtualMachineRestore, error) {
				return c.Create(ctx, &v1alpha1.VirtualMachineRestore{
					ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "vm-a", SnapshotName: "snap"},
				}, metav1.CreateOptions{})
			},
			patch:       c.Patch,
			spec:        func(o *v1alpha1.VirtualMachineRestore) any { return o.Spec },
			status:      func(o *v1alpha1.VirtualMachineRestore) any { return o.Status },
			specPatch:   `{"snapshotName": "other"}`,
			statusPatch: `{"phase": "Succeeded", "complete": true}`,
		}.run(t)
	})
	t.Run("Hypervisor", func(t *testing.T) {
		c := s.Client.VesselV1alpha1().Hypervisors()
		statusProtection[*v1alpha1.Hypervisor]{
			create: func(ctx context.Context, name string) (*v1alpha1.Hypervisor, error) {
				return c.Create(ctx, &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			},
			patch:       c.Patch,
			spec:        func(o *v1alpha1.Hypervisor) any { return o.Spec },
			status:      func(o *v1alpha1.Hypervisor) any { return o.Status },
			specPatch:   `{"unschedulable": true}`,
			statusPatch: `{"kvm": true, "agentVersion": "v1"}`,
		}.run(t)
	})
}

// statusProtection checks that a kind's main resource never writes status
// and its status subresource never writes spec.
type statusProtection[T object] struct {
	create func(ctx context.Context, name string) (T, error)
	patch  func(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	spec   func(T) any
	status func(T) any
	// specPatch and statusPatch are merge patches of spec and status that
	// change them.
	specPatch, statusPatch string
}

func (p statusProtection[T]) run(t *testing.T) {
	ctx := t.Context()
	name := unique(t)
	created, err := p.create(ctx, name)
	if err != nil {
		t.Fatalf("create: %v", err)
	}

	main, err := p.patch(ctx, name, types.MergePatchType, []byte(`{"status": `+p.statusPatch+`}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patch status through the main resource: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(p.status(main), p.status(created)) {
		t.Errorf("main resource wrote status: %+v, want %+v", p.status(main), p.status(created))
	}

	// Metadata sent to status is ignored too, as for custom resources:
	// whoever writes status (an agent) cannot relabel, annotate, hold or
	// re-own the object.
	forgedMeta := `{"labels": {"forged": "yes"}, "annotations": {"forged": "yes"}, "finalizers": ["example.com/forged"],
		"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "forged", "uid": "6b1a0c2e-0a7e-4a3b-9a51-3a4f1f0c9d10"}]}`
	body := `{"metadata": ` + forgedMeta + `, "spec": ` + p.specPatch + `, "status": ` + p.statusPatch + `}`
	viaStatus, err := p.patch(ctx, name, types.MergePatchType, []byte(body), metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("patch through the status subresource: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(p.spec(viaStatus), p.spec(main)) {
		t.Errorf("status subresource wrote spec: %+v, want %+v", p.spec(viaStatus), p.spec(main))
	}
	for what, got := range map[string][2]any{
		"labels":          {viaStatus.GetLabels(), main.GetLabels()},
		"annotations":     {viaStatus.GetAnnotations(), main.GetAnnotations()},
		"finalizers":      {viaStatus.GetFinalizers(), main.GetFinalizers()},
		"ownerReferences": {viaStatus.GetOwnerReferences(), main.GetOwnerReferences()},
	} {
		if !apiequality.Semantic.DeepEqual(got[0], got[1]) {
			t.Errorf("status subresource wrote metadata.%s: %v, want %v", what, got[0], got[1])
		}
	}
	if apiequality.Semantic.DeepEqual(p.status(viaStatus), p.status(main)) {
		t.Errorf("status subresource did not write status: %+v", p.status(viaStatus))
	}
	if viaStatus.GetGeneration() != main.GetGeneration() {
		t.Errorf("a status write moved generation from %d to %d", main.GetGeneration(), viaStatus.GetGeneration())
	}
}
