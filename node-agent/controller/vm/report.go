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
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/controller/runstrategy"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// ipPollInterval is how often a running guest's console is re-read until it
// announced its address; ipPollWindow is for how long after start.
const (
	ipPollInterval = 2 * time.Second
	ipPollWindow   = 5 * time.Minute
)

// startPoll is how often a guest that should run but is off is looked at.
const startPoll = time.Second

// report recomputes the VM's status from what the pass saw and did, writes
// it when it changed, and says how soon to look again.
func (c *Controller) report(ctx context.Context, key string, o *observation, d *decision, out outcome, st *vmState) (time.Duration, error) {
	vm := o.VM
	uid := string(vm.UID)
	dom, conflict := o.Domain, o.Conflict
	stopReason := d.StopReason
	active := dom != nil && dom.State.Active()
	if out.acted {
		wasActive := active
		var err error
		if dom, conflict, err = hypervisor.LookupOwned(ctx, c.hv, uid); err != nil {
			return 0, err
		}
		active = dom != nil && dom.State.Active()
		if wasActive && !active {
			// This pass stopped it (a forced stop takes effect at once).
			stopReason = runstrategy.StopReasonRequested
			c.mu.Lock()
			st.unsavedStopReason = stopReason
			c.mu.Unlock()
		}
	}
	if !active {
		st.stop = nil
	}

	in := &statusInput{
		Now:              metav1.NewTime(o.Now),
		NodeName:         c.cfg.Node,
		Domain:           dom,
		Conflict:         conflict + out.defineErr,
		ShouldRun:        d.ShouldRun,
		Stopping:         st.stop != nil && active,
		WantPaused:       vm.Spec.Paused,
		RestartRequired:  active && d.SpecChanged,
		Started:          out.started,
		StopReason:       stopReason,
		ObservedActionID: observedAction(d.Pending, vm.Status.ObservedPowerActionID, d.ShouldRun, active, st.restartDone),
		RestartCount:     d.RestartCount,
		NextStartTime:    d.NextStartTime,
		AgentSupported:   o.AgentSupported,
		Agent:            o.Agent,
		IPs:              map[string][]string{},
		MACs:             map[string]string{},
	}
	if st.prov != nil {
		in.Prov = st.prov.state()
	}
	for _, nic := range vm.Spec.Interfaces {
		in.MACs[nic.Name] = macFor(uid, nic.Name, nic.MACAddress)
	}
	if active {
		in.IPs = managedAddresses(c.network, vm)
	}
	status := computeStatus(vm, in)
	if err := c.writeStatus(ctx, key, vm, st, status); err != nil {
		return 0, err
	}

	requeue := out.requeue
	if active && len(vm.Spec.Interfaces) > 0 && vm.Spec.Interfaces[0].Type == v1alpha1.InterfaceTypeManaged && len(in.IPs[vm.Spec.Interfaces[0].Name]) == 0 &&
		status.StartedAt != nil && o.Now.Sub(status.StartedAt.Time) < ipPollWindow {
		requeue = minPositive(requeue, ipPollInterval)
	}
	if o.AgentSupported && dom != nil && dom.State == hypervisor.StateRunning && status.StartedAt != nil {
		if wait := agentRequeue(o.Agent, o.Now, status.StartedAt.Time); wait > 0 {
			requeue = minPositive(requeue, wait)
		}
	}
	if d.ShouldRun && dom != nil && !active && d.NextStartTime == nil {
		requeue = minPositive(requeue, startPoll)
	}
	return requeue, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// writeStatus updates the VM's status when it changed, expects the
// informer to deliver the write, and records an Event for a phase
// transition.
func (c *Controller) writeStatus(ctx context.Context, key string, vm *v1alpha1.VirtualMachine, st *vmState, status v1alpha1.VirtualMachineStatus) error {
	if equality.Semantic.DeepEqual(vm.Status, status) {
		return nil
	}
	oldPhase := vm.Status.Phase
	update := vm.DeepCopy()
	update.Status = status
	updated, err := c.client.VesselV1alpha1().VirtualMachines(vm.Namespace).UpdateStatus(ctx, update, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	c.expected.Expect(key, updated)
	c.mu.Lock()
	st.unsavedStopReason = ""
	c.mu.Unlock()
	if oldPhase != status.Phase {
		klog.FromContext(ctx).V(2).Info("Phase changed", "from", oldPhase, "to", status.Phase, "stopReason", status.StopReason)
		typ := corev1.EventTypeNormal
		if status.Phase == v1alpha1.VirtualMachineFailed {
			typ = corev1.EventTypeWarning
		}
		c.event(vm, typ, string(status.Phase), "VM is %s", status.Phase)
	}
	return nil
}
