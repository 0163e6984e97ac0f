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
	"net/http"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func newClone(name, sourceVM, sourceSnapshot, target string) *v1alpha1.VirtualMachineClone {
	return &v1alpha1.VirtualMachineClone{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.VirtualMachineCloneSpec{
			Source: v1alpha1.CloneSource{VirtualMachineName: sourceVM, SnapshotName: sourceSnapshot},
			Target: v1alpha1.CloneTarget{Name: target},
		},
	}
}

// A clone is accepted only for a source that exists and can be cloned that
// way, with memory by default; what it clones never changes afterwards.
func TestCloneAdmission(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	clones := s.Client.VesselV1alpha1().VirtualMachineClones(ns)
	createVM(t, s, ns, newVM("src"))

	c, err := clones.Create(t.Context(), newClone("c1", "src", "", "copy"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("clone an existing VM: %v", err)
	}
	if c.Spec.Memory == nil || !*c.Spec.Memory || c.Status.Phase != v1alpha1.ClonePending {
		t.Errorf("new clone: memory %v, phase %q; want memory true (the default), Pending", c.Spec.Memory, c.Status.Phase)
	}

	_, err = clones.Create(t.Context(), newClone("c2", "nope", "", "copy2"), metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, `spec.source.virtualMachineName: Invalid value: "nope": no such VirtualMachine in this namespace`)
	_, err = clones.Create(t.Context(), newClone("c3", "src", "snap", "copy3"), metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "exactly one of virtualMachineName and snapshotName must be set")
	_, err = clones.Create(t.Context(), newClone("c4", "src", "", "Not_A_Name"), metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "spec.target.name")

	// A snapshot without memory clones only with memory: false.
	createSnapshot(t, s, ns, "disks", "src", true)
	_, err = clones.Create(t.Context(), newClone("c5", "", "disks", "copy5"), metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "the snapshot holds no memory")
	noMemory := newClone("c6", "", "disks", "copy6")
	noMemory.Spec.Memory = ptr(false)
	if _, err := clones.Create(t.Context(), noMemory, metav1.CreateOptions{}); err != nil {
		t.Errorf("disks-only clone of a disk snapshot: %v", err)
	}
	createSnapshot(t, s, ns, "pending", "src", false)
	_, err = clones.Create(t.Context(), newClone("c7", "", "pending", "copy7"), metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "the snapshot is not ready to use")

	c.Spec.Target.Name = "other"
	_, err = clones.Update(t.Context(), c, metav1.UpdateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "field is immutable")

	list, err := clones.List(t.Context(), metav1.ListOptions{FieldSelector: "spec.source.virtualMachineName=src"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "c1" {
		t.Errorf("field selector spec.source.virtualMachineName=src: %v, %+v", err, list)
	}
}

// A pool is scaled through its scale subresource, as `kubectl scale` and
// autoscalers do, with an update or a merge patch; nothing but
// spec.replicas changes.
func TestPoolScaleSubresource(t *testing.T) {
	s := startServer(t)
	ns := unique(t)
	pools := s.Client.VesselV1alpha1().VirtualMachinePools(ns)
	pool := &v1alpha1.VirtualMachinePool{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: v1alpha1.VirtualMachinePoolSpec{Template: v1alpha1.VirtualMachineTemplate{
			Metadata: v1alpha1.VirtualMachineTemplateMetadata{Labels: map[string]string{"app": "web"}},
			Spec:     &v1alpha1.VirtualMachineSpec{},
		}},
	}
	created, err := pools.Create(t.Context(), pool, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pool: %v", err)
	}
	if created.Spec.Replicas == nil || *created.Spec.Replicas != 1 || created.Spec.Template.Spec.CPUs != 1 {
		t.Errorf("defaults: replicas %v, template cpus %d; want 1, 1", created.Spec.Replicas, created.Spec.Template.Spec.CPUs)
	}

	scale, err := pools.GetScale(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get scale: %v", err)
	}
	if scale.Spec.Replicas != 1 || scale.Name != "web" {
		t.Errorf("scale: %+v", scale)
	}
	scale.Spec.Replicas = 3
	if scale, err = pools.UpdateScale(t.Context(), "web", scale, metav1.UpdateOptions{}); err != nil || scale.Spec.Replicas != 3 {
		t.Fatalf("update scale to 3: %v, %+v", err, scale)
	}
	// kubectl scale sends a merge patch of the Scale.
	var patched autoscalingv1.Scale
	err = s.Client.VesselV1alpha1().RESTClient().Patch(types.MergePatchType).Namespace(ns).
		Resource("virtualmachinepools").Name("web").SubResource("scale").
		Body([]byte(`{"spec":{"replicas":5}}`)).Do(t.Context()).Into(&patched)
	if err != nil || patched.Spec.Replicas != 5 {
		t.Fatalf("patch scale to 5: %v, %+v", err, patched)
	}
	got, err := pools.Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 5 || got.Spec.Template.Metadata.Labels["app"] != "web" {
		t.Errorf("pool after scaling: %v, %+v", err, got)
	}
	scale.Spec.Replicas = -1
	scale.ResourceVersion = ""
	_, err = pools.UpdateScale(t.Context(), "web", scale, metav1.UpdateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "spec.replicas")

	warm := pool.DeepCopy()
	warm.Name = "warm"
	warm.Spec.Warm = &v1alpha1.WarmPool{SnapshotName: "s", Ready: 2}
	_, err = pools.Create(t.Context(), warm, metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "spec.template.spec: Forbidden: must not be set with spec.warm")
	warm.Spec.Template.Spec = nil
	warm.Spec.Template.Metadata.Labels[v1alpha1.LabelPool] = "x"
	_, err = pools.Create(t.Context(), warm, metav1.CreateOptions{})
	wantAPIError(t, err, http.StatusUnprocessableEntity, "is set by the pool")
	delete(warm.Spec.Template.Metadata.Labels, v1alpha1.LabelPool)
	if _, err := pools.Create(t.Context(), warm, metav1.CreateOptions{}); err != nil {
		t.Errorf("create a warm pool: %v", err)
	}
}
