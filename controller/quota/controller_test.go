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

package quota

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	vesselfake "github.com/vessel-vm/vessel/generated/clientset/versioned/fake"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

func newVM(name string, cpus int32, memory string, blanks ...string) *v1alpha1.VirtualMachine {
	v := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
		Spec:       v1alpha1.VirtualMachineSpec{CPUs: cpus, Memory: resource.MustParse(memory)},
	}
	for i, size := range blanks {
		v.Spec.Disks = append(v.Spec.Disks, v1alpha1.Disk{Name: string(rune('a' + i)), Blank: &v1alpha1.BlankSource{Size: resource.MustParse(size)}})
	}
	return v
}

func list(pairs ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		out[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return out
}

type fixture struct {
	ctl    *Controller
	kube   *kubefake.Clientset
	vessel *vesselfake.Clientset
	clock  time.Time
}

func start(t *testing.T, quotas []runtime.Object, objects ...runtime.Object) *fixture {
	t.Helper()
	kube := kubefake.NewClientset(quotas...)
	vessel := vesselfake.NewClientset(objects...)
	core := kubeinformers.NewSharedInformerFactory(kube, 0)
	vf := informers.NewSharedInformerFactory(vessel, 0)
	ctl, err := New(kube, core, vf)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ctl: ctl, kube: kube, vessel: vessel, clock: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	ctl.now = func() time.Time { return f.clock }
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	core.Start(ctx.Done())
	vf.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ctl.synced...) {
		t.Fatal("caches did not sync")
	}
	return f
}

func (f *fixture) quota(t *testing.T, name string) *corev1.ResourceQuota {
	t.Helper()
	q, err := f.kube.CoreV1().ResourceQuotas("team-a").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// waitInformer waits until check holds on the informers' caches.
func (f *fixture) waitInformer(t *testing.T, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatal("the informers did not catch up")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestControllerCountsVesselResourcesOnly(t *testing.T) {
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "q"},
		Spec: corev1.ResourceQuotaSpec{Hard: list(
			"count/virtualmachines.vessel.dev", "5",
			"count/virtualmachinesnapshots.vessel.dev", "5",
			"vessel.dev/requests.cpu", "8",
			"vessel.dev/requests.memory", "4Gi",
			"vessel.dev/requests.storage", "100Gi",
			"pods", "10",
		)},
		// What kube-controller-manager wrote for pods stays.
		Status: corev1.ResourceQuotaStatus{Hard: list("pods", "10"), Used: list("pods", "3")},
	}
	scoped := q.DeepCopy()
	scoped.Name, scoped.Spec.Scopes, scoped.Status = "scoped", []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort}, corev1.ResourceQuotaStatus{}
	f := start(t, []runtime.Object{q, scoped},
		newVM("a", 2, "1Gi", "10Gi", "5Gi"),
		newVM("b", 1, "128Mi"),
		&v1alpha1.VirtualMachineSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "s"}},
	)
	ctx := context.Background()
	if _, err := f.ctl.sync(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	got := f.quota(t, "q")
	wantHard := q.Spec.Hard
	wantUsed := list(
		"count/virtualmachines.vessel.dev", "2",
		"count/virtualmachinesnapshots.vessel.dev", "1",
		"vessel.dev/requests.cpu", "3",
		"vessel.dev/requests.memory", "1152Mi",
		"vessel.dev/requests.storage", "15Gi",
		"pods", "3",
	)
	for what, pair := range map[string][2]corev1.ResourceList{"hard": {got.Status.Hard, wantHard}, "used": {got.Status.Used, wantUsed}} {
		if !equal(pair[0], pair[1]) {
			t.Errorf("status.%s = %v, want %v", what, pair[0], pair[1])
		}
	}
	if s := f.quota(t, "scoped"); len(s.Status.Used) != 0 {
		t.Errorf("a scoped quota got usage %v; scopes are about pods", s.Status.Used)
	}

	// A VM deleted: the usage goes down, once admission has settled.
	if err := f.vessel.VesselV1alpha1().VirtualMachines("team-a").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitInformer(t, func() bool {
		vms, _ := f.ctl.evaluators[0].(*vmEvaluator).lister.List(labels.Everything())
		q, _ := f.ctl.quotas.ResourceQuotas("team-a").Get("q")
		used := q.Status.Used[VirtualMachineCount]
		return len(vms) == 1 && used.Cmp(resource.MustParse("2")) == 0
	})
	retry, err := f.ctl.sync(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if retry <= 0 || retry > DefaultSettle {
		t.Errorf("a lower count right after usage changed waits %v, want up to %v", retry, DefaultSettle)
	}
	if used := f.quota(t, "q").Status.Used[VirtualMachineCount]; used.String() != "2" {
		t.Errorf("usage lowered to %s before admission settled", used.String())
	}
	f.clock = f.clock.Add(DefaultSettle)
	if _, err := f.ctl.sync(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	got = f.quota(t, "q")
	for name, want := range map[corev1.ResourceName]string{VirtualMachineCount: "1", RequestsCPU: "1", RequestsMemory: "128Mi", RequestsStorage: "0", "pods": "3"} {
		if q := got.Status.Used[name]; q.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("after the delete, used %s = %s, want %s", name, q.String(), want)
		}
	}

	// A Vessel name removed from spec.hard leaves the status too.
	got.Spec.Hard = list("pods", "10", "count/virtualmachines.vessel.dev", "5")
	if _, err := f.kube.CoreV1().ResourceQuotas("team-a").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitInformer(t, func() bool {
		q, _ := f.ctl.quotas.ResourceQuotas("team-a").Get("q")
		return len(q.Spec.Hard) == 2
	})
	if _, err := f.ctl.sync(ctx, "team-a"); err != nil {
		t.Fatal(err)
	}
	got = f.quota(t, "q")
	if want := list("pods", "10", "count/virtualmachines.vessel.dev", "5"); !equal(got.Status.Hard, want) {
		t.Errorf("status.hard = %v, want %v", got.Status.Hard, want)
	}
	if want := list("pods", "3", "count/virtualmachines.vessel.dev", "1"); !equal(got.Status.Used, want) {
		t.Errorf("status.used = %v, want %v", got.Status.Used, want)
	}
}

func equal(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || v.Cmp(w) != 0 {
			return false
		}
	}
	return true
}
