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

package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// freezeResult is whether a snapshot was taken with the guest's
// filesystems frozen, for the snapshot's FilesystemsFrozen condition.
type freezeResult struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
	// ThawErr says the filesystems could not be thawed (the guest's
	// writes hang until someone thaws them).
	ThawErr error
}

// freezePlan decides whether to freeze the guest's filesystems for a
// snapshot: only a running guest's, through its agent, and only when a
// restore boots from the disks alone. A memory snapshot holds the guest's
// page cache, so its disks need no flushing; frozen, it would resume
// (restore, clones of it) with frozen filesystems.
func freezePlan(agent hypervisor.GuestAgent, state hypervisor.State, wantMemory bool) (freeze bool, notFrozen freezeResult) {
	no := func(reason, msg string) (bool, freezeResult) {
		return false, freezeResult{Status: metav1.ConditionFalse, Reason: reason, Message: msg}
	}
	switch {
	case agent == nil:
		return no("AgentUnsupported", "not frozen: this hypervisor cannot reach guest agents")
	case !state.Active():
		return no("GuestNotRunning", "not frozen: the guest was not running, its disks were at rest")
	case state != hypervisor.StateRunning:
		return no("GuestPaused", "not frozen: the guest's CPUs were suspended, so its guest agent could not answer")
	case wantMemory:
		return no("MemoryIncluded", "not frozen: the snapshot holds the guest's memory, unwritten data included, and a restore resumes it")
	}
	return true, freezeResult{}
}

// thawTries and thawRetry: a thaw that fails is tried again, since a
// guest left frozen hangs every write.
const (
	thawTries   = 3
	thawRetry   = 500 * time.Millisecond
	thawTimeout = 30 * time.Second
)

// withFrozenFilesystems runs take with the guest's filesystems frozen
// through its agent, and always thaws them afterwards: when take fails,
// panics or ctx ends. A guest whose agent does not answer is snapshotted
// unfrozen (crash-consistent), and the result says why.
func withFrozenFilesystems(ctx context.Context, agent hypervisor.GuestAgent, uid string, take func() error) (res freezeResult, err error) {
	n, ferr := agent.FreezeFilesystems(ctx, uid)
	switch {
	case errors.Is(ferr, hypervisor.ErrDisconnected), errors.Is(ferr, hypervisor.ErrNotFound):
		return freezeResult{}, ferr
	case ferr != nil:
		// qemu-ga thaws what it froze when a freeze fails part way; thaw
		// anyway, then take the snapshot unfrozen.
		_ = thaw(ctx, agent, uid)
		reason := "FreezeFailed"
		if errors.Is(ferr, hypervisor.ErrAgentNotConnected) {
			reason = "AgentNotConnected"
		}
		return freezeResult{Status: metav1.ConditionFalse, Reason: reason, Message: fmt.Sprintf("not frozen: %v", ferr)}, take()
	}
	defer func() {
		res.ThawErr = thaw(ctx, agent, uid)
		if res.ThawErr != nil {
			res.Message += fmt.Sprintf("; THAWING FAILED, the guest's writes hang until it is thawed: %v", res.ThawErr)
		}
	}()
	res = freezeResult{Status: metav1.ConditionTrue, Reason: "Frozen",
		Message: fmt.Sprintf("%d filesystem(s) frozen through the QEMU guest agent while the snapshot was taken, thawed after it", n)}
	return res, take()
}

// thaw thaws the guest's filesystems, trying again a few times, on a
// context of its own: the caller's may be why it is thawing.
func thaw(ctx context.Context, agent hypervisor.GuestAgent, uid string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), thawTimeout)
	defer cancel()
	var err error
	for i := 0; i < thawTries; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(thawRetry):
			}
		}
		if _, err = agent.ThawFilesystems(ctx, uid); err == nil || errors.Is(err, hypervisor.ErrNotFound) {
			return nil
		}
	}
	return err
}
