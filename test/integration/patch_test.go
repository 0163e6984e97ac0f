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
	"maps"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestPatch(t *testing.T) {
	s := startServer(t)

	// vmWithDisk has one disk and one node selector label, so a patch can be
	// seen to keep or replace them.
	vmWithDisk := func(t *testing.T, ns string) *v1alpha1.VirtualMachine {
		vm := newVM("a")
		vm.Spec.Disks = []v1alpha1.Disk{{Name: "root", Blank: &v1alpha1.BlankSource{Size: resource.MustParse("1Gi")}}}
		vm.Spec.NodeSelector = map[string]string{"zone": "a"}
		return createVM(t, s, ns, vm)
	}
	patch := func(t *testing.T, ns string, pt types.PatchType, body string) *v1alpha1.VirtualMachine {
		t.Helper()
		vm, err := vms(s, ns).Patch(t.Context(), "a", pt, []byte(body), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("%s patch %s: %v", pt, body, err)
		}
		return vm
	}

	t.Run("JSON patch", func(t *testing.T) {
		ns := unique(t)
		vmWithDisk(t, ns)
		vm := patch(t, ns, types.JSONPatchType, `[
			{"op": "replace", "path": "/spec/cpus", "value": 4},
			{"op": "add", "path": "/spec/disks/-", "value": {"name": "data", "blank": {"size": "2Gi"}}}
		]`)
		if vm.Spec.CPUs != 4 {
			t.Errorf("cpus = %d, want 4", vm.Spec.CPUs)
		}
		if len(vm.Spec.Disks) != 2 || vm.Spec.Disks[0].Name != "root" || vm.Spec.Disks[1].Name != "data" {
			t.Errorf("disks = %+v, want root then data", vm.Spec.Disks)
		}
		// The added disk went through defaulting like a created one.
		if vm.Spec.Disks[1].Bus != v1alpha1.DiskBusVirtio {
			t.Errorf("added disk bus = %q, want the default virtio", vm.Spec.Disks[1].Bus)
		}
		if vm.Generation != 2 {
			t.Errorf("generation = %d, want 2", vm.Generation)
		}
	})

	t.Run("JSON patch whose test fails changes nothing", func(t *testing.T) {
		ns := unique(t)
		before := vmWithDisk(t, ns)
		_, err := vms(s, ns).Patch(t.Context(), "a", types.JSONPatchType,
			[]byte(`[{"op": "test", "path": "/spec/cpus", "value": 9}, {"op": "replace", "path": "/spec/cpus", "value": 2}]`), metav1.PatchOptions{})
		// k8s.io/apiserver answers a failed JSON patch with a bare 422 (as
		// kube-apiserver does): the reason is not passed on.
		wantAPIError(t, err, 422, "the server rejected our request")
		if got := getVM(t, s, ns, "a"); got.ResourceVersion != before.ResourceVersion {
			t.Errorf("VM changed by a failed patch: cpus %d", got.Spec.CPUs)
		}
	})

	t.Run("merge patch", func(t *testing.T) {
		ns := unique(t)
		vmWithDisk(t, ns)
		vm := patch(t, ns, types.MergePatchType, `{"spec": {"memory": "256Mi", "nodeSelector": {"rack": "3"}}}`)
		if vm.Spec.Memory.String() != "256Mi" {
			t.Errorf("memory = %s, want 256Mi", vm.Spec.Memory.String())
		}
		if want := map[string]string{"zone": "a", "rack": "3"}; !maps.Equal(vm.Spec.NodeSelector, want) {
			t.Errorf("nodeSelector = %v, want %v (maps merge)", vm.Spec.NodeSelector, want)
		}
		if len(vm.Spec.Disks) != 1 || vm.Spec.CPUs != 1 {
			t.Errorf("untouched fields changed: disks %+v, cpus %d", vm.Spec.Disks, vm.Spec.CPUs)
		}
		// null removes a field; defaulting then puts the default back.
		vm = patch(t, ns, types.MergePatchType, `{"spec": {"memory": null, "nodeSelector": {"zone": null}}}`)
		if vm.Spec.Memory.String() != "128Mi" {
			t.Errorf("memory = %s after removing it, want the default 128Mi", vm.Spec.Memory.String())
		}
		if want := map[string]string{"rack": "3"}; !maps.Equal(vm.Spec.NodeSelector, want) {
			t.Errorf("nodeSelector = %v, want %v", vm.Spec.NodeSelector, want)
		}
	})

	// Strategic merge patch works on vessel.dev kinds: unlike a
	// CustomResource, they are Go types in the server's scheme, and their
	// keyed lists (disks, interfaces, conditions) merge by key, so the
	// default `kubectl patch` adds a disk without wiping the others and
	// `$patch: delete` removes one.
	t.Run("strategic merge patch", func(t *testing.T) {
		ns := unique(t)
		vmWithDisk(t, ns)
		vm := patch(t, ns, types.StrategicMergePatchType, `{"spec": {"cpus": 3, "nodeSelector": {"rack": "3"}}}`)
		if vm.Spec.CPUs != 3 {
			t.Errorf("cpus = %d, want 3", vm.Spec.CPUs)
		}
		if want := map[string]string{"zone": "a", "rack": "3"}; !maps.Equal(vm.Spec.NodeSelector, want) {
			t.Errorf("nodeSelector = %v, want %v (maps merge)", vm.Spec.NodeSelector, want)
		}
		vm = patch(t, ns, types.StrategicMergePatchType, `{"spec": {"disks": [{"name": "extra", "blank": {"size": "2Gi"}}]}}`)
		if got := diskNames(vm); len(got) != 2 || !slices.Contains(got, "root") || !slices.Contains(got, "extra") {
			t.Errorf("disks = %v after adding extra, want root kept and extra added", got)
		}
		vm = patch(t, ns, types.StrategicMergePatchType, `{"spec": {"disks": [{"name": "root", "$patch": "delete"}]}}`)
		if got := diskNames(vm); !slices.Equal(got, []string{"extra"}) {
			t.Errorf("disks = %v after deleting root, want [extra]", got)
		}
	})

	t.Run("patching status through the main resource is ignored", func(t *testing.T) {
		ns := unique(t)
		vmWithDisk(t, ns)
		for _, pt := range []types.PatchType{types.MergePatchType, types.StrategicMergePatchType} {
			vm := patch(t, ns, pt, `{"status": {"phase": "Running", "nodeName": "forged"}}`)
			if vm.Status.Phase != v1alpha1.VirtualMachinePending || vm.Status.NodeName != "" {
				t.Errorf("%s patch wrote status: %+v", pt, vm.Status)
			}
		}
		vm := patch(t, ns, types.JSONPatchType, `[{"op": "replace", "path": "/status/phase", "value": "Running"}]`)
		if vm.Status.Phase != v1alpha1.VirtualMachinePending {
			t.Errorf("JSON patch wrote status: %+v", vm.Status)
		}
	})

	t.Run("a patch that makes the VM invalid is refused", func(t *testing.T) {
		ns := unique(t)
		before := vmWithDisk(t, ns)
		_, err := vms(s, ns).Patch(t.Context(), "a", types.MergePatchType, []byte(`{"spec": {"cpus": -1}}`), metav1.PatchOptions{})
		wantAPIError(t, err, 422, "spec.cpus")
		_, err = vms(s, ns).Patch(t.Context(), "a", types.MergePatchType, []byte(`{"spec": {"nodeName": "hv-1"}}`), metav1.PatchOptions{})
		wantAPIError(t, err, 422, "spec.nodeName")
		if got := getVM(t, s, ns, "a"); got.ResourceVersion != before.ResourceVersion {
			t.Errorf("VM changed by refused patches: %+v", got.Spec)
		}
	})

	t.Run("patch of a missing VM is NotFound", func(t *testing.T) {
		_, err := vms(s, unique(t)).Patch(t.Context(), "missing", types.MergePatchType, []byte(`{"spec": {"cpus": 2}}`), metav1.PatchOptions{})
		wantAPIError(t, err, 404, `"missing" not found`)
	})
}

func diskNames(vm *v1alpha1.VirtualMachine) []string {
	var names []string
	for _, d := range vm.Spec.Disks {
		names = append(names, d.Name)
	}
	return names
}
