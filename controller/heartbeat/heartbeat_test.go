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

package heartbeat

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func TestStale(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }
	hv := func(ready metav1.ConditionStatus, last *metav1.Time) *v1alpha1.Hypervisor {
		return &v1alpha1.Hypervisor{Status: v1alpha1.HypervisorStatus{
			LastHeartbeatTime: last,
			Conditions:        []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: ready}},
		}}
	}
	tests := []struct {
		name string
		hv   *v1alpha1.Hypervisor
		want bool
	}{
		{"fresh", hv(metav1.ConditionTrue, at(5*time.Second)), false},
		{"just within grace", hv(metav1.ConditionTrue, at(40*time.Second)), false},
		{"silent too long", hv(metav1.ConditionTrue, at(41*time.Second)), true},
		{"ready without heartbeat time", hv(metav1.ConditionTrue, nil), true},
		{"already not ready", hv(metav1.ConditionUnknown, at(time.Hour)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stale(tt.hv, now, 40*time.Second); got != tt.want {
				t.Errorf("stale = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVMCondition(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(-ago)); return &t }
	hv := func(ready metav1.ConditionStatus, msg string, last *metav1.Time) *v1alpha1.Hypervisor {
		return &v1alpha1.Hypervisor{
			ObjectMeta: metav1.ObjectMeta{Name: "hv1"},
			Status: v1alpha1.HypervisorStatus{
				LastHeartbeatTime: last,
				Conditions:        []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: ready, Message: msg}},
			},
		}
	}
	tests := []struct {
		name string
		hv   *v1alpha1.Hypervisor
		want string // "" for no condition
	}{
		{"ready", hv(metav1.ConditionTrue, "", at(time.Second)), ""},
		{"silent 52s", hv(metav1.ConditionUnknown, "", at(52*time.Second)), "hypervisor hv1 is not ready: its agent has not reported for more than 30s"},
		{"silent 7m", hv(metav1.ConditionUnknown, "", at(7*time.Minute+3*time.Second)), "hypervisor hv1 is not ready: its agent has not reported for more than 5m"},
		{"silent exactly 2m", hv(metav1.ConditionUnknown, "", at(2*time.Minute)), "hypervisor hv1 is not ready: its agent has not reported for more than 2m"},
		{"agent says why", hv(metav1.ConditionFalse, "libvirtd is unreachable: connection refused", at(time.Second)), "hypervisor hv1 is not ready: libvirtd is unreachable: connection refused"},
		{"never reported", &v1alpha1.Hypervisor{ObjectMeta: metav1.ObjectMeta{Name: "hv1"}}, "hypervisor hv1 is not ready: its agent has not reported yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := vmCondition(tt.hv, now)
			switch {
			case tt.want == "" && c != nil:
				t.Errorf("condition %+v, want none", c)
			case tt.want != "" && c == nil:
				t.Errorf("no condition, want %q", tt.want)
			case c != nil && (c.Message != tt.want || c.Status != metav1.ConditionUnknown || c.Reason != v1alpha1.VirtualMachineReasonHypervisorNotReady):
				t.Errorf("condition %s/%s %q, want Unknown/%s %q", c.Status, c.Reason, c.Message, v1alpha1.VirtualMachineReasonHypervisorNotReady, tt.want)
			}
		})
	}
}

// A dead host's VMs are rewritten when the rounded silence moves on, not
// on every check.
func TestVMConditionChangesRarely(t *testing.T) {
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	last := metav1.NewTime(start)
	hv := &v1alpha1.Hypervisor{
		ObjectMeta: metav1.ObjectMeta{Name: "hv1"},
		Status: v1alpha1.HypervisorStatus{
			LastHeartbeatTime: &last,
			Conditions:        []metav1.Condition{{Type: v1alpha1.HypervisorConditionReady, Status: metav1.ConditionUnknown}},
		},
	}
	vm := &v1alpha1.VirtualMachine{}
	writes := 0
	for now := start.Add(40 * time.Second); now.Before(start.Add(time.Hour)); now = now.Add(5 * time.Second) {
		c := vmCondition(hv, now)
		if needsMark(vm, c) {
			meta.SetStatusCondition(&vm.Status.Conditions, *c)
			writes++
		}
	}
	if writes > 10 {
		t.Errorf("%d writes in the first hour of silence, checking every 5s; want a handful", writes)
	}
	if writes < 5 {
		t.Errorf("%d writes in the first hour: the message does not follow the silence", writes)
	}
}
