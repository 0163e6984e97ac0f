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

// Package runstrategy is the whole run-strategy table: whether a VM's guest
// should run, given its spec, the agent's own status fields and whether QEMU
// runs. The VM controller decides power with it, and a restore decides
// whether the reverted guest runs.
package runstrategy

import (
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
)

// Why a guest last stopped (status.stopReason).
const (
	StopReasonRequested     = "Requested"
	StopReasonGuestShutdown = "GuestShutdown"
	StopReasonCrashed       = "Crashed"
)

// Input is what decides whether a guest should run.
type Input struct {
	Strategy v1alpha1.RunStrategy
	Action   *v1alpha1.PowerAction
	// ObservedActionID is status.observedPowerActionID.
	ObservedActionID int64
	// StopReason is status.stopReason, already updated for a stop the
	// agent just noticed.
	StopReason string
	// EverStarted is true once the guest was started (status.startedAt).
	EverStarted bool
	// Active is true while QEMU runs the domain.
	Active bool
}

// PendingAction is the power action not yet carried out, or nil.
func PendingAction(action *v1alpha1.PowerAction, observed int64) *v1alpha1.PowerAction {
	if action != nil && action.ID > observed {
		return action
	}
	return nil
}

// lastActionType is the type of the last action, carried out or not.
func lastActionType(action *v1alpha1.PowerAction) v1alpha1.PowerActionType {
	if action == nil {
		return ""
	}
	return action.Type
}

// ShouldRun says whether the guest should be running now. It is a pure
// function of the spec, the agent's recorded status and the domain's state,
// so a restarted agent reaches the same answer.
func ShouldRun(in Input) bool {
	if in.Strategy == v1alpha1.RunStrategyHalted {
		return false
	}
	if in.Strategy == v1alpha1.RunStrategyAlways {
		// A guest that stops for any reason is started again.
		return true
	}
	last := lastActionType(in.Action)
	if p := PendingAction(in.Action, in.ObservedActionID); p != nil && p.Type != v1alpha1.PowerActionStop {
		return true
	}
	if last == v1alpha1.PowerActionStop {
		return false
	}
	switch in.Strategy {
	case v1alpha1.RunStrategyManual:
		// Runs only after a start action and is never started again on
		// its own: once the guest stops, it stays stopped.
		return in.Active && (last == v1alpha1.PowerActionStart || last == v1alpha1.PowerActionRestart)
	case v1alpha1.RunStrategyRerunOnFailure:
		// A clean guest shutdown is final; a crash is not.
		return in.Active || in.StopReason != StopReasonGuestShutdown
	case v1alpha1.RunStrategyOnce:
		// One run per start: the first one, or the one a start action
		// asked for (pending above); after it stops, it stays stopped.
		return in.Active || !in.EverStarted
	}
	return false
}

// StopGrace is how long a stop waits for the guest after the ACPI request:
// the pending stop or restart action's grace period, else the spec's.
func StopGrace(spec *v1alpha1.VirtualMachineSpec, action *v1alpha1.PowerAction) time.Duration {
	if action != nil && action.GracePeriodSeconds != nil &&
		(action.Type == v1alpha1.PowerActionStop || action.Type == v1alpha1.PowerActionRestart) {
		return time.Duration(max(*action.GracePeriodSeconds, 0)) * time.Second
	}
	if spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(max(*spec.TerminationGracePeriodSeconds, 0)) * time.Second
	}
	return v1alpha1.DefaultTerminationGracePeriodSeconds * time.Second
}
