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
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// vmState is what the controller remembers about one VM between passes.
// All of it can be lost (agent restart) without harm: the spec, the status
// and the domain are the truth; this avoids repeating work and keeps the
// facts a failed status write would otherwise lose. A VM's passes never
// overlap (workqueue), and whoever else writes it holds the VM's lock.
type vmState struct {
	uid string
	// stop is the graceful stop in progress, nil when none.
	stop *stopOp
	// restartDone is the restart action whose stop half is done.
	restartDone int64
	prov        *provisionRun
	// lastStart is when the guest was last started (by this controller or
	// a restore), and unsavedStopReason a stop noticed but not written yet.
	lastStart         *metav1.Time
	unsavedStopReason string
}

// stopOp is a graceful stop in progress.
type stopOp struct {
	// deadline is when the guest is forced off.
	deadline time.Time
	// lastACPI is when the power button was last pressed.
	lastACPI time.Time
	// actionID is the stop or restart action being carried out, 0 for a
	// stop the run strategy or a deletion asks for.
	actionID int64
}

// state is the VM's state, a fresh one when the VM (by UID) is new.
func (c *Controller) state(key, uid string) *vmState {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.states[key]
	if st == nil || st.uid != uid {
		if st != nil && st.prov != nil && st.prov.cancel != nil {
			st.prov.cancel()
		}
		st = &vmState{uid: uid}
		c.states[key] = st
	}
	return st
}

// dropState forgets a VM that is gone, stopping its provisioning.
func (c *Controller) dropState(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.states[key]; st != nil {
		if st.prov != nil && st.prov.cancel != nil {
			st.prov.cancel()
		}
		c.agents.forget(st.uid)
	}
	delete(c.states, key)
}
