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
	"time"

	"k8s.io/client-go/tools/cache"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// observation is everything a pass decides from, read at its start.
type observation struct {
	Now time.Time
	// VM is the cached VM with the facts only this controller knows merged
	// into its status: a start or a noticed stop whose status write failed.
	VM *v1alpha1.VirtualMachine
	// Domain is the VM's domain, nil when none is defined.
	Domain *hypervisor.Domain
	// Conflict says a domain Vessel does not own holds the VM's UUID.
	Conflict string
	// MadeByClone says the VM is a clone's (v1alpha1.AnnotationClone):
	// the agent's clone controller makes its disks and domain.
	MadeByClone bool
	// WantHash identifies the machine spec (machineSpecHash).
	WantHash string
	// Prov is the provisioning run, nil when none.
	Prov *provObservation
	// Stop is the graceful stop in progress, nil when none.
	Stop *stopOp
	// RestartDone is the restart action whose stop half is done.
	RestartDone int64
	// ACPIInterval is how often a graceful stop presses the power button.
	ACPIInterval time.Duration
	// AgentSupported says the hypervisor reaches guest agents; Agent is
	// what the guest's agent said last (nil: nothing yet, or not running).
	AgentSupported bool
	Agent          *agentObservation
}

// observe reads the VM's domain and what the controller remembers of it.
func (c *Controller) observe(ctx context.Context, cached *v1alpha1.VirtualMachine, st *vmState) (*observation, error) {
	vm := cached.DeepCopy()
	c.mu.Lock()
	lastStart, unsavedStopReason := st.lastStart.DeepCopy(), st.unsavedStopReason
	c.mu.Unlock()
	if lastStart != nil && (vm.Status.StartedAt == nil || vm.Status.StartedAt.Before(lastStart)) {
		vm.Status.StartedAt = lastStart
	}
	if unsavedStopReason != "" {
		vm.Status.StopReason = unsavedStopReason
	}
	dom, conflict, err := hypervisor.LookupOwned(ctx, c.hv, string(vm.UID))
	if err != nil {
		return nil, err
	}
	o := &observation{
		Now:          c.clock.Now(),
		VM:           vm,
		Domain:       dom,
		Conflict:     conflict,
		MadeByClone:  vm.Annotations[v1alpha1.AnnotationClone] != "",
		WantHash:     machineSpecHash(&vm.Spec),
		RestartDone:  st.restartDone,
		ACPIInterval: c.cfg.ACPIInterval,
	}
	if st.prov != nil {
		o.Prov = st.prov.snapshot()
	}
	if c.agents != nil {
		o.AgentSupported = true
		if dom != nil {
			var started time.Time
			if vm.Status.StartedAt != nil {
				started = vm.Status.StartedAt.Time
			}
			o.Agent = c.agents.observe(ctx, cache.MetaObjectToName(vm).String(), string(vm.UID), dom.State, started)
		}
	}
	if st.stop != nil {
		s := *st.stop
		o.Stop = &s
	}
	return o, nil
}
