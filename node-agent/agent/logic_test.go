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

package agent

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
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
		in   powerInput
		want bool
	}{
		{"halted never runs", powerInput{Strategy: halted, Active: true}, false},
		{"halted ignores a stale start", powerInput{Strategy: halted, Action: action(start, 1), ObservedActionID: 1}, false},
		{"always runs from creation", powerInput{Strategy: always}, true},
		{"always restarts after a guest shutdown", powerInput{Strategy: always, StopReason: StopReasonGuestShutdown, EverStarted: true}, true},
		{"always restarts after a crash", powerInput{Strategy: always, StopReason: StopReasonCrashed, EverStarted: true}, true},

		{"manual without an action stays off", powerInput{Strategy: manual}, false},
		{"manual without an action stops a running guest", powerInput{Strategy: manual, Active: true}, false},
		{"manual pending start runs", powerInput{Strategy: manual, Action: action(start, 1)}, true},
		{"manual started keeps running", powerInput{Strategy: manual, Action: action(start, 1), ObservedActionID: 1, Active: true, EverStarted: true}, true},
		{"manual is not started again on its own", powerInput{Strategy: manual, Action: action(start, 1), ObservedActionID: 1, StopReason: StopReasonCrashed, EverStarted: true}, false},
		{"manual pending restart runs", powerInput{Strategy: manual, Action: action(restrt, 2), ObservedActionID: 1, Active: true}, true},
		{"manual stop", powerInput{Strategy: manual, Action: action(stop, 2), ObservedActionID: 1, Active: true}, false},

		{"rerun runs from creation", powerInput{Strategy: rerun}, true},
		{"rerun restarts after a crash", powerInput{Strategy: rerun, StopReason: StopReasonCrashed, EverStarted: true}, true},
		{"rerun stays off after a guest shutdown", powerInput{Strategy: rerun, StopReason: StopReasonGuestShutdown, EverStarted: true}, false},
		{"rerun runs again on a start after a guest shutdown", powerInput{Strategy: rerun, StopReason: StopReasonGuestShutdown, Action: action(start, 3), ObservedActionID: 2}, true},
		{"rerun keeps running after that start", powerInput{Strategy: rerun, StopReason: StopReasonGuestShutdown, Action: action(start, 3), ObservedActionID: 3, Active: true}, true},
		{"rerun stop (pending)", powerInput{Strategy: rerun, Action: action(stop, 1), Active: true}, false},
		{"rerun stop (done) survives a crash reason", powerInput{Strategy: rerun, Action: action(stop, 1), ObservedActionID: 1, StopReason: StopReasonCrashed}, false},

		{"once runs the first time", powerInput{Strategy: once}, true},
		{"once keeps running", powerInput{Strategy: once, EverStarted: true, Active: true}, true},
		{"once stays off after it stopped", powerInput{Strategy: once, EverStarted: true, StopReason: StopReasonGuestShutdown}, false},
		{"once stays off after a crash", powerInput{Strategy: once, EverStarted: true, StopReason: StopReasonCrashed}, false},
		{"once runs again on a start", powerInput{Strategy: once, EverStarted: true, Action: action(start, 2), ObservedActionID: 1}, true},
		{"once stays off after that run", powerInput{Strategy: once, EverStarted: true, Action: action(start, 2), ObservedActionID: 2, StopReason: StopReasonGuestShutdown}, false},
		{"once stop", powerInput{Strategy: once, Action: action(stop, 1), Active: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shouldRun(tt.in); got != tt.want {
				t.Errorf("shouldRun(%+v) = %v, want %v", tt.in, got, tt.want)
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
		if got := stopGrace(tt.spec, tt.action); got != tt.want {
			t.Errorf("%s: stopGrace = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func dom(s hypervisor.State, r hypervisor.Reason) *hypervisor.Domain {
	return &hypervisor.Domain{State: s, Reason: r}
}

func TestNoticeStop(t *testing.T) {
	running, stopping := v1alpha1.VirtualMachineRunning, v1alpha1.VirtualMachineStopping
	tests := []struct {
		name      string
		prev      v1alpha1.VirtualMachinePhase
		prevWhy   string
		dom       *hypervisor.Domain
		requested bool
		want      string
	}{
		{"still running", running, "", dom(hypervisor.StateRunning, ""), false, ""},
		{"guest powered off", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), false, StopReasonGuestShutdown},
		{"QEMU killed", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonCrashed), false, StopReasonCrashed},
		{"destroyed behind our back", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonDestroyed), false, StopReasonCrashed},
		{"we stopped it (ACPI)", stopping, "", dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), true, StopReasonRequested},
		{"we forced it off", stopping, "", dom(hypervisor.StateShutoff, hypervisor.ReasonDestroyed), true, StopReasonRequested},
		{"already noticed", v1alpha1.VirtualMachineStopped, StopReasonCrashed, dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), false, StopReasonCrashed},
		{"defined, never started", v1alpha1.VirtualMachineStarting, "", dom(hypervisor.StateShutoff, ""), false, ""},
		{"kept while running again", running, StopReasonCrashed, dom(hypervisor.StateRunning, ""), false, StopReasonCrashed},
	}
	for _, tt := range tests {
		if got := noticeStop(tt.prev, tt.prevWhy, tt.dom, tt.requested); got != tt.want {
			t.Errorf("%s: noticeStop = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestComputePhase(t *testing.T) {
	tests := []struct {
		name string
		obs  observation
		want v1alpha1.VirtualMachinePhase
	}{
		{"bound, nothing done", observation{}, v1alpha1.VirtualMachineScheduled},
		{"provisioning", observation{Prov: provState{InProgress: true}}, v1alpha1.VirtualMachineProvisioning},
		{"provisioning failed", observation{Prov: provState{Reason: "ImageChecksumMismatch"}}, v1alpha1.VirtualMachineFailed},
		{"foreign domain holds the UUID", observation{Conflict: "x"}, v1alpha1.VirtualMachineFailed},
		{"defined, to be started", observation{Domain: dom(hypervisor.StateShutoff, ""), ShouldRun: true}, v1alpha1.VirtualMachineStarting},
		{"defined, halted", observation{Domain: dom(hypervisor.StateShutoff, "")}, v1alpha1.VirtualMachineStopped},
		{"running", observation{Domain: dom(hypervisor.StateRunning, ""), ShouldRun: true}, v1alpha1.VirtualMachineRunning},
		{"running, being stopped", observation{Domain: dom(hypervisor.StateRunning, ""), Stopping: true}, v1alpha1.VirtualMachineStopping},
		{"guest shutting down", observation{Domain: dom(hypervisor.StateShutdown, "")}, v1alpha1.VirtualMachineStopping},
		{"paused", observation{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonUser), ShouldRun: true}, v1alpha1.VirtualMachinePaused},
		{"paused while starting", observation{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonStartingUp), ShouldRun: true}, v1alpha1.VirtualMachineStarting},
		{"started paused on purpose", observation{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonStartingUp), ShouldRun: true, WantPaused: true}, v1alpha1.VirtualMachinePaused},
		{"crashed", observation{Domain: dom(hypervisor.StateCrashed, "")}, v1alpha1.VirtualMachineFailed},
	}
	for _, tt := range tests {
		if got := computePhase(&tt.obs); got != tt.want {
			t.Errorf("%s: computePhase = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestComputeStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	vm := &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: "vm", Generation: 4},
		Spec: v1alpha1.VirtualMachineSpec{
			Disks:      []v1alpha1.Disk{{Name: "root"}},
			Interfaces: []v1alpha1.Interface{{Name: "default"}},
		},
		Status: v1alpha1.VirtualMachineStatus{
			Phase:      v1alpha1.VirtualMachineScheduled,
			Conditions: []metav1.Condition{{Type: v1alpha1.VirtualMachineConditionScheduled, Status: metav1.ConditionTrue, Reason: "Bound"}},
		},
	}
	obs := &observation{
		Now: now, NodeName: "hv1", Domain: dom(hypervisor.StateRunning, ""), ShouldRun: true, Started: true,
		ObservedActionID: 3, IPs: map[string]string{"default": "10.0.2.15"}, MACs: map[string]string{"default": "52:54:00:01:02:03"},
	}
	st := computeStatus(vm, obs)
	if st.Phase != v1alpha1.VirtualMachineRunning || st.NodeName != "hv1" || st.ObservedGeneration != 4 || st.ObservedPowerActionID != 3 {
		t.Errorf("status = %+v", st)
	}
	if st.StartedAt == nil || !st.StartedAt.Equal(&now) {
		t.Errorf("startedAt = %v, want %v", st.StartedAt, now)
	}
	want := map[string]metav1.ConditionStatus{
		v1alpha1.VirtualMachineConditionScheduled:   metav1.ConditionTrue,
		v1alpha1.VirtualMachineConditionProvisioned: metav1.ConditionTrue,
		v1alpha1.VirtualMachineConditionReady:       metav1.ConditionTrue,
	}
	for typ, s := range want {
		found := false
		for _, c := range st.Conditions {
			if c.Type == typ {
				found = true
				if c.Status != s {
					t.Errorf("condition %s = %s, want %s", typ, c.Status, s)
				}
				if typ != v1alpha1.VirtualMachineConditionScheduled && c.ObservedGeneration != 4 {
					t.Errorf("condition %s observedGeneration = %d, want 4", typ, c.ObservedGeneration)
				}
			}
		}
		if !found {
			t.Errorf("condition %s missing", typ)
		}
	}
	if len(st.Disks) != 1 || st.Disks[0].Phase != v1alpha1.DiskReady {
		t.Errorf("disks = %+v", st.Disks)
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].IPAddress != "10.0.2.15" || st.Interfaces[0].MACAddress == "" {
		t.Errorf("interfaces = %+v", st.Interfaces)
	}

	// Recomputing from the written status changes nothing: no write churn.
	vm.Status = st
	obs.Started = false
	obs.Now = metav1.NewTime(now.Add(time.Minute))
	again := computeStatus(vm, obs)
	if again.StartedAt == nil || !again.StartedAt.Equal(&now) {
		t.Errorf("startedAt moved without a start: %v", again.StartedAt)
	}
	for i := range again.Conditions {
		if !again.Conditions[i].LastTransitionTime.Equal(&st.Conditions[i].LastTransitionTime) {
			t.Errorf("condition %s transition time moved without a transition", again.Conditions[i].Type)
		}
	}

	// Stopped: no addresses, Ready False with the reason.
	obs.Domain = dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown)
	obs.ShouldRun = false
	obs.StopReason = StopReasonGuestShutdown
	stopped := computeStatus(vm, obs)
	if stopped.Phase != v1alpha1.VirtualMachineStopped || stopped.Interfaces[0].IPAddress != "" || stopped.StopReason != StopReasonGuestShutdown {
		t.Errorf("stopped status = %+v", stopped)
	}
	for _, c := range stopped.Conditions {
		if c.Type == v1alpha1.VirtualMachineConditionReady && (c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, StopReasonGuestShutdown)) {
			t.Errorf("Ready condition when stopped = %+v", c)
		}
	}
}

func TestScanIP(t *testing.T) {
	tests := []struct {
		console, want string
	}{
		{"", ""},
		{"VESSEL-GUEST READY 6.1\r\nVESSEL-IP 10.0.2.15\r\n", "10.0.2.15"},
		{"\x1b[6nVESSEL-IP 10.0.2.16\n", "10.0.2.16"},
		{"VESSEL-IP 10.0.2.15\nVESSEL-IP 192.168.1.7\n", "192.168.1.7"},
		{"VESSEL-IP unknown\n", ""},
		{"VESSEL-IP 2001:DB8::1\n", "2001:db8::1"},
		{"VESSEL-NET dhcp-failed eth0\n", ""},
	}
	for _, tt := range tests {
		if got := scanIP(strings.NewReader(tt.console)); got != tt.want {
			t.Errorf("scanIP(%q) = %q, want %q", tt.console, got, tt.want)
		}
	}
}

func TestMACFor(t *testing.T) {
	a := macFor("uid-1", "default", "")
	if a != macFor("uid-1", "default", "") {
		t.Errorf("MAC not stable")
	}
	if a == macFor("uid-2", "default", "") || a == macFor("uid-1", "lan", "") {
		t.Errorf("MACs collide")
	}
	if !strings.HasPrefix(a, "52:54:00:") || len(a) != 17 {
		t.Errorf("MAC %q is not a QEMU MAC", a)
	}
	if got := macFor("uid-1", "default", "52:54:00:aa:bb:cc"); got != "52:54:00:aa:bb:cc" {
		t.Errorf("spec MAC not used: %s", got)
	}
}

func TestMachineSpecHash(t *testing.T) {
	base := v1alpha1.VirtualMachineSpec{CPUs: 1, RunStrategy: v1alpha1.RunStrategyAlways}
	h := machineSpecHash(&base)
	power := base
	power.RunStrategy, power.Paused, power.NodeName = v1alpha1.RunStrategyHalted, true, "hv1"
	power.PowerAction = action(v1alpha1.PowerActionStop, 3)
	if machineSpecHash(&power) != h {
		t.Errorf("power state or placement changed the machine hash")
	}
	hw := base
	hw.CPUs = 2
	if machineSpecHash(&hw) == h {
		t.Errorf("a CPU change did not change the machine hash")
	}
	disks := base
	disks.Disks = []v1alpha1.Disk{{Name: "data"}}
	if machineSpecHash(&disks) == h {
		t.Errorf("a new disk did not change the machine hash")
	}
}
