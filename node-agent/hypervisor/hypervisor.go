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

// Package hypervisor hides libvirt behind one small interface. Every call is
// keyed by the VM UID, which is also the domain UUID, and is idempotent:
// deleting what is already gone succeeds. Domains without Vessel's owner
// metadata are never touched.
package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound says no domain has the UUID.
var ErrNotFound = errors.New("domain not found")

// ErrNotOwned says a domain with the UUID exists but Vessel did not create it.
var ErrNotOwned = errors.New("domain is not owned by vessel")

// ErrDisconnected says libvirtd is not reachable right now; the connection is
// being re-established in the background.
var ErrDisconnected = errors.New("not connected to libvirtd")

// State is a domain's power state, reduced to what the agent acts on.
type State string

// Domain states.
const (
	StateRunning  State = "Running"
	StatePaused   State = "Paused"
	StateShutoff  State = "Shutoff"
	StateShutdown State = "ShuttingDown"
	StateCrashed  State = "Crashed"
	StateOther    State = "Other"
)

// Active is true when QEMU runs for the domain.
func (s State) Active() bool {
	return s == StateRunning || s == StatePaused || s == StateShutdown
}

// Reason says why a domain is in its state, as far as the agent cares.
type Reason string

// Reasons.
const (
	// ReasonUnknown: libvirt gave no reason we distinguish.
	ReasonUnknown Reason = ""
	// ReasonShutdown: the guest powered itself off (or answered ACPI).
	ReasonShutdown Reason = "Shutdown"
	// ReasonDestroyed: someone forced the domain off.
	ReasonDestroyed Reason = "Destroyed"
	// ReasonCrashed: QEMU died or the guest crashed.
	ReasonCrashed Reason = "Crashed"
	// ReasonUser: paused on request.
	ReasonUser Reason = "User"
	// ReasonStartingUp: paused because it was started paused.
	ReasonStartingUp Reason = "StartingUp"
)

// Owner is the VM a domain belongs to, stamped in the domain's metadata.
type Owner struct {
	Namespace string
	Name      string
	UID       string
	// Hypervisor is the name of the Hypervisor object whose agent created
	// the domain.
	Hypervisor string
	// HypervisorUID is that object's metadata.uid. Two control planes may
	// use the same hypervisor name on one libvirtd, but each of their
	// etcds gives the Hypervisor its own UID: an agent collects orphans
	// only among the domains stamped with its own. Empty in domains made
	// by agents older than the stamp.
	HypervisorUID string
}

// Key is the owner's namespace/name, the agent's workqueue key.
func (o Owner) Key() string { return o.Namespace + "/" + o.Name }

// Domain is what the agent observes of one owned domain.
type Domain struct {
	UUID   string
	Name   string
	State  State
	Reason Reason
	Owner  Owner
	// SpecHash is DomainConfig.SpecHash of the current definition.
	SpecHash string
}

// Event says something happened to the domain with UUID; an empty UUID means
// "anything may have changed" (sent after every (re)connect to libvirtd).
type Event struct {
	UUID string
	// Agent says the domain's QEMU guest agent connected or disconnected
	// (the guest started or stopped qemu-ga, or the guest went away).
	Agent bool
}

// Versions are the hypervisor's software versions.
type Versions struct {
	Libvirt string
	QEMU    string
}

// Hypervisor runs domains. Implementations must be safe for concurrent use.
type Hypervisor interface {
	// Define creates or replaces the persistent definition of cfg's domain.
	Define(ctx context.Context, cfg *DomainConfig) error
	// Start boots a defined domain, optionally with its CPUs paused. Starting
	// an active domain succeeds.
	Start(ctx context.Context, uid string, paused bool) error
	// Shutdown asks the guest to power off (ACPI power button). Succeeds
	// when the domain is not active.
	Shutdown(ctx context.Context, uid string) error
	// Destroy forces the domain off. Succeeds when the domain is not active
	// or does not exist.
	Destroy(ctx context.Context, uid string) error
	// Suspend pauses the domain's CPUs; Resume continues them.
	Suspend(ctx context.Context, uid string) error
	Resume(ctx context.Context, uid string) error
	// Undefine removes the domain's definition, snapshot and checkpoint
	// metadata and NVRAM. Succeeds when the domain does not exist.
	Undefine(ctx context.Context, uid string) error
	// Lookup returns the owned domain with the UUID, ErrNotFound or ErrNotOwned.
	Lookup(ctx context.Context, uid string) (*Domain, error)
	// List returns every domain owned by Vessel (any hypervisor name).
	List(ctx context.Context) ([]Domain, error)
	// Events delivers lifecycle changes. It is never closed while the
	// hypervisor runs.
	Events() <-chan Event
	// Versions are the libvirt and QEMU versions.
	Versions(ctx context.Context) (Versions, error)
}

// LookupOwned is Lookup with its two expected misses as values: no domain
// is (nil, "", nil), and a domain Vessel does not own holding the UUID is
// (nil, conflict, nil) with conflict saying so for a status message.
func LookupOwned(ctx context.Context, h Hypervisor, uid string) (dom *Domain, conflict string, err error) {
	dom, err = h.Lookup(ctx, uid)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, "", nil
	case errors.Is(err, ErrNotOwned):
		return nil, fmt.Sprintf("a libvirt domain not created by Vessel already has UUID %s", uid), nil
	case err != nil:
		return nil, "", err
	}
	return dom, "", nil
}

// Backoff bounds for reconnecting to libvirtd.
const (
	minReconnectDelay = 200 * time.Millisecond
	maxReconnectDelay = 10 * time.Second
)
