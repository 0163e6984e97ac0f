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

// Package sim is a hypervisor.Hypervisor that runs no guest: its domains
// live in memory and move through libvirt's states (defined, running,
// paused, shut off) with the same rules and events, after configurable
// latencies. It exists for scale tests, where a hundred agents must share
// one machine; the libvirt driver stays the default everywhere else.
package sim

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vessel-vm/vessel/apis/vessel/v1alpha1"
	"github.com/vessel-vm/vessel/node-agent/hypervisor"
)

// Latencies are how long simulated operations take. Zero is instant.
type Latencies struct {
	// Call is added to every call, as a round trip to libvirtd would be.
	Call time.Duration
	// Boot is how long Start blocks, as QEMU's start does.
	Boot time.Duration
	// GuestShutdown is how long a guest takes to power off after an ACPI
	// shutdown request; the domain is ShuttingDown meanwhile.
	GuestShutdown time.Duration
}

// Versions are what a simulated hypervisor reports.
var Versions = hypervisor.Versions{Libvirt: v1alpha1.SimulatedVersion, QEMU: v1alpha1.SimulatedVersion}

// Hypervisor is an in-memory hypervisor. Its zero value is not usable: use
// New.
type Hypervisor struct {
	lat Latencies

	mu      sync.Mutex
	domains map[string]*domain
	// pending events, delivered in order by pump.
	pending []hypervisor.Event
	wake    chan struct{}
	events  chan hypervisor.Event
	closed  chan struct{}
	stop    sync.Once
}

// domain is one simulated domain. persistent is false after Undefine of
// an active domain: libvirt keeps it as a transient domain until it stops.
type domain struct {
	hypervisor.Domain
	cfg        hypervisor.DomainConfig
	persistent bool
	// shutdown powers off a guest that was asked to shut down.
	shutdown *time.Timer
}

// New returns a simulated hypervisor with no domains. Close stops its event
// delivery.
func New(lat Latencies) *Hypervisor {
	h := &Hypervisor{
		lat:     lat,
		domains: map[string]*domain{},
		wake:    make(chan struct{}, 1),
		events:  make(chan hypervisor.Event),
		closed:  make(chan struct{}),
	}
	go h.pump()
	return h
}

// Close stops delivering events.
func (h *Hypervisor) Close() { h.stop.Do(func() { close(h.closed) }) }

// pump delivers queued events in order without ever blocking a caller:
// libvirt's event loop does not wait for the agent either.
func (h *Hypervisor) pump() {
	for {
		h.mu.Lock()
		batch := h.pending
		h.pending = nil
		h.mu.Unlock()
		for _, ev := range batch {
			select {
			case h.events <- ev:
			case <-h.closed:
				return
			}
		}
		select {
		case <-h.wake:
		case <-h.closed:
			return
		}
	}
}

// emit queues an event for uid; h.mu is held.
func (h *Hypervisor) emit(uid string) {
	h.pending = append(h.pending, hypervisor.Event{UUID: uid})
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// call waits the per-call latency, or fails when ctx ends first.
func (h *Hypervisor) call(ctx context.Context, extra time.Duration) error {
	d := h.lat.Call + extra
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Define implements hypervisor.Hypervisor.
func (h *Hypervisor) Define(ctx context.Context, cfg *hypervisor.DomainConfig) error {
	if err := h.call(ctx, 0); err != nil {
		return err
	}
	// The same validation the libvirt driver does before defining.
	if _, err := hypervisor.DomainXML(cfg); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	uid := cfg.Owner.UID
	d, ok := h.domains[uid]
	if !ok {
		d = &domain{Domain: hypervisor.Domain{
			UUID:  uid,
			Name:  hypervisor.DomainName(cfg.Owner.Namespace, cfg.Owner.Name, uid),
			State: hypervisor.StateShutoff,
		}}
		h.domains[uid] = d
	}
	d.cfg = *cfg
	d.Owner = cfg.Owner
	d.SpecHash = cfg.SpecHash
	d.persistent = true
	h.emit(uid)
	return nil
}

// Start implements hypervisor.Hypervisor.
func (h *Hypervisor) Start(ctx context.Context, uid string, paused bool) error {
	if err := h.call(ctx, h.lat.Boot); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok {
		return fmt.Errorf("start domain %s: %w", uid, hypervisor.ErrNotFound)
	}
	if d.State.Active() {
		return nil
	}
	d.State, d.Reason = hypervisor.StateRunning, hypervisor.ReasonUnknown
	if paused {
		d.State, d.Reason = hypervisor.StatePaused, hypervisor.ReasonStartingUp
	}
	h.emit(uid)
	return nil
}

// Shutdown implements hypervisor.Hypervisor: the guest powers off after
// Latencies.GuestShutdown, unless it is paused (a paused guest does not
// answer ACPI, as with QEMU).
func (h *Hypervisor) Shutdown(ctx context.Context, uid string) error {
	if err := h.call(ctx, 0); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok {
		return fmt.Errorf("shut down domain %s: %w", uid, hypervisor.ErrNotFound)
	}
	if d.State != hypervisor.StateRunning || d.shutdown != nil {
		return nil
	}
	if h.lat.GuestShutdown <= 0 {
		h.powerOff(d, hypervisor.ReasonShutdown)
		return nil
	}
	d.State = hypervisor.StateShutdown
	h.emit(uid)
	d.shutdown = time.AfterFunc(h.lat.GuestShutdown, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if d.shutdown != nil && d.State == hypervisor.StateShutdown {
			h.powerOff(d, hypervisor.ReasonShutdown)
		}
	})
	return nil
}

// powerOff stops d's simulated QEMU; a transient domain goes away. h.mu is
// held.
func (h *Hypervisor) powerOff(d *domain, reason hypervisor.Reason) {
	if d.shutdown != nil {
		d.shutdown.Stop()
		d.shutdown = nil
	}
	d.State, d.Reason = hypervisor.StateShutoff, reason
	if !d.persistent {
		delete(h.domains, d.UUID)
	}
	h.emit(d.UUID)
}

// Destroy implements hypervisor.Hypervisor.
func (h *Hypervisor) Destroy(ctx context.Context, uid string) error {
	if err := h.call(ctx, 0); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok || !d.State.Active() {
		return nil
	}
	h.powerOff(d, hypervisor.ReasonDestroyed)
	return nil
}

// Suspend implements hypervisor.Hypervisor.
func (h *Hypervisor) Suspend(ctx context.Context, uid string) error {
	return h.setPaused(ctx, uid, true)
}

// Resume implements hypervisor.Hypervisor.
func (h *Hypervisor) Resume(ctx context.Context, uid string) error {
	return h.setPaused(ctx, uid, false)
}

// setPaused pauses or resumes; like libvirt, it fails on a domain that is
// not running (suspend) or not paused (resume).
func (h *Hypervisor) setPaused(ctx context.Context, uid string, pause bool) error {
	if err := h.call(ctx, 0); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	switch {
	case !ok:
		return fmt.Errorf("domain %s: %w", uid, hypervisor.ErrNotFound)
	case pause && d.State == hypervisor.StatePaused:
		return nil
	case pause && d.State != hypervisor.StateRunning:
		return fmt.Errorf("suspend domain %s: domain is not running", uid)
	case !pause && d.State != hypervisor.StatePaused:
		return fmt.Errorf("resume domain %s: domain is not paused", uid)
	}
	if pause {
		d.State, d.Reason = hypervisor.StatePaused, hypervisor.ReasonUser
	} else {
		d.State, d.Reason = hypervisor.StateRunning, hypervisor.ReasonUnknown
	}
	h.emit(uid)
	return nil
}

// Undefine implements hypervisor.Hypervisor. An active domain stays, as a
// transient one, until it stops.
func (h *Hypervisor) Undefine(ctx context.Context, uid string) error {
	if err := h.call(ctx, 0); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok {
		return nil
	}
	if d.State.Active() {
		d.persistent = false
	} else {
		delete(h.domains, uid)
	}
	h.emit(uid)
	return nil
}

// Lookup implements hypervisor.Hypervisor.
func (h *Hypervisor) Lookup(ctx context.Context, uid string) (*hypervisor.Domain, error) {
	if err := h.call(ctx, 0); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok {
		return nil, hypervisor.ErrNotFound
	}
	dom := d.Domain
	return &dom, nil
}

// List implements hypervisor.Hypervisor.
func (h *Hypervisor) List(ctx context.Context) ([]hypervisor.Domain, error) {
	if err := h.call(ctx, 0); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]hypervisor.Domain, 0, len(h.domains))
	for _, d := range h.domains {
		out = append(out, d.Domain)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UUID < out[j].UUID })
	return out, nil
}

// Events implements hypervisor.Hypervisor.
func (h *Hypervisor) Events() <-chan hypervisor.Event { return h.events }

// Versions implements hypervisor.Hypervisor.
func (h *Hypervisor) Versions(ctx context.Context) (hypervisor.Versions, error) {
	return Versions, h.call(ctx, 0)
}

// Crash stops a running domain as if QEMU died: the agent sees it shut off
// with reason Crashed, for tests of restart policies.
func (h *Hypervisor) Crash(uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok || !d.State.Active() {
		return fmt.Errorf("crash domain %s: not running", uid)
	}
	h.powerOff(d, hypervisor.ReasonCrashed)
	return nil
}

// GuestPowerOff powers a running guest off from inside, as `poweroff` in the
// guest would.
func (h *Hypervisor) GuestPowerOff(uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.domains[uid]
	if !ok || !d.State.Active() {
		return fmt.Errorf("power off domain %s: not running", uid)
	}
	h.powerOff(d, hypervisor.ReasonShutdown)
	return nil
}

var _ hypervisor.Hypervisor = (*Hypervisor)(nil)
