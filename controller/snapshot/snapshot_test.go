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

package snapshot

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/generated/clientset/versioned/fake"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
)

func hypervisor(name string, ready metav1.ConditionStatus, msg string) *v1alpha1.Hypervisor {
	hv := &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ready != "" {
		hv.Status.Conditions = []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: ready, Reason: "R", Message: msg}}
	}
	return hv
}

func vmOn(name, node string) *v1alpha1.VirtualMachine {
	return &v1alpha1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: v1alpha1.VirtualMachineSpec{NodeName: node}}
}

func TestBlocked(t *testing.T) {
	for _, tc := range []struct {
		name string
		vm   *v1alpha1.VirtualMachine
		hv   *v1alpha1.Hypervisor
		want string // substring of the message; empty: not blocked
	}{
		{"unbound", vmOn("a", ""), nil, "VM is not bound to a hypervisor"},
		{"missing hypervisor", vmOn("a", "hv-x"), nil, "hypervisor hv-x is not ready: it does not exist"},
		{"never reported", vmOn("a", "hv-1"), hypervisor("hv-1", "", ""), "hypervisor hv-1 is not ready: its agent never reported"},
		{"heartbeat missed", vmOn("a", "hv-1"), hypervisor("hv-1", metav1.ConditionUnknown, "the agent has not reported for more than 40s"),
			"hypervisor hv-1 is not ready: the agent has not reported for more than 40s"},
		{"ready", vmOn("a", "hv-1"), hypervisor("hv-1", metav1.ConditionTrue, ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason, msg := Blocked(tc.vm, tc.hv)
			if tc.want == "" {
				if reason != "" {
					t.Errorf("blocked (%s: %s), want not blocked", reason, msg)
				}
				return
			}
			if reason == "" || !strings.Contains(msg, tc.want) {
				t.Errorf("got (%q, %q), want a message with %q", reason, msg, tc.want)
			}
		})
	}
}

// TestCheckFailsOnlyOverduePendingObjectsNoAgentCanTake runs one pass over
// a fake API: only objects Pending past the timeout whose VM has no
// working agent are failed; an agent's InProgress is never overwritten.
func TestCheckFailsOnlyOverduePendingObjectsNoAgentCanTake(t *testing.T) {
	old := metav1.NewTime(time.Now().Add(-time.Minute))
	recent := metav1.NewTime(time.Now())
	snap := func(name, vm string, created metav1.Time, phase v1alpha1.SnapshotPhase) *v1alpha1.VirtualMachineSnapshot {
		return &v1alpha1.VirtualMachineSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: created},
			Spec:       v1alpha1.VirtualMachineSnapshotSpec{VirtualMachineName: vm},
			Status:     v1alpha1.VirtualMachineSnapshotStatus{Phase: phase},
		}
	}
	objs := []runtime.Object{
		hypervisor("up", metav1.ConditionTrue, ""), hypervisor("down", metav1.ConditionUnknown, "the agent has not reported for more than 40s"),
		vmOn("on-up", "up"), vmOn("on-down", "down"), vmOn("unbound", ""),
		snap("s-up", "on-up", old, v1alpha1.SnapshotPending),
		snap("s-down", "on-down", old, v1alpha1.SnapshotPending),
		snap("s-down-recent", "on-down", recent, v1alpha1.SnapshotPending),
		snap("s-down-inprogress", "on-down", old, v1alpha1.SnapshotInProgress),
		snap("s-unbound", "unbound", old, ""),
		&v1alpha1.VirtualMachineRestore{
			ObjectMeta: metav1.ObjectMeta{Name: "r-down", Namespace: "ns", CreationTimestamp: old},
			Spec:       v1alpha1.VirtualMachineRestoreSpec{VirtualMachineName: "on-down", SnapshotName: "x"},
			Status:     v1alpha1.VirtualMachineRestoreStatus{Phase: v1alpha1.SnapshotPending},
		},
	}
	client := fake.NewSimpleClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	c := New(client, factory)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("informers did not sync")
	}
	if err := c.check(ctx); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{
		"s-up":              "",
		"s-down":            "hypervisor down is not ready",
		"s-down-recent":     "",
		"s-down-inprogress": "",
		"s-unbound":         "VM is not bound to a hypervisor",
	}
	for name, msg := range want {
		s, err := client.VesselV1alpha1().VirtualMachineSnapshots("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		failed := s.Status.Phase == v1alpha1.SnapshotFailed
		switch {
		case msg == "" && failed:
			t.Errorf("%s failed (%s), want untouched", name, s.Status.Error)
		case msg != "" && (!failed || !strings.Contains(s.Status.Error, msg) || s.Status.ReadyToUse):
			t.Errorf("%s: phase %s error %q, want Failed with %q", name, s.Status.Phase, s.Status.Error, msg)
		}
	}
	r, err := client.VesselV1alpha1().VirtualMachineRestores("ns").Get(ctx, "r-down", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status.Phase != v1alpha1.SnapshotFailed || !strings.Contains(r.Status.Error, "hypervisor down is not ready") || r.Status.Complete {
		t.Errorf("restore: %+v, want Failed because the hypervisor is not ready", r.Status)
	}
}
