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
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

func powerAction(t v1alpha1.PowerActionType, id int64) *v1alpha1.PowerAction {
	return &v1alpha1.PowerAction{Type: t, ID: id}
}

func softRestart(id int64) *v1alpha1.PowerAction {
	return &v1alpha1.PowerAction{Type: v1alpha1.PowerActionRestart, ID: id, Soft: true}
}

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const testACPI = 3 * time.Second

// testVM is a bound VM (grace period 20s) in the last status phase.
func testVM(strategy v1alpha1.RunStrategy, phase v1alpha1.VirtualMachinePhase) *v1alpha1.VirtualMachine {
	grace := int64(20)
	return &v1alpha1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm", UID: "u1", Generation: 2, Finalizers: []string{v1alpha1.FinalizerNodeCleanup}},
		Spec:       v1alpha1.VirtualMachineSpec{RunStrategy: strategy, CPUs: 1, NodeName: "hv1", TerminationGracePeriodSeconds: &grace},
		Status:     v1alpha1.VirtualMachineStatus{Phase: phase},
	}
}

// obsOf observes vm with dom (its SpecHash, when empty, the VM's).
func obsOf(vm *v1alpha1.VirtualMachine, dom *hypervisor.Domain) *observation {
	want := machineSpecHash(&vm.Spec)
	if dom != nil && dom.SpecHash == "" {
		dom.SpecHash = want
	}
	return &observation{Now: testNow, VM: vm, Domain: dom, WantHash: want, ACPIInterval: testACPI}
}

func TestDecide(t *testing.T) {
	const (
		always = v1alpha1.RunStrategyAlways
		rerun  = v1alpha1.RunStrategyRerunOnFailure
		manual = v1alpha1.RunStrategyManual
		halted = v1alpha1.RunStrategyHalted
		once   = v1alpha1.RunStrategyOnce

		running  = v1alpha1.VirtualMachineRunning
		stopping = v1alpha1.VirtualMachineStopping
		stopped  = v1alpha1.VirtualMachineStopped
		sched    = v1alpha1.VirtualMachineScheduled
		starting = v1alpha1.VirtualMachineStarting
	)
	on := func() *hypervisor.Domain { return &hypervisor.Domain{State: hypervisor.StateRunning} }
	off := func(r hypervisor.Reason) *hypervisor.Domain {
		return &hypervisor.Domain{State: hypervisor.StateShutoff, Reason: r}
	}
	paused := func(r hypervisor.Reason) *hypervisor.Domain {
		return &hypervisor.Domain{State: hypervisor.StatePaused, Reason: r}
	}
	cfg := &hypervisor.DomainConfig{Owner: hypervisor.Owner{UID: "u1"}}
	provisioned := func(o *observation) {
		o.Prov = &provObservation{State: provState{Done: true}, Generation: 2, Hash: o.WantHash, Config: cfg}
	}
	stopAt := func(deadline time.Duration, lastACPI time.Duration, id int64) *stopOp {
		return &stopOp{deadline: testNow.Add(deadline), lastACPI: testNow.Add(lastACPI), actionID: id}
	}
	deleted := func(vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine {
		vm.DeletionTimestamp = &metav1.Time{Time: testNow.Add(-time.Second)}
		return vm
	}
	withAction := func(vm *v1alpha1.VirtualMachine, a *v1alpha1.PowerAction, observed int64) *v1alpha1.VirtualMachine {
		vm.Spec.PowerAction, vm.Status.ObservedPowerActionID = a, observed
		return vm
	}
	withPaused := func(vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine { vm.Spec.Paused = true; return vm }
	grace0 := int64(0)
	grace60 := int64(60)

	tests := []struct {
		name string
		obs  *observation
		edit func(*observation)
		want decision
	}{
		// Provisioning and definition.
		{name: "new VM: provision its disks", obs: obsOf(testVM(always, sched), nil),
			want: decision{Action: actProvision, Report: true, ShouldRun: true}},
		{name: "provisioning runs: wait for it", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{InProgress: true}, Generation: 2, Hash: o.WantHash}
			},
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "provisioned: define", obs: obsOf(testVM(always, sched), nil), edit: provisioned,
			want: decision{Action: actDefine, Report: true, ShouldRun: true, Config: cfg}},
		{name: "permanent provisioning failure waits for a spec change", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{Reason: "ImageChecksumMismatch"}, Generation: 2, Hash: o.WantHash, Permanent: true, Finished: testNow.Add(-time.Hour)}
			},
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "transient provisioning failure: not retried too soon", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{Reason: "ImageDownloadFailed"}, Generation: 2, Hash: o.WantHash, Finished: testNow.Add(-5 * time.Second)}
			},
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "transient provisioning failure: retried after a while", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{Reason: "ImageDownloadFailed"}, Generation: 2, Hash: o.WantHash, Finished: testNow.Add(-retryProvisioningAfter)}
			},
			want: decision{Action: actProvision, Report: true, ShouldRun: true, DropProvisioning: true}},
		{name: "failed provisioning of an older generation is retried", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{Reason: "ImageChecksumMismatch"}, Generation: 1, Hash: o.WantHash, Permanent: true}
			},
			want: decision{Action: actProvision, Report: true, ShouldRun: true, DropProvisioning: true}},
		{name: "machine spec changed while provisioning: start over", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{InProgress: true}, Generation: 1, Hash: "older"}
			},
			want: decision{Action: actProvision, Report: true, ShouldRun: true, DropProvisioning: true}},
		{name: "a clone's VM waits for its clone to make the domain", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) { o.MadeByClone = true },
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "a clone's domain, once made, is run as any", obs: obsOf(testVM(always, sched), off(hypervisor.ReasonUnknown)),
			edit: func(o *observation) { o.MadeByClone = true },
			want: decision{Action: actStart, Report: true, ShouldRun: true}},
		{name: "a domain Vessel does not own holds the UUID: hands off", obs: obsOf(testVM(always, sched), nil),
			edit: func(o *observation) { o.Conflict = "foreign" },
			want: decision{Action: actNone, Report: true}},

		// Power.
		{name: "defined and off, Always: start", obs: obsOf(testVM(always, starting), off("")),
			want: decision{Action: actStart, Report: true, ShouldRun: true}},
		{name: "defined, Halted: stays off", obs: obsOf(testVM(halted, starting), off("")),
			want: decision{Action: actNone, Report: true}},
		{name: "start paused", obs: obsOf(withPaused(testVM(always, starting)), off("")),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StartPaused: true}},
		{name: "Manual without an action stays off", obs: obsOf(testVM(manual, starting), off("")),
			want: decision{Action: actNone, Report: true}},
		{name: "Manual start action: start", obs: obsOf(withAction(testVM(manual, stopped), powerAction(v1alpha1.PowerActionStart, 1), 0), off("")),
			want: decision{Action: actStart, Report: true, ShouldRun: true}},
		{name: "running as wanted: nothing", obs: obsOf(started(testVM(always, running)), on()),
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "Halted while running: graceful stop presses the power button", obs: obsOf(started(testVM(halted, running)), on()),
			want: decision{Action: actStop, Report: true, Stop: &stopOp{deadline: testNow.Add(20 * time.Second), actionID: 0},
				StopStep: stopStep{Grace: 20 * time.Second, ACPI: true}, Requeue: testACPI}},
		{name: "graceful stop: the power button is not pressed again too soon", obs: obsOf(started(testVM(halted, stopping)), on()),
			edit: func(o *observation) { o.Stop = stopAt(15*time.Second, -time.Second, 0) },
			want: decision{Action: actStop, Report: true, Stop: stopAt(15*time.Second, -time.Second, 0),
				StopStep: stopStep{Grace: 20 * time.Second}, Requeue: testACPI}},
		{name: "graceful stop: the power button is pressed again", obs: obsOf(started(testVM(halted, stopping)), on()),
			edit: func(o *observation) { o.Stop = stopAt(2*time.Second, -4*time.Second, 0) },
			want: decision{Action: actStop, Report: true, Stop: stopAt(2*time.Second, -4*time.Second, 0),
				StopStep: stopStep{Grace: 20 * time.Second, ACPI: true}, Requeue: 2 * time.Second}},
		{name: "grace period over: forced off", obs: obsOf(started(testVM(halted, stopping)), on()),
			edit: func(o *observation) { o.Stop = stopAt(-time.Millisecond, -time.Second, 0) },
			want: decision{Action: actStop, Report: true, Stop: stopAt(-time.Millisecond, -time.Second, 0),
				StopStep: stopStep{Grace: 20 * time.Second, Force: true}}},
		{name: "a paused guest is resumed to hear the power button", obs: obsOf(started(testVM(halted, v1alpha1.VirtualMachinePaused)), paused(hypervisor.ReasonUser)),
			want: decision{Action: actStop, Report: true, Stop: &stopOp{deadline: testNow.Add(20 * time.Second), actionID: 0},
				StopStep: stopStep{Grace: 20 * time.Second, Resume: true, ACPI: true}, Requeue: testACPI}},
		{name: "stop --force cuts a graceful stop short", obs: obsOf(started(withAction(testVM(manual, stopping), &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStop, ID: 2, GracePeriodSeconds: &grace0}, 1)), on()),
			edit: func(o *observation) { o.Stop = stopAt(25*time.Second, -time.Second, 0) },
			want: decision{Action: actStop, Report: true, Stop: stopAt(0, -time.Second, 2),
				StopStep: stopStep{Force: true}}},
		{name: "a later stop never lengthens the wait", obs: obsOf(started(withAction(testVM(manual, stopping), &v1alpha1.PowerAction{Type: v1alpha1.PowerActionStop, ID: 2, GracePeriodSeconds: &grace60}, 1)), on()),
			edit: func(o *observation) { o.Stop = stopAt(5*time.Second, -time.Second, 1) },
			want: decision{Action: actStop, Report: true, Stop: stopAt(5*time.Second, -time.Second, 2),
				StopStep: stopStep{Grace: 60 * time.Second}, Requeue: testACPI}},
		{name: "restart, guest running: the stop half", obs: obsOf(started(withAction(testVM(always, running), powerAction(v1alpha1.PowerActionRestart, 3), 2)), on()),
			want: decision{Action: actStop, Report: true, ShouldRun: true, Stop: &stopOp{deadline: testNow.Add(20 * time.Second), actionID: 3},
				StopStep: stopStep{Grace: 20 * time.Second, ACPI: true}, Requeue: testACPI}},
		{name: "restart, guest off: the start half", obs: obsOf(started(withAction(testVM(always, stopping), powerAction(v1alpha1.PowerActionRestart, 3), 2)), off(hypervisor.ReasonShutdown)),
			edit: func(o *observation) { o.Stop = stopAt(10*time.Second, -time.Second, 3) },
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonRequested, RestartDone: 3}},
		{name: "restart carried out: nothing", obs: obsOf(started(withAction(testVM(always, running), powerAction(v1alpha1.PowerActionRestart, 3), 2)), on()),
			edit: func(o *observation) { o.RestartDone = 3 },
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "soft restart: reboot through the guest agent, no stop", obs: obsOf(started(withAction(testVM(always, running), softRestart(3), 2)), on()),
			want: decision{Action: actSoftReboot, Report: true, ShouldRun: true, RestartDone: 3}},
		{name: "soft restart carried out: nothing", obs: obsOf(started(withAction(testVM(always, running), softRestart(3), 2)), on()),
			edit: func(o *observation) { o.RestartDone = 3 },
			want: decision{Action: actNone, Report: true, ShouldRun: true}},
		{name: "soft restart of a paused guest: resume first", obs: obsOf(started(withAction(testVM(always, v1alpha1.VirtualMachinePaused), softRestart(3), 2)), paused(hypervisor.ReasonUser)),
			want: decision{Action: actResume, Report: true, ShouldRun: true}},
		{name: "soft restart while a stop runs: the stop goes on", obs: obsOf(started(withAction(testVM(always, running), softRestart(3), 2)), on()),
			edit: func(o *observation) { o.Stop = stopAt(10*time.Second, -time.Second, 3) },
			want: decision{Action: actStop, Report: true, ShouldRun: true, Stop: stopAt(10*time.Second, -time.Second, 3),
				StopStep: stopStep{Grace: 20 * time.Second}, Requeue: testACPI}},
		{name: "soft restart of a halted VM: stop wins", obs: obsOf(started(withAction(testVM(halted, running), softRestart(3), 2)), on()),
			want: decision{Action: actStop, Report: true, Stop: &stopOp{deadline: testNow.Add(20 * time.Second), actionID: 3},
				StopStep: stopStep{Grace: 20 * time.Second, ACPI: true}, Requeue: testACPI}},
		{name: "pause", obs: obsOf(withPaused(started(testVM(always, running))), on()),
			want: decision{Action: actPause, Report: true, ShouldRun: true}},
		{name: "unpause", obs: obsOf(started(testVM(always, v1alpha1.VirtualMachinePaused)), paused(hypervisor.ReasonUser)),
			want: decision{Action: actResume, Report: true, ShouldRun: true}},

		// Stops nobody asked for.
		{name: "RerunOnFailure guest powered itself off: stays off", obs: obsOf(started(testVM(rerun, running)), off(hypervisor.ReasonShutdown)),
			want: decision{Action: actNone, Report: true, StopReason: runstrategy.StopReasonGuestShutdown}},
		{name: "RerunOnFailure guest crashed: started again", obs: obsOf(started(testVM(rerun, running)), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 1}},
		{name: "Always guest powered itself off: started again", obs: obsOf(started(testVM(always, running)), off(hypervisor.ReasonShutdown)),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonGuestShutdown, RestartCount: 1}},

		// Crash loop backoff.
		{name: "second stop soon after a restart: wait 10s", obs: obsOf(restarted(testVM(always, running), 1, 5*time.Second), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actNone, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 1, NextStartTime: at(10 * time.Second), Requeue: 10 * time.Second}},
		{name: "fourth stop: wait 40s", obs: obsOf(restarted(testVM(always, running), 3, 5*time.Second), off(hypervisor.ReasonShutdown)),
			want: decision{Action: actNone, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonGuestShutdown, RestartCount: 3, NextStartTime: at(40 * time.Second), Requeue: 40 * time.Second}},
		{name: "many stops: the wait is capped at 5m", obs: obsOf(restarted(testVM(always, running), 40, 5*time.Second), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actNone, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 40, NextStartTime: at(5 * time.Minute), Requeue: 5 * time.Minute}},
		{name: "backing off: keep waiting for the time in status", obs: obsOf(backingOff(restarted(testVM(always, starting), 2, 30*time.Second), 7*time.Second), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actNone, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 2, NextStartTime: at(7 * time.Second), Requeue: 7 * time.Second}},
		{name: "backoff over: started again, counted", obs: obsOf(backingOff(restarted(testVM(always, starting), 2, 30*time.Second), 0), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 3}},
		{name: "backing off: kubectl vm start starts it now", obs: obsOf(backingOff(restarted(withAction(testVM(always, starting), powerAction(v1alpha1.PowerActionStart, 4), 3), 2, 30*time.Second), 7*time.Second), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed}},
		{name: "a guest that ran for ten minutes starts again at once", obs: obsOf(restarted(testVM(always, running), 6, 10*time.Minute), off(hypervisor.ReasonCrashed)),
			want: decision{Action: actStart, Report: true, ShouldRun: true, StopReason: runstrategy.StopReasonCrashed, RestartCount: 1}},
		{name: "Once guest after its run: stays off", obs: obsOf(started(testVM(once, running)), off(hypervisor.ReasonShutdown)),
			want: decision{Action: actNone, Report: true, StopReason: runstrategy.StopReasonGuestShutdown}},
		{name: "a stop the agent was carrying out counts as requested", obs: obsOf(started(testVM(halted, stopping)), off(hypervisor.ReasonShutdown)),
			edit: func(o *observation) { o.Stop = stopAt(10*time.Second, -time.Second, 0) },
			want: decision{Action: actNone, Report: true, StopReason: runstrategy.StopReasonRequested}},

		// Spec changes.
		{name: "spec changed while running: RestartRequired, guest left alone", obs: obsOf(started(testVM(always, running)), &hypervisor.Domain{State: hypervisor.StateRunning, SpecHash: "older"}),
			want: decision{Action: actNone, Report: true, ShouldRun: true, SpecChanged: true}},
		{name: "spec changed while off: provision the new definition, do not start the old", obs: obsOf(testVM(always, stopped), &hypervisor.Domain{State: hypervisor.StateShutoff, SpecHash: "older"}),
			want: decision{Action: actProvision, Report: true, ShouldRun: true, SpecChanged: true}},
		{name: "spec changed while off, provisioned: redefine", obs: obsOf(testVM(always, stopped), &hypervisor.Domain{State: hypervisor.StateShutoff, SpecHash: "older"}),
			edit: provisioned,
			want: decision{Action: actDefine, Report: true, ShouldRun: true, SpecChanged: true, Config: cfg}},
		{name: "a domain without a spec hash (older agent) is not redefined", obs: obsOf(started(testVM(always, running)), &hypervisor.Domain{State: hypervisor.StateRunning, SpecHash: ""}),
			edit: func(o *observation) { o.Domain.SpecHash = "" },
			want: decision{Action: actNone, Report: true, ShouldRun: true}},

		// Deletion.
		{name: "deleted while running: graceful stop with the spec's grace", obs: obsOf(deleted(started(testVM(always, running))), on()),
			want: decision{Action: actStop, Report: true, Stop: &stopOp{deadline: testNow.Add(20 * time.Second), actionID: 0},
				StopStep: stopStep{Grace: 20 * time.Second, ACPI: true}, Requeue: testACPI}},
		{name: "deleted while provisioning: cancel and wait for it", obs: obsOf(deleted(testVM(always, v1alpha1.VirtualMachineProvisioning)), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{InProgress: true}, Generation: 2, Hash: o.WantHash}
			},
			want: decision{Action: actAwaitProvisioning, CancelProvisioning: true, Requeue: provisioningStopWait}},
		{name: "deleted after provisioning: forget it, finalize", obs: obsOf(deleted(testVM(always, v1alpha1.VirtualMachineFailed)), nil),
			edit: func(o *observation) {
				o.Prov = &provObservation{State: provState{Reason: "ImageChecksumMismatch"}, Generation: 2, Hash: o.WantHash, Permanent: true}
			},
			want: decision{Action: actFinalize, DropProvisioning: true}},
		{name: "deleted and off: finalize", obs: obsOf(deleted(testVM(always, stopped)), off(hypervisor.ReasonShutdown)),
			want: decision{Action: actFinalize}},
		{name: "deleted, stop finished: finalize", obs: obsOf(deleted(started(testVM(always, stopping))), off(hypervisor.ReasonShutdown)),
			edit: func(o *observation) { o.Stop = stopAt(10*time.Second, -time.Second, 0) },
			want: decision{Action: actFinalize, StopReason: runstrategy.StopReasonRequested}},
		{name: "deleted, finalizer already released: nothing", obs: obsOf(deleted(testVM(always, stopped)), nil),
			edit: func(o *observation) { o.VM.Finalizers = nil },
			want: decision{Action: actNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.edit != nil {
				tt.edit(tt.obs)
			}
			in := tt.obs.VM.DeepCopy()
			got := decide(tt.obs)
			got.Pending = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decide =\n  %+v (stop %+v)\nwant\n  %+v (stop %+v)", got, got.Stop, tt.want, tt.want.Stop)
			}
			if !reflect.DeepEqual(in, tt.obs.VM) {
				t.Errorf("decide changed the observed VM")
			}
		})
	}
}

func TestDecideIsPure(t *testing.T) {
	o := obsOf(started(testVM(v1alpha1.RunStrategyHalted, v1alpha1.VirtualMachineStopping)), &hypervisor.Domain{State: hypervisor.StateRunning})
	o.Stop = &stopOp{deadline: testNow.Add(10 * time.Second), lastACPI: testNow.Add(-5 * time.Second)}
	before := *o.Stop
	first, second := decide(o), decide(o)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("two decisions over one observation differ: %+v, %+v", first, second)
	}
	if *o.Stop != before {
		t.Errorf("decide changed the observed stop: %+v -> %+v", before, *o.Stop)
	}
}

// restarted says the agent started vm again count times after it stopped
// on its own, the last time ago.
func restarted(vm *v1alpha1.VirtualMachine, count int32, ago time.Duration) *v1alpha1.VirtualMachine {
	vm.Status.StartedAt = &metav1.Time{Time: testNow.Add(-ago)}
	vm.Status.RestartCount = count
	return vm
}

// backingOff says the agent waits until in from now to start vm again.
func backingOff(vm *v1alpha1.VirtualMachine, in time.Duration) *v1alpha1.VirtualMachine {
	vm.Status.StopReason = runstrategy.StopReasonCrashed
	vm.Status.NextStartTime = at(in)
	return vm
}

func at(in time.Duration) *metav1.Time { return &metav1.Time{Time: testNow.Add(in)} }

func started(vm *v1alpha1.VirtualMachine) *v1alpha1.VirtualMachine {
	vm.Status.StartedAt = &metav1.Time{Time: testNow.Add(-time.Hour)}
	return vm
}

func TestObservedAction(t *testing.T) {
	start, stop, restart := powerAction(v1alpha1.PowerActionStart, 5), powerAction(v1alpha1.PowerActionStop, 5), powerAction(v1alpha1.PowerActionRestart, 5)
	tests := []struct {
		name        string
		pending     *v1alpha1.PowerAction
		shouldRun   bool
		active      bool
		restartDone int64
		want        int64
	}{
		{"nothing pending", nil, true, true, 0, 4},
		{"start carried out", start, true, true, 0, 5},
		{"start not yet", start, true, false, 0, 4},
		{"start that cannot run (foreign domain) counts", start, false, false, 0, 5},
		{"stop carried out", stop, false, false, 0, 5},
		{"stop not yet", stop, false, true, 0, 4},
		{"restart: stop half only", restart, true, false, 0, 4},
		{"restart: old guest still running", restart, true, true, 0, 4},
		{"restart carried out", restart, true, true, 5, 5},
	}
	for _, tt := range tests {
		if got := observedAction(tt.pending, 4, tt.shouldRun, tt.active, tt.restartDone); got != tt.want {
			t.Errorf("%s: observedAction = %d, want %d", tt.name, got, tt.want)
		}
	}
}
