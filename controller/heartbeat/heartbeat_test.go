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
