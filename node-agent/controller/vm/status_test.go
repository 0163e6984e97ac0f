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

package vm

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

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
		{"guest powered off", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), false, runstrategy.StopReasonGuestShutdown},
		{"QEMU killed", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonCrashed), false, runstrategy.StopReasonCrashed},
		{"destroyed behind our back", running, "", dom(hypervisor.StateShutoff, hypervisor.ReasonDestroyed), false, runstrategy.StopReasonCrashed},
		{"we stopped it (ACPI)", stopping, "", dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), true, runstrategy.StopReasonRequested},
		{"we forced it off", stopping, "", dom(hypervisor.StateShutoff, hypervisor.ReasonDestroyed), true, runstrategy.StopReasonRequested},
		{"already noticed", v1alpha1.VirtualMachineStopped, runstrategy.StopReasonCrashed, dom(hypervisor.StateShutoff, hypervisor.ReasonShutdown), false, runstrategy.StopReasonCrashed},
		{"defined, never started", v1alpha1.VirtualMachineStarting, "", dom(hypervisor.StateShutoff, ""), false, ""},
		{"kept while running again", running, runstrategy.StopReasonCrashed, dom(hypervisor.StateRunning, ""), false, runstrategy.StopReasonCrashed},
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
		obs  statusInput
		want v1alpha1.VirtualMachinePhase
	}{
		{"bound, nothing done", statusInput{}, v1alpha1.VirtualMachineScheduled},
		{"provisioning", statusInput{Prov: provState{InProgress: true}}, v1alpha1.VirtualMachineProvisioning},
		{"provisioning failed", statusInput{Prov: provState{Reason: "ImageChecksumMismatch"}}, v1alpha1.VirtualMachineFailed},
		{"foreign domain holds the UUID", statusInput{Conflict: "x"}, v1alpha1.VirtualMachineFailed},
		{"defined, to be started", statusInput{Domain: dom(hypervisor.StateShutoff, ""), ShouldRun: true}, v1alpha1.VirtualMachineStarting},
		{"defined, halted", statusInput{Domain: dom(hypervisor.StateShutoff, "")}, v1alpha1.VirtualMachineStopped},
		{"running", statusInput{Domain: dom(hypervisor.StateRunning, ""), ShouldRun: true}, v1alpha1.VirtualMachineRunning},
		{"running, being stopped", statusInput{Domain: dom(hypervisor.StateRunning, ""), Stopping: true}, v1alpha1.VirtualMachineStopping},
		{"guest shutting down", statusInput{Domain: dom(hypervisor.StateShutdown, "")}, v1alpha1.VirtualMachineStopping},
		{"paused", statusInput{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonUser), ShouldRun: true}, v1alpha1.VirtualMachinePaused},
		{"paused while starting", statusInput{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonStartingUp), ShouldRun: true}, v1alpha1.VirtualMachineStarting},
		{"started paused on purpose", statusInput{Domain: dom(hypervisor.StatePaused, hypervisor.ReasonStartingUp), ShouldRun: true, WantPaused: true}, v1alpha1.VirtualMachinePaused},
		{"crashed", statusInput{Domain: dom(hypervisor.StateCrashed, "")}, v1alpha1.VirtualMachineFailed},
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
	obs := &statusInput{
		Now: now, NodeName: "hv1", Domain: dom(hypervisor.StateRunning, ""), ShouldRun: true, Started: true,
		ObservedActionID: 3, IPs: map[string][]string{"default": {"10.200.0.2"}}, MACs: map[string]string{"default": "52:54:00:01:02:03"},
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
	if len(st.Interfaces) != 1 || st.Interfaces[0].IPAddress != "10.200.0.2" || st.Interfaces[0].MACAddress == "" ||
		len(st.Interfaces[0].IPAddresses) != 1 || st.Interfaces[0].IPAddresses[0] != (v1alpha1.IPAddress{Address: "10.200.0.2", Source: v1alpha1.IPAddressSourceDHCP}) {
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
	obs.StopReason = runstrategy.StopReasonGuestShutdown
	stopped := computeStatus(vm, obs)
	if stopped.Phase != v1alpha1.VirtualMachineStopped || stopped.Interfaces[0].IPAddress != "" || stopped.Interfaces[0].IPAddresses != nil || stopped.StopReason != runstrategy.StopReasonGuestShutdown {
		t.Errorf("stopped status = %+v", stopped)
	}
	for _, c := range stopped.Conditions {
		if c.Type == v1alpha1.VirtualMachineConditionReady && (c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, runstrategy.StopReasonGuestShutdown)) {
			t.Errorf("Ready condition when stopped = %+v", c)
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
	power.PowerAction = powerAction(v1alpha1.PowerActionStop, 3)
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
