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
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// ConditionRestartRequired is True while the running guest was defined from
// an older spec.
const ConditionRestartRequired = "RestartRequired"

// provState is where a VM's disks are in provisioning.
type provState struct {
	InProgress bool
	Done       bool
	// Reason and Message describe a failure (Reason empty: no failure).
	Reason  string
	Message string
	Disks   []v1alpha1.DiskStatus
}

// statusInput is everything the status is computed from besides the spec:
// what a pass observed, decided and did.
type statusInput struct {
	Now      metav1.Time
	NodeName string
	// Domain is the VM's domain, nil when none is defined.
	Domain *hypervisor.Domain
	// Conflict explains why the VM cannot have a domain (a foreign domain
	// holds its UUID).
	Conflict string
	Prov     provState
	// ShouldRun is the desired power state.
	ShouldRun bool
	// Stopping is true while the agent is shutting the guest down.
	Stopping bool
	// WantPaused is spec.paused.
	WantPaused bool
	// RestartRequired: the spec changed while the guest runs.
	RestartRequired bool
	// Started is true when this pass started the guest.
	Started          bool
	StopReason       string
	ObservedActionID int64
	// RestartCount and NextStartTime: the crash loop backoff (decide).
	RestartCount  int32
	NextStartTime *metav1.Time
	// AgentSupported says the hypervisor reaches guest agents, and Agent
	// is what the guest's agent said last (nil: nothing yet).
	AgentSupported bool
	Agent          *agentObservation
	// IPs are the DHCP leases of the interfaces, by name.
	IPs  map[string][]string
	MACs map[string]string
}

// activePhases are the phases in which the last status said QEMU ran.
// Starting is not one: it also means "defined, about to be started".
var activePhases = map[v1alpha1.VirtualMachinePhase]bool{
	v1alpha1.VirtualMachineRunning:  true,
	v1alpha1.VirtualMachinePaused:   true,
	v1alpha1.VirtualMachineStopping: true,
}

// noticeStop returns status.stopReason after observing dom shut off. A stop
// counts only when the last status said the guest ran; requested says the
// agent (or the user through it) asked for the stop.
func noticeStop(prev v1alpha1.VirtualMachinePhase, prevReason string, dom *hypervisor.Domain, requested bool) string {
	if dom == nil || dom.State.Active() || !activePhases[prev] {
		return prevReason
	}
	switch {
	case requested:
		return runstrategy.StopReasonRequested
	case dom.Reason == hypervisor.ReasonShutdown:
		return runstrategy.StopReasonGuestShutdown
	default:
		// Killed, crashed, or destroyed behind Vessel's back.
		return runstrategy.StopReasonCrashed
	}
}

// computePhase summarizes the VM for status.phase.
func computePhase(obs *statusInput) v1alpha1.VirtualMachinePhase {
	if obs.Conflict != "" || obs.Prov.Reason != "" {
		return v1alpha1.VirtualMachineFailed
	}
	dom := obs.Domain
	if dom == nil {
		if obs.Prov.InProgress || obs.Prov.Done {
			return v1alpha1.VirtualMachineProvisioning
		}
		return v1alpha1.VirtualMachineScheduled
	}
	switch dom.State {
	case hypervisor.StateRunning:
		if obs.Stopping {
			return v1alpha1.VirtualMachineStopping
		}
		return v1alpha1.VirtualMachineRunning
	case hypervisor.StatePaused:
		if obs.Stopping {
			return v1alpha1.VirtualMachineStopping
		}
		if dom.Reason == hypervisor.ReasonStartingUp && !obs.WantPaused {
			return v1alpha1.VirtualMachineStarting
		}
		return v1alpha1.VirtualMachinePaused
	case hypervisor.StateShutdown:
		return v1alpha1.VirtualMachineStopping
	case hypervisor.StateShutoff:
		if obs.ShouldRun {
			return v1alpha1.VirtualMachineStarting
		}
		return v1alpha1.VirtualMachineStopped
	case hypervisor.StateCrashed:
		return v1alpha1.VirtualMachineFailed
	}
	return v1alpha1.VirtualMachineStarting
}

// computeStatus is the VM's status recomputed from spec and observation. It
// keeps what only the API knows (Scheduled condition, snapshots).
func computeStatus(vm *v1alpha1.VirtualMachine, obs *statusInput) v1alpha1.VirtualMachineStatus {
	old := vm.Status
	st := *old.DeepCopy()
	st.Phase = computePhase(obs)
	st.NodeName = obs.NodeName
	st.ObservedGeneration = vm.Generation
	st.ObservedPowerActionID = obs.ObservedActionID
	st.StopReason = obs.StopReason
	st.RestartCount, st.NextStartTime = obs.RestartCount, obs.NextStartTime
	if obs.Started || (obs.Domain != nil && obs.Domain.State.Active() && st.StartedAt == nil) {
		t := obs.Now
		st.StartedAt = &t
	}
	gen := vm.Generation
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
			LastTransitionTime: obs.Now,
		})
	}

	switch {
	case obs.Conflict != "":
		set(v1alpha1.VirtualMachineConditionProvisioned, metav1.ConditionFalse, "DomainConflict", obs.Conflict)
	case obs.Prov.Reason != "":
		set(v1alpha1.VirtualMachineConditionProvisioned, metav1.ConditionFalse, obs.Prov.Reason, obs.Prov.Message)
	case obs.Domain != nil || obs.Prov.Done:
		set(v1alpha1.VirtualMachineConditionProvisioned, metav1.ConditionTrue, "DisksReady", "all disks are ready")
	case obs.Prov.InProgress:
		set(v1alpha1.VirtualMachineConditionProvisioned, metav1.ConditionFalse, "Provisioning", "preparing disks")
	}

	switch {
	case st.Phase == v1alpha1.VirtualMachineRunning:
		set(v1alpha1.VirtualMachineConditionReady, metav1.ConditionTrue, "GuestRunning", "the guest is running")
	case st.NextStartTime != nil && obs.ShouldRun:
		set(v1alpha1.VirtualMachineConditionReady, metav1.ConditionFalse, v1alpha1.ReasonCrashLoopBackOff, fmt.Sprintf(
			"the guest keeps stopping on its own (%s; started again %d times): the agent waits until %s before it starts it again (kubectl vm start starts it now)",
			st.StopReason, st.RestartCount, st.NextStartTime.UTC().Format(time.RFC3339)))
	default:
		set(v1alpha1.VirtualMachineConditionReady, metav1.ConditionFalse, string(st.Phase), readyMessage(st.Phase, st.StopReason))
	}
	if st.Phase == v1alpha1.VirtualMachinePaused {
		set(v1alpha1.VirtualMachineConditionPaused, metav1.ConditionTrue, "PausedByUser", "the guest's CPUs are suspended")
	} else if meta.FindStatusCondition(st.Conditions, v1alpha1.VirtualMachineConditionPaused) != nil || vm.Spec.Paused {
		set(v1alpha1.VirtualMachineConditionPaused, metav1.ConditionFalse, "NotPaused", "the guest's CPUs are not suspended")
	}

	if obs.RestartRequired {
		set(ConditionRestartRequired, metav1.ConditionTrue, "SpecChanged", "the spec changed while the guest runs: it applies at the next start (restart the VM)")
	} else if meta.FindStatusCondition(st.Conditions, ConditionRestartRequired) != nil {
		set(ConditionRestartRequired, metav1.ConditionFalse, "UpToDate", "the domain matches the spec")
	}

	if obs.AgentSupported {
		agentStatus(&st, obs, set)
	}

	// Disks: provisioning progress while it runs; all Ready once the
	// domain exists.
	switch {
	case len(obs.Prov.Disks) > 0 && (obs.Domain == nil || obs.Prov.Reason != ""):
		st.Disks = obs.Prov.Disks
	case obs.Domain != nil:
		st.Disks = nil
		for _, d := range vm.Spec.Disks {
			st.Disks = append(st.Disks, v1alpha1.DiskStatus{Name: d.Name, Phase: v1alpha1.DiskReady})
		}
	}

	// Interfaces: MACs always, addresses only while the guest runs.
	st.Interfaces = nil
	for _, nic := range vm.Spec.Interfaces {
		is := v1alpha1.InterfaceStatus{Name: nic.Name, MACAddress: obs.MACs[nic.Name]}
		if obs.Domain != nil && obs.Domain.State.Active() {
			for _, a := range obs.IPs[nic.Name] {
				is.IPAddresses = append(is.IPAddresses, v1alpha1.IPAddress{Address: a, Source: v1alpha1.IPAddressSourceDHCP})
			}
			// What the guest's agent says comes after what the agent's own
			// DHCP server handed out: a guest can claim any address, so it
			// never becomes the primary one while a lease exists.
			if obs.Agent != nil && obs.Agent.Connected {
				for _, a := range guestAgentAddresses(obs.Agent.Info, is.MACAddress) {
					if !slices.ContainsFunc(is.IPAddresses, func(x v1alpha1.IPAddress) bool { return x.Address == a }) {
						is.IPAddresses = append(is.IPAddresses, v1alpha1.IPAddress{Address: a, Source: v1alpha1.IPAddressSourceGuestAgent})
					}
				}
			}
			if len(is.IPAddresses) > 0 {
				is.IPAddress = is.IPAddresses[0].Address
			}
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	return st
}

// agentStatus sets the AgentConnected condition and status.guestOSInfo
// from the last answer of the guest's agent. The info stays from the last
// answer when the agent goes away; the condition says whether it is current.
func agentStatus(st *v1alpha1.VirtualMachineStatus, obs *statusInput, set func(typ string, status metav1.ConditionStatus, reason, msg string)) {
	const typ = v1alpha1.VirtualMachineConditionAgentConnected
	prev := meta.FindStatusCondition(st.Conditions, typ)
	switch {
	case obs.Domain == nil || !obs.Domain.State.Active():
		if prev != nil {
			set(typ, metav1.ConditionFalse, "GuestNotRunning", "the guest is not running")
		}
	case obs.Agent == nil:
		// Not asked yet (the guest just started, or this agent did):
		// an answer a moment ago stays true until the agent is asked.
		if prev == nil || prev.Status != metav1.ConditionTrue {
			set(typ, metav1.ConditionFalse, "Connecting", "waiting for the QEMU guest agent in the guest to answer")
		}
	case obs.Agent.Connected:
		set(typ, metav1.ConditionTrue, "Connected", "the QEMU guest agent answers")
		st.GuestOSInfo = guestOSInfo(obs.Agent.Info)
	default:
		set(typ, metav1.ConditionFalse, "NotConnected", obs.Agent.Err)
	}
}

func readyMessage(phase v1alpha1.VirtualMachinePhase, stopReason string) string {
	switch phase {
	case v1alpha1.VirtualMachineStopped:
		if stopReason != "" {
			return "the guest is stopped (" + stopReason + ")"
		}
		return "the guest is stopped"
	case v1alpha1.VirtualMachineFailed:
		return "the VM cannot run; see the Provisioned condition"
	}
	return "the guest is not running yet"
}
