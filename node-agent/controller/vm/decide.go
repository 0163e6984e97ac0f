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
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// action is the one thing a pass does to a VM's domain and files.
type action string

const (
	// actNone leaves the domain as it is (it matches, or the pass waits
	// for provisioning, or the VM cannot have a domain).
	actNone action = "None"
	// actProvision starts preparing the VM's disks for a (re)definition.
	actProvision action = "Provision"
	// actDefine defines the domain from the provisioned config.
	actDefine action = "Define"
	// actStart boots the guest.
	actStart action = "Start"
	// actStop takes one step of a graceful stop (decision.Stop).
	actStop action = "Stop"
	// actSoftReboot reboots the guest's operating system through its QEMU
	// guest agent (a soft restart): QEMU keeps running.
	actSoftReboot action = "SoftReboot"
	// actPause suspends the guest's CPUs; actResume continues them.
	actPause  action = "Pause"
	actResume action = "Resume"
	// actAwaitProvisioning waits for a cancelled provisioning run of a
	// VM being deleted to stop writing into the VM directory.
	actAwaitProvisioning action = "AwaitProvisioning"
	// actFinalize undefines the domain of a deleted VM, removes its files
	// and releases the VM's finalizer.
	actFinalize action = "Finalize"
)

// decision is what a pass does, decided from its observation alone.
type decision struct {
	Action action
	// Report says to recompute and write status after acting.
	Report bool
	// ShouldRun is the desired power state.
	ShouldRun bool
	// Pending is the power action not carried out yet (nil when none, or
	// when the VM is being deleted).
	Pending *v1alpha1.PowerAction
	// StopReason is status.stopReason given what was observed: a stop the
	// agent did not ask for is noticed before deciding, so RerunOnFailure
	// and Once see why the guest stopped.
	StopReason string
	// SpecChanged says the domain was defined from an older spec.
	SpecChanged bool
	// DropProvisioning cancels and forgets the provisioning run (it is
	// stale, or done and the VM is being deleted); CancelProvisioning only
	// cancels it.
	DropProvisioning   bool
	CancelProvisioning bool
	// Stop is the graceful stop after this pass, nil when none runs.
	Stop *stopOp
	// StopStep is what actStop does now.
	StopStep stopStep
	// Config defines the domain (actDefine).
	Config *hypervisor.DomainConfig
	// StartPaused starts the guest with its CPUs suspended (actStart).
	StartPaused bool
	// RestartDone is the restart action this start (or soft reboot)
	// completes, 0 if none.
	RestartDone int64
	// RestartCount and NextStartTime are status.restartCount and
	// status.nextStartTime after this pass: a guest that keeps stopping
	// on its own is started again with a growing delay (crashBackoff).
	RestartCount  int32
	NextStartTime *metav1.Time
	// Requeue is how soon to look again, 0 for no particular time.
	Requeue time.Duration
}

// stopStep is one step of a graceful stop.
type stopStep struct {
	// Force destroys the guest: the grace period is over.
	Force bool
	// Grace is the grace period, for messages.
	Grace time.Duration
	// Resume continues a paused guest first: suspended CPUs cannot answer
	// ACPI.
	Resume bool
	// ACPI presses the power button (again).
	ACPI bool
}

// provisioningStopWait is how soon a deleted VM whose provisioning was
// cancelled looks again.
const provisioningStopWait = 200 * time.Millisecond

// decide is the VM controller's whole policy: a pure function of one
// observation (no I/O, no clock: time comes in o.Now).
func decide(o *observation) decision {
	vm, dom := o.VM, o.Domain
	deleting := vm.DeletionTimestamp != nil
	active := dom != nil && dom.State.Active()
	in := runstrategy.Input{
		Strategy:         vm.Spec.RunStrategy,
		Action:           vm.Spec.PowerAction,
		ObservedActionID: vm.Status.ObservedPowerActionID,
		StopReason:       vm.Status.StopReason,
		EverStarted:      vm.Status.StartedAt != nil,
		Active:           true,
	}
	// Would the guest run if it did? If not, a stop was asked for.
	wanted := !deleting && runstrategy.ShouldRun(in)
	d := decision{Action: actNone, Stop: o.Stop, RestartCount: vm.Status.RestartCount, NextStartTime: vm.Status.NextStartTime}
	d.StopReason = noticeStop(vm.Status.Phase, vm.Status.StopReason, dom, o.Stop != nil || !wanted)
	if !active {
		d.Stop = nil
	}
	if deleting {
		return decideDeletion(o, d, active)
	}

	prov := o.Prov
	if prov != nil && prov.stale(vm.Generation, o.WantHash, o.Now) {
		d.DropProvisioning = true
		prov = nil
	}
	in.StopReason, in.Active = d.StopReason, active
	d.Report = true
	d.Pending = runstrategy.PendingAction(vm.Spec.PowerAction, vm.Status.ObservedPowerActionID)
	d.ShouldRun = o.Conflict == "" && runstrategy.ShouldRun(in)
	// A spec edited since the domain was defined is applied while the
	// guest is off (the next start boots the new definition).
	d.SpecChanged = dom != nil && dom.SpecHash != "" && dom.SpecHash != o.WantHash
	needDefinition := o.Conflict == "" && (dom == nil || (d.SpecChanged && !active))
	restarting := d.ShouldRun && d.Pending != nil && d.Pending.Type == v1alpha1.PowerActionRestart && o.RestartDone != d.Pending.ID

	switch {
	case o.Conflict != "":
		// Status says why; nothing is touched.
	case needDefinition && o.MadeByClone && dom == nil:
		// The clone controller makes the domain from the source's clone
		// image; provisioning from the spec would boot a new machine.
	case needDefinition && prov != nil && prov.State.Reason != "":
		// Provisioning failed: status says why; a spec change or the
		// retry time makes the run stale.
	case needDefinition && prov == nil:
		d.Action = actProvision
	case needDefinition && prov.Config == nil:
		// Provisioning runs; it enqueues the VM when done.
	case needDefinition:
		d.Action, d.Config = actDefine, prov.Config
	case active && restarting && d.Pending.Soft && o.Stop == nil:
		if dom.State == hypervisor.StatePaused {
			d.Action = actResume // a paused guest's agent cannot answer
			break
		}
		d.Action, d.RestartDone = actSoftReboot, d.Pending.ID
	case active && (!d.ShouldRun || restarting):
		var a *v1alpha1.PowerAction
		if p := d.Pending; p != nil && (p.Type == v1alpha1.PowerActionStop || p.Type == v1alpha1.PowerActionRestart) {
			a = p
		}
		d.Action = actStop
		d.Stop, d.StopStep, d.Requeue = planStop(o, a)
	case dom != nil && !active && d.ShouldRun:
		if wait := crashBackoff(o, &d); wait > 0 {
			d.Requeue = wait
			break
		}
		d.Action, d.StartPaused = actStart, vm.Spec.Paused
		if d.Pending != nil && d.Pending.Type == v1alpha1.PowerActionRestart {
			d.RestartDone = d.Pending.ID
		}
	case dom != nil && dom.State == hypervisor.StateRunning && vm.Spec.Paused && d.ShouldRun:
		d.Action = actPause
	case dom != nil && dom.State == hypervisor.StatePaused && !vm.Spec.Paused && d.ShouldRun:
		d.Action = actResume
	}
	return d
}

// crashBackoff decides whether a guest that should run but is off starts
// now, as the kubelet does for a pod's containers (v1alpha1.RestartBackoff):
// it sets d's restart count and next start time and returns how long to
// wait, 0 to start now. A guest that ran for RestartBackoffReset, or a
// start or restart the user asks for, starts the count again.
func crashBackoff(o *observation, d *decision) time.Duration {
	vm := o.VM
	userStart := d.Pending != nil && (d.Pending.Type == v1alpha1.PowerActionStart || d.Pending.Type == v1alpha1.PowerActionRestart)
	stoppedOnItsOwn := d.StopReason == runstrategy.StopReasonGuestShutdown || d.StopReason == runstrategy.StopReasonCrashed
	if userStart || !stoppedOnItsOwn || vm.Status.StartedAt == nil || d.SpecChanged {
		d.RestartCount, d.NextStartTime = 0, nil
		return 0
	}
	count := vm.Status.RestartCount
	if o.Now.Sub(vm.Status.StartedAt.Time) >= v1alpha1.RestartBackoffReset {
		count = 0
	}
	delay := v1alpha1.RestartBackoff(count)
	if delay == 0 {
		d.RestartCount, d.NextStartTime = count+1, nil
		return 0
	}
	next := d.NextStartTime
	if next == nil {
		t := metav1.NewTime(o.Now.Add(delay))
		next = &t
	}
	if wait := next.Sub(o.Now); wait > 0 {
		d.RestartCount, d.NextStartTime = count, next
		return wait
	}
	d.RestartCount, d.NextStartTime = count+1, nil
	return 0
}

// decideDeletion: a VM being deleted is stopped (with its grace period),
// then its domain and files go and its finalizer is released.
func decideDeletion(o *observation, d decision, active bool) decision {
	switch {
	case !slices.Contains(o.VM.Finalizers, v1alpha1.FinalizerNodeCleanup):
		return d // done already; the API deletes it
	case o.Prov != nil && o.Prov.State.InProgress:
		d.CancelProvisioning = true
		d.Action, d.Requeue = actAwaitProvisioning, provisioningStopWait
		return d
	case o.Prov != nil:
		d.DropProvisioning = true
	}
	if active {
		d.Action, d.Report = actStop, true
		d.Stop, d.StopStep, d.Requeue = planStop(o, nil)
		return d
	}
	d.Action = actFinalize
	return d
}

// planStop is the next step of a graceful stop: press the power button
// every ACPIInterval, force the guest off once the grace period (of the
// stop or restart action a, else the spec's) is over. It never waits: it
// says when to look again. A newer stop action (kubectl vm stop --force)
// may only shorten the wait.
func planStop(o *observation, a *v1alpha1.PowerAction) (*stopOp, stopStep, time.Duration) {
	grace := runstrategy.StopGrace(&o.VM.Spec, a)
	var actionID int64
	if a != nil {
		actionID = a.ID
	}
	var stop stopOp
	switch {
	case o.Stop == nil:
		stop = stopOp{deadline: o.Now.Add(grace), actionID: actionID}
	default:
		stop = *o.Stop
		if actionID != stop.actionID {
			if d := o.Now.Add(grace); d.Before(stop.deadline) {
				stop.deadline = d
			}
			stop.actionID = actionID
		}
	}
	step := stopStep{Grace: grace}
	if !o.Now.Before(stop.deadline) {
		step.Force = true
		return &stop, step, 0
	}
	step.Resume = o.Domain.State == hypervisor.StatePaused
	step.ACPI = o.Now.Sub(stop.lastACPI) >= o.ACPIInterval
	return &stop, step, min(o.ACPIInterval, max(stop.deadline.Sub(o.Now), time.Millisecond))
}

// observedAction is status.observedPowerActionID after a pass: an action
// counts as carried out once the domain is where it wanted (active is
// after the pass's action).
func observedAction(pending *v1alpha1.PowerAction, observed int64, shouldRun, active bool, restartDone int64) int64 {
	if pending == nil {
		return observed
	}
	switch pending.Type {
	case v1alpha1.PowerActionStart:
		if active || !shouldRun {
			return pending.ID
		}
	case v1alpha1.PowerActionStop:
		if !active {
			return pending.ID
		}
	case v1alpha1.PowerActionRestart:
		if restartDone == pending.ID && active {
			return pending.ID
		}
	}
	return observed
}
