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

package runstrategy

import (
	"testing"
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

func action(t v1alpha1.PowerActionType, id int64) *v1alpha1.PowerAction {
	return &v1alpha1.PowerAction{Type: t, ID: id}
}

func TestShouldRun(t *testing.T) {
	const (
		always = v1alpha1.RunStrategyAlways
		rerun  = v1alpha1.RunStrategyRerunOnFailure
		manual = v1alpha1.RunStrategyManual
		halted = v1alpha1.RunStrategyHalted
		once   = v1alpha1.RunStrategyOnce
		start  = v1alpha1.PowerActionStart
		stop   = v1alpha1.PowerActionStop
		restrt = v1alpha1.PowerActionRestart
	)
	tests := []struct {
		name string
		in   Input
		want bool
	}{
		{"halted never runs", Input{Strategy: halted, Active: true}, false},
		{"halted ignores a stale start", Input{Strategy: halted, Action: action(start, 1), ObservedActionID: 1}, false},
		{"always runs from creation", Input{Strategy: always}, true},
		{"always restarts after a guest shutdown", Input{Strategy: always, StopReason: StopReasonGuestShutdown, EverStarted: true}, true},
		{"always restarts after a crash", Input{Strategy: always, StopReason: StopReasonCrashed, EverStarted: true}, true},

		{"manual without an action stays off", Input{Strategy: manual}, false},
		{"manual without an action stops a running guest", Input{Strategy: manual, Active: true}, false},
		{"manual pending start runs", Input{Strategy: manual, Action: action(start, 1)}, true},
		{"manual started keeps running", Input{Strategy: manual, Action: action(start, 1), ObservedActionID: 1, Active: true, EverStarted: true}, true},
		{"manual is not started again on its own", Input{Strategy: manual, Action: action(start, 1), ObservedActionID: 1, StopReason: StopReasonCrashed, EverStarted: true}, false},
		{"manual pending restart runs", Input{Strategy: manual, Action: action(restrt, 2), ObservedActionID: 1, Active: true}, true},
		{"manual stop", Input{Strategy: manual, Action: action(stop, 2), ObservedActionID: 1, Active: true}, false},

		{"rerun runs from creation", Input{Strategy: rerun}, true},
		{"rerun restarts after a crash", Input{Strategy: rerun, StopReason: StopReasonCrashed, EverStarted: true}, true},
		{"rerun stays off after a guest shutdown", Input{Strategy: rerun, StopReason: StopReasonGuestShutdown, EverStarted: true}, false},
		{"rerun runs again on a start after a guest shutdown", Input{Strategy: rerun, StopReason: StopReasonGuestShutdown, Action: action(start, 3), ObservedActionID: 2}, true},
		{"rerun keeps running after that start", Input{Strategy: rerun, StopReason: StopReasonGuestShutdown, Action: action(start, 3), ObservedActionID: 3, Active: true}, true},
		{"rerun stop (pending)", Input{Strategy: rerun, Action: action(stop, 1), Active: true}, false},
		{"rerun stop (done) survives a crash reason", Input{Strategy: rerun, Action: action(stop, 1), ObservedActionID: 1, StopReason: StopReasonCrashed}, false},

		{"once runs the first time", Input{Strategy: once}, true},
		{"once keeps running", Input{Strategy: once, EverStarted: true, Active: true}, true},
		{"once stays off after it stopped", Input{Strategy: once, EverStarted: true, StopReason: StopReasonGuestShutdown}, false},
		{"once stays off after a crash", Input{Strategy: once, EverStarted: true, StopReason: StopReasonCrashed}, false},
		{"once runs again on a start", Input{Strategy: once, EverStarted: true, Action: action(start, 2), ObservedActionID: 1}, true},
		{"once stays off after that run", Input{Strategy: once, EverStarted: true, Action: action(start, 2), ObservedActionID: 2, StopReason: StopReasonGuestShutdown}, false},
		{"once stop", Input{Strategy: once, Action: action(stop, 1), Active: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShouldRun(tt.in); got != tt.want {
				t.Errorf("ShouldRun(%+v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestStopGrace(t *testing.T) {
	sec := func(n int64) *int64 { return &n }
	spec := &v1alpha1.VirtualMachineSpec{TerminationGracePeriodSeconds: sec(20)}
	tests := []struct {
		name   string
		spec   *v1alpha1.VirtualMachineSpec
		action *v1alpha1.PowerAction
		want   time.Duration
	}{
		{"default", &v1alpha1.VirtualMachineSpec{}, nil, 30 * time.Second},
		{"spec", spec, nil, 20 * time.Second},
		{"stop overrides", spec, &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStop, GracePeriodSeconds: sec(5)}, 5 * time.Second},
		{"restart overrides", spec, &v1alpha1.PowerAction{Type: v1alpha1.PowerActionRestart, GracePeriodSeconds: sec(0)}, 0},
		{"stop without override", spec, &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStop}, 20 * time.Second},
		{"start never overrides", spec, &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStart, GracePeriodSeconds: sec(1)}, 20 * time.Second},
	}
	for _, tt := range tests {
		if got := StopGrace(tt.spec, tt.action); got != tt.want {
			t.Errorf("%s: StopGrace = %s, want %s", tt.name, got, tt.want)
		}
	}
}
